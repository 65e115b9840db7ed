"""The seeded weighted draw of a mix: which source mix position ``p`` of an epoch reads.

Counter-based, so a draw depends on nothing but its inputs: position ``p`` gets a uniform number
``u(seed, epoch, p)`` (Philox, keyed by a hash of ``(seed, epoch, p // BLOCK)``, the block's uniforms
drawn at once), and reads the source whose interval of the cumulative weights holds ``u``. No state is
carried from one draw to the next, so whichever rank or DataLoader worker reads position ``p``, at
whatever time, draws the same source, a resume needs only the position, and an elastic resume may hand
the positions to other workers. The weights only map ``u`` to a source: a weight change (or a source
leaving the draw) changes the mapping from the position it takes effect, not the numbers.

Pure computation (numpy); no I/O, no torch. Thread safety: one :class:`Draws` per iterator.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, List, Optional, Sequence

import numpy as np

BLOCK = 1024
"""Positions whose uniforms are drawn together."""


def check_weights(weights: Sequence[float], count: int) -> List[float]:
    """``weights`` as floats, normalised to sum to 1.

    Raises:
        ConfigError: not ``count`` numbers, a negative, NaN or infinite one, or none positive.
    """
    from ..errors import ConfigError

    try:
        values = [float(w) for w in weights]
    except (TypeError, ValueError):
        raise ConfigError(f"weights must be numbers, got {weights!r}") from None
    if len(values) != count:
        raise ConfigError(f"{len(values)} weights for {count} sources", hint="give one weight per source")
    if any(not math.isfinite(w) or w < 0 for w in values):
        raise ConfigError(f"weights must be finite and >= 0, got {values}")
    total = sum(values)
    if total <= 0:
        raise ConfigError(f"at least one weight must be positive, got {values}")
    return [w / total for w in values]


def uniforms(seed: int, epoch: int, block: int) -> Any:
    """The uniforms in [0, 1) of positions ``block*BLOCK .. block*BLOCK + BLOCK - 1`` of ``epoch`` (numpy array)."""
    digest = hashlib.blake2b(f"ais_wds:mix:{seed}:{epoch}:{block}".encode(), digest_size=16).digest()
    return np.random.Generator(np.random.Philox(key=int.from_bytes(digest, "little"))).random(BLOCK)


def cumulative(weights: Sequence[float], active: Optional[Sequence[bool]] = None) -> Any:
    """Upper bounds of each source's interval of [0, 1): weights of the ``active`` sources, renormalised;
    the last positive bound is infinite (a draw never falls past it). Raises ``ValueError`` when no active
    source has a positive weight."""
    w = np.array([x if active is None or active[i] else 0.0 for i, x in enumerate(weights)], dtype=np.float64)
    total = w.sum()
    if total <= 0:
        raise ValueError("no active source with a positive weight")
    bounds = np.cumsum(w / total)
    last = int(np.flatnonzero(w > 0)[-1])
    bounds[last:] = np.inf
    return bounds


def pick(u: float, bounds: Any) -> int:
    """The source whose interval holds ``u``."""
    return int(np.searchsorted(bounds, u, side="right"))


class Draws:
    """The draws of one epoch of a mix, for positions read in increasing order (any order works; a block
    is kept for the positions that follow).

    ``source(p)`` is the source of position ``p`` under the current mapping; :meth:`remap` changes the
    mapping (new weights, or sources leaving the draw) for the positions read after it.
    """

    __slots__ = ("seed", "epoch", "_bounds", "_block", "_uniforms", "_picks")

    def __init__(self, seed: int, epoch: int, weights: Sequence[float], active: Optional[Sequence[bool]] = None):
        self.seed = seed
        self.epoch = epoch
        self._bounds = cumulative(weights, active)
        self._block = -1
        self._uniforms: Any = None
        self._picks: List[int] = []

    def remap(self, weights: Sequence[float], active: Optional[Sequence[bool]] = None) -> None:
        """Draw with these weights over the ``active`` sources from now on (raises ``ValueError`` if none)."""
        self._bounds = cumulative(weights, active)
        if self._uniforms is not None:
            self._picks = np.searchsorted(self._bounds, self._uniforms, side="right").tolist()

    def source(self, p: int) -> int:
        """The source mix position ``p`` reads."""
        block = p // BLOCK
        if block != self._block:
            self._load(block)
        return self._picks[p - block * BLOCK]

    def sources(self, p: int, end: int) -> List[int]:
        """The sources of positions ``p .. end - 1``, which must lie in one block of ``BLOCK`` positions."""
        block = p // BLOCK
        if block != self._block:
            self._load(block)
        offset = block * BLOCK
        return self._picks[p - offset:end - offset]

    def _load(self, block: int) -> None:
        self._block = block
        self._uniforms = uniforms(self.seed, self.epoch, block)
        self._picks = np.searchsorted(self._bounds, self._uniforms, side="right").tolist()
