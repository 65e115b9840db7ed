"""The shard index (msgpack: per shard, each sample's offset and members) and random access through it.

* :mod:`ais_wds.shard_index.index`: the format, ``build_index`` for any tar shards, ``load_index`` /
  ``save_index`` (torch-free);
* :mod:`ais_wds.shard_index.dataset`: ``AISShardDataset``, map-style access to samples inside shards
  (imports torch; loaded on first use of the name).
"""

from typing import Any

from .index import (
    SampleSpan,
    ShardIndex,
    ShardIndexError,
    ShardRecord,
    build_index,
    load_index,
    save_index,
    wids_location,
)

__all__ = ["AISShardDataset", "SampleSpan", "ShardIndex", "ShardIndexError", "ShardRecord", "build_index",
           "load_index", "save_index", "wids_location"]


def __getattr__(name: str) -> Any:
    if name == "AISShardDataset":
        from .dataset import AISShardDataset

        return AISShardDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
