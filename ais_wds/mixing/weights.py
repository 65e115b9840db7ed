"""The weights of a mix, shared with its DataLoader workers, so ``set_weights`` reaches running ones.

One small shared array (``[version, w0, w1, ...]``) made when the mix is built, in the spawn context (its
lock may go to fork, spawn and forkserver workers alike), before any worker starts: a worker made from
the mix by fork or pickling (spawn, forkserver) holds the same memory. :meth:`SharedWeights.set` writes
new weights and bumps the version; a worker compares the version with the last one it saw (a plain read
of one number, no lock) every few positions and takes the new weights when it changed. Pickled outside a
worker start (``torch.save``) it becomes a private copy.

No torch. Process safety: as above; thread safety: the writes hold the array's lock.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import get_spawning_popen
from typing import Any, Dict, List, Sequence, Tuple

_CONTEXT = multiprocessing.get_context("spawn")


class SharedWeights:
    """Normalised weights and a version number, shared with the workers started from this process."""

    def __init__(self, weights: Sequence[float]) -> None:
        self._cell: Any = _CONTEXT.Array("d", [0.0, *weights])
        self._raw = self._cell.get_obj()

    def __getstate__(self) -> Dict[str, Any]:
        if get_spawning_popen() is not None:
            return {"cell": self._cell}
        return {"cell": None, "values": list(self._cell[:])}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._cell = state["cell"] if state["cell"] is not None else _CONTEXT.Array("d", state["values"])
        self._raw = self._cell.get_obj()

    @property
    def version(self) -> int:
        """Bumped by every :meth:`set` (read without the lock: one aligned double)."""
        return int(self._raw[0])

    def changed(self, seen: int) -> bool:
        """Whether the version is no longer ``seen`` (the cheap look a worker takes every few samples)."""
        return bool(self._raw[0] != seen)

    def read(self) -> Tuple[int, List[float]]:
        """``(version, weights)``, consistent with each other."""
        with self._cell.get_lock():
            values = list(self._cell[:])
        return int(values[0]), values[1:]

    def set(self, weights: Sequence[float]) -> int:
        """Share new (normalised) weights; returns the new version."""
        cell = self._cell
        with cell.get_lock():
            version = int(cell[0]) + 1
            cell[1:] = list(weights)
            cell[0] = float(version)
        return version

    def seed_if_untouched(self, weights: Sequence[float]) -> None:
        """Show ``weights`` (those of a loaded state) as the current ones, unless :meth:`set` was called
        since the mix was built; no version bump, so no worker re-reads them."""
        cell = self._cell
        with cell.get_lock():
            if int(cell[0]) == 0:
                cell[1:] = list(weights)
