"""ais_wds: stream PyTorch training data from NVIDIA AIStore.

Importing this package registers native AIS handlers in webdataset's ``gopen`` for ``ais://`` and the
cloud schemes reached through AIS (see :mod:`ais_wds.gopen`), so ``wds.WebDataset("ais://...")`` works.

Layers: URL model + client config -> listing core + reader/writer core -> front ends (gopen opener,
``WebDataset`` pipeline, object datasets, pipes, shard index) -> pack -> CLI.
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
    PackError,
    ReadError,
    RequestError,
    ShardIndexError,
    TarFormatError,
    URLError,
    WriteError,
)
from .gopen import AISOpener, register, worker_init_fn
from .iter_dataset import AISIterDataset
from .listing import Listing, list_objects
from .map_dataset import AISDataset
from .pack import PackReport, plan_pack  # the packer itself: ais_wds.pack.pack (kept off the top level so
#                                           the name ais_wds.pack stays the module)
from .partition import Part, current_part, epoch_order, partition
from .pipeline import ShardSource, WebDataset
from .pipes import AISFileLister, AISFileListerIterDataPipe, AISFileLoader, AISFileLoaderIterDataPipe
from .reader import open_object, read_bytes, read_member, read_range
from .shard_dataset import AISShardDataset
from .shard_index import ShardIndex, build_index, load_index, save_index
from .shards import DEFAULT_SHARD_SUFFIXES, ShardURL, shard_urls
from .tario import iter_members, tar_samples, tarfile_to_samples
from .urls import AISUrl, expand_urls, parse_url
from .writer import open_writer, write_bytes

__version__ = "0.1.0"

__all__ = [name for name, value in dict(globals()).items()
           if not name.startswith("_") and getattr(value, "__module__", "").startswith("ais_wds")]

register()
