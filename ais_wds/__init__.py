"""ais_wds: stream PyTorch training data from NVIDIA AIStore.

Layers, lowest first; a module imports only from its own layer and the layers listed before it
(checked by ``tests/test_layout.py``, which holds the same list; no import cycle, no private name
imported across packages)::

    model             urls, errors, config                      URLs, typed errors, ClientConfig
    transport         _core/ (connections, retry, sdk_errors,   one process's HTTP stack, retries,
                      process_local, dist), client,             fork safety, torch.distributed facts;
                      metrics/ (core, trace)                    the counters the core bumps
    objects           objects/ (reader, writer, fetch,          read / write one object or a batch;
                      prefetch, get_batch, jobs)                AIS jobs (archive, prefetch)
    listing + epochs  listing, epochs/ (plan, shuffle),         list once per job; the epoch plan:
                      partition, shuffle/ (buffer, k_shards,    seeded order, contiguous runs, resume;
                      global_samples, rng, refs, modes)         the sample shuffles' algorithms
    tar               tar/ (reader, writer, names)              the tar format, read and written
    front ends        streaming/  datasets/  shard_index/       webdataset, object datasets, index,
                      mixing/, metrics/ (loop, prometheus,      mixtures; a loader's metrics and
                      tensorboard)                              where they are shown
    pack              pack/                                     loose objects -> shards
    doctor            doctor/                                   ``ais-wds doctor``'s checks
    cli               cli/                                      the ``ais-wds`` command
    package           this module, _compat                      the top-level names, the 0.1 paths

``ais_wds.reader`` and ``ais_wds.writer`` (0.1 paths) re-export ``ais_wds.objects.reader`` / ``writer``.
Everything below the front ends, and ``tar/``, imports neither torch nor webdataset, so ``import
ais_wds`` is quick; the names of the front ends (``WebDataset``, ``AISDataset``, ...) load on first
access (PEP 562). Importing this package also arranges for ais_wds's ``ais://`` opener to be registered
in webdataset's ``gopen`` as soon as webdataset is loaded (now or later), so
``wds.WebDataset("ais://...")`` works.
"""

import importlib
from typing import Any, List

from . import _compat
from ._version import __version__
from .client import Client, ClientConfig
from .errors import (
    AISWdsError,
    AuthError,
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
from .listing import Listing, list_objects
from .objects.reader import open_object, read_bytes, read_member, read_range
from .objects.writer import open_writer, write_bytes
from .partition import Part, current_part, epoch_order, job_state, partition
from .streaming.gopen import AISOpener, register, register_on_import, worker_init_fn
from .streaming.shards import DEFAULT_SHARD_SUFFIXES, ShardURL, shard_urls
from .tar import group_by_keys, iter_members
from .urls import AISUrl, expand_urls, parse_url

# name -> module, loaded on first access (they import torch, webdataset or the packer)
_LAZY = {
    "WebDataset": "ais_wds.streaming.pipeline",
    "ShardSource": "ais_wds.streaming.pipeline",
    "tar_samples": "ais_wds.streaming.stages",
    "tarfile_to_samples": "ais_wds.streaming.stages",
    "AISDataset": "ais_wds.datasets.map",
    "AISIterDataset": "ais_wds.datasets.iterable",
    "AISSampler": "ais_wds.datasets.sampler",
    "AISFileLister": "ais_wds.datasets.pipes",
    "AISFileListerIterDataPipe": "ais_wds.datasets.pipes",
    "AISFileLoader": "ais_wds.datasets.pipes",
    "AISFileLoaderIterDataPipe": "ais_wds.datasets.pipes",
    "AISShardDataset": "ais_wds.shard_index.dataset",
    "ShardIndex": "ais_wds.shard_index.index",
    "build_index": "ais_wds.shard_index.index",
    "load_index": "ais_wds.shard_index.index",
    "save_index": "ais_wds.shard_index.index",
    "PackReport": "ais_wds.pack.run",
    "plan_pack": "ais_wds.pack.run",
    "Mix": "ais_wds.mixing.mix",
    "monitor": "ais_wds.metrics.loop",
}

__all__ = sorted(
    [name for name, value in dict(globals()).items()
     if not name.startswith("_") and getattr(value, "__module__", "").startswith("ais_wds")]
    + list(_LAZY)
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ais_wds' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))


_compat.install()
register_on_import()
