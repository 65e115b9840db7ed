"""k shards read at once, each sample drawn from a uniformly chosen open shard (no index needed).

A buffer of n samples mixes only the shards that pass through it: about n / (samples per shard) of
them. Reading k shards at once and taking each next sample from a random one of them mixes k shards at
the memory of k read buffers (one open stream each), and a buffer behind it mixes further.

An *entry* is ``[shard, next sample, stop]``: a shard (its number in the job's shard list), the number of
the next sample to read from it, and the sample number it stops at (``-1``: the shard's end). The open
entries, in order, and the generator's state are the whole state; entries reopened at their ``next``
sample, in the same order, with the same generator state, continue exactly.

Pure logic: the caller opens streams (``opener``); one instance belongs to one thread.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List, Sequence, Tuple

from ..errors import ConfigError
from .refs import pack_ref
from .rng import SplitMix64

Entry = List[int]
_END = object()


class OpenShards:
    """Interleaves up to ``k`` open shards.

    Args:
        k: shards open at once (>= 1).
        rng: the generator of the picks.

    Raises:
        ConfigError: ``k`` below 1.
    """

    def __init__(self, k: int, rng: SplitMix64):
        if int(k) < 1:
            raise ConfigError(f"open_shards must be at least 1, got {k!r}")
        self.k = int(k)
        self.rng = rng
        self.entries: List[Entry] = []
        self.streams: List[Iterator[Any]] = []
        self.queued: List[Entry] = []  # entries handed over at resume, opened before the plan's own

    def restore(self, entries: Sequence[Sequence[int]], opened: int, opener: Callable[[Entry], Iterator[Any]]) -> None:
        """Reopen the first ``opened`` of ``entries`` (in this order) and queue the rest."""
        for e in entries[:opened]:
            entry = [int(x) for x in e]
            self.entries.append(entry)
            self.streams.append(opener(entry))
        self.queued.extend([int(x) for x in e] for e in entries[opened:])

    def interleave(self, pending: Iterator[Entry], opener: Callable[[Entry], Iterator[Any]]
                   ) -> Iterator[Tuple[Any, int]]:
        """``(sample, packed reference)`` pairs: each drawn from a uniformly chosen open shard; an
        exhausted shard is replaced by the next entry (the queued ones first, then ``pending``)."""
        entries, streams, rng = self.entries, self.streams, self.rng

        def following() -> Any:
            if self.queued:
                return self.queued.pop(0)
            return next(pending, None)

        while len(streams) < self.k:
            entry = following()
            if entry is None:
                break
            entries.append(entry)
            streams.append(opener(entry))
        while streams:
            i = rng.below(len(streams))
            item = next(streams[i], _END)
            if item is _END:
                entry = following()
                if entry is None:
                    entries[i], streams[i] = entries[-1], streams[-1]
                    entries.pop()
                    streams.pop()
                else:
                    entries[i], streams[i] = entry, opener(entry)
                continue
            entry = entries[i]
            ref = pack_ref(entry[0], entry[1])
            entry[1] += 1
            yield item, ref

    def state(self) -> Tuple[List[Entry], int, int]:
        """(open then queued entries, how many of them are open, the generator's state)."""
        return [list(e) for e in self.entries] + [list(e) for e in self.queued], len(self.entries), self.rng.state

    def close(self) -> None:
        for stream in self.streams:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
