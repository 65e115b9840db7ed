"""When an epoch of a mix ends: the ``stop=`` rules of :class:`ais_wds.Mix`.

* an ``int`` N: every rank yields exactly N samples per epoch (with ``batch_size=b``: ``ceil(N / b)``
  batches), split over its DataLoader workers. A source whose share runs out in a worker starts its next
  epoch there (its own new order). ``len()`` is N (or the batch count), the same on every rank, so a
  DDP job never waits on a rank that stopped early. The usual choice for mixtures.
* ``"first_exhausted"``: a worker stops when it draws a source whose share (of that source's epoch) it has
  read to the end. No source repeats in the epoch; ranks and workers may yield different counts (a DDP
  job needs ``join()`` or a count), and ``len()`` is unknown.
* ``"all_exhausted"``: a source whose share ends leaves the draw (the others' weights are renormalised),
  and the worker stops when every source of positive weight is exhausted: every sample of every source
  once per epoch, none twice; counts differ by rank as above.

Pure logic; no I/O, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from ..errors import ConfigError

FIRST_EXHAUSTED = "first_exhausted"
ALL_EXHAUSTED = "all_exhausted"
MODES = (FIRST_EXHAUSTED, ALL_EXHAUSTED)
UNBOUNDED = 1 << 40
"""Positions of an epoch that ends by exhaustion (never reached; its parts' shares are 2**40 / parts)."""


@dataclass(frozen=True)
class StopRule:
    """A parsed ``stop=``: ``count`` samples per rank, or ``mode`` (one of :data:`MODES`)."""

    count: Optional[int] = None
    mode: Optional[str] = None

    @classmethod
    def parse(cls, stop: Union[int, str]) -> StopRule:
        """Raises: ConfigError: not a positive int, ``"first_exhausted"`` or ``"all_exhausted"``."""
        if isinstance(stop, bool):
            raise ConfigError(f"stop={stop!r}: expected a sample count per rank, {MODES[0]!r} or {MODES[1]!r}")
        if isinstance(stop, int):
            if stop <= 0:
                raise ConfigError(f"stop={stop}: a count of samples per rank must be positive")
            return cls(count=stop)
        if stop in MODES:
            return cls(mode=str(stop))
        raise ConfigError(f"stop={stop!r}: expected a sample count per rank, {MODES[0]!r} or {MODES[1]!r}")

    def positions(self, world_size: int) -> int:
        """Mix positions in a whole epoch of the job (``count x world_size``, or unbounded)."""
        return self.count * world_size if self.count is not None else UNBOUNDED

    @property
    def even(self) -> Optional[str]:
        """How the epoch's positions are evened over ranks: ``"drop"`` for a count (equal counts), else None."""
        return "drop" if self.count is not None else None

    def to_value(self) -> Union[int, str]:
        return self.count if self.count is not None else str(self.mode)
