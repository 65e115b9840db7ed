"""Weighted mixing of ais_wds sources (``ais_wds.Mix``), one concept per module:

    draws.py      the seeded, counter-based weighted draw of each mix position (no torch)
    stratify.py   largest-remainder batch composition (no torch)
    stop.py       when a mix epoch ends: a count per rank, first or all sources exhausted (no torch)
    weights.py    weights shared with running DataLoader workers (no torch)
    state.py      the mix's plain-data state, and its job state for elastic resume (no torch)
    sources.py    the front ends a mix reads, behind one small interface
    passes.py     one pass of a mix in one process: positions, draws, source iterators, state
    mix.py        the dataset

``Mix`` loads on first access (as the front ends of ``ais_wds`` do): importing a torch-free module of
this package (a spawned DataLoader worker unpickling :class:`~ais_wds.mixing.weights.SharedWeights`, a
tool reading a mix state) loads neither torch nor webdataset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .mix import Mix

__all__ = ["Mix"]


def __getattr__(name: str) -> Any:
    if name == "Mix":
        from .mix import Mix

        globals()["Mix"] = Mix
        return Mix
    raise AttributeError(f"module 'ais_wds.mixing' has no attribute {name!r}")
