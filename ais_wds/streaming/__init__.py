"""The webdataset front end: shard streaming from AIS. The only package that imports webdataset.

* :mod:`~ais_wds.streaming.gopen`: ais_wds's handler in webdataset's ``gopen`` (``ais://`` URLs in
  plain ``wds.WebDataset`` and ``wds.TarWriter``), installed when webdataset loads;
* :mod:`~ais_wds.streaming.shards`: ``shard_urls``, shard lists from AIS prefixes;
* :mod:`~ais_wds.streaming.stages`: ``tarfile_to_samples``, webdataset's tar stage on ais_wds's tar walk;
* :mod:`~ais_wds.streaming.pipeline`: ``ais_wds.WebDataset``, the ready pipeline.

Names load on first access, so ``import ais_wds`` (which imports ``streaming.gopen``) stays free of
webdataset and torch.
"""

import importlib
from typing import Any

_HOMES = {
    "AISOpener": "gopen", "is_registered": "gopen", "register": "gopen", "worker_init_fn": "gopen",
    "ShardSource": "pipeline", "WebDataset": "pipeline",
    "DEFAULT_SHARD_SUFFIXES": "shards", "ShardURL": "shards", "shard_urls": "shards",
    "tar_samples": "stages", "tarfile_to_samples": "stages",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_HOMES))
