"""ais_wds: stream PyTorch training data from NVIDIA AIStore.

Importing this package registers native AIS handlers in webdataset's ``gopen`` (see ``ais_wds.gopen``).
"""

from .client import Client, ClientConfig
from .errors import *  # noqa: F401,F403 - the error hierarchy is part of the API
from .listing import Listing, list_objects
from .partition import Part, current_part, epoch_order, partition
from .reader import open_object, read_bytes, read_member, read_range
from .urls import AISUrl, expand_urls, parse_url

__version__ = "0.1.0"
