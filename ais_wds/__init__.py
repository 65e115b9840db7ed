"""ais_wds: stream PyTorch training data from NVIDIA AIStore.

Importing this package registers native AIS handlers in webdataset's ``gopen`` for ``ais://`` and the
cloud schemes reached through AIS (see :mod:`ais_wds.gopen`), so ``wds.WebDataset("ais://...")`` works.
"""

from .client import Client, ClientConfig
from .errors import (
    AISWdsError,
    BucketNotFoundError,
    ConfigError,
    ConnectError,
    EmptyListingError,
    NotFoundError,
    ObjectNotFoundError,
    ReadError,
    RequestError,
    TarFormatError,
    URLError,
    WriteError,
)
from .gopen import AISOpener, register, worker_init_fn
from .listing import Listing, list_objects
from .partition import Part, current_part, epoch_order, partition
from .pipeline import ShardSource, WebDataset
from .reader import open_object, read_bytes, read_member, read_range
from .shards import DEFAULT_SHARD_SUFFIXES, shard_urls
from .urls import AISUrl, expand_urls, parse_url
from .writer import open_writer, write_bytes

__version__ = "0.1.0"

register()
