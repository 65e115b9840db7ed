"""Weighted mixing of ais_wds sources (``ais_wds.Mix``), one concept per module:

    draws.py      the seeded, counter-based weighted draw of each mix position (no torch)
    stratify.py   largest-remainder batch composition (no torch)
    stop.py       when a mix epoch ends: a count per rank, first or all sources exhausted (no torch)
    weights.py    weights shared with running DataLoader workers (no torch)
    state.py      the mix's plain-data state, and its job state for elastic resume (no torch)
    sources.py    the front ends a mix reads, behind one small interface
    passes.py     one pass of a mix in one process: positions, draws, source iterators, state
    mix.py        the dataset
"""

from .mix import Mix

__all__ = ["Mix"]
