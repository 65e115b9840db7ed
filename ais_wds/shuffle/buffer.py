"""The shuffle buffer of ``.shuffle(n)``: webdataset's algorithm, with a reference per buffered sample.

webdataset's ``shuffle(bufsize, initial)``: each sample read goes into the buffer (while the buffer is
below ``bufsize`` one more is read with it, so it fills at two samples per output); once it holds
``initial`` samples, each step outputs one drawn uniformly from it (swapped with the last, popped);
at the end of the input it is drained in random order. Here every item travels with its reference (a
packed int, :mod:`ais_wds.shuffle.refs`) and the draws come from a :class:`~ais_wds.shuffle.rng.SplitMix64`,
so the buffer's state is its references, in buffer order, and the generator's one integer: at most
8 bytes per buffered sample plus a constant. Refilled with the same items in the same order and the
same generator state, it outputs exactly what the uninterrupted buffer would have.

Pure logic; one buffer belongs to one thread.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import ConfigError
from .rng import SplitMix64

DEFAULT_INITIAL = 100
"""webdataset's default: outputs start once the buffer holds this many samples (or ``size``, if smaller)."""


class ShuffleBuffer:
    """Up to ``size`` items with their references, drawn uniformly at random.

    Args:
        size: the buffer's capacity (>= 1).
        rng: the generator of the draws (its state is part of :meth:`state`).
        initial: outputs start once this many are held (default ``min(100, size)``, as webdataset).

    Raises:
        ConfigError: ``size`` or ``initial`` below 1.
    """

    __slots__ = ("size", "initial", "rng", "items", "refs")

    def __init__(self, size: int, rng: SplitMix64, initial: Optional[int] = None):
        if int(size) < 1 or (initial is not None and int(initial) < 1):
            raise ConfigError(f"a shuffle buffer needs size >= 1 and initial >= 1, got size={size!r}, "
                              f"initial={initial!r}")
        self.size = int(size)
        self.initial = min(int(initial) if initial is not None else DEFAULT_INITIAL, self.size)
        self.rng = rng
        self.items: List[Any] = []
        self.refs: List[int] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: Any, ref: int) -> None:
        self.items.append(item)
        self.refs.append(ref)

    def draw(self) -> Any:
        """Remove and return a uniformly drawn item (the buffer must not be empty)."""
        items, refs = self.items, self.refs
        k = self.rng.below(len(items))
        item = items[k]
        items[k] = items[-1]
        refs[k] = refs[-1]
        items.pop()
        refs.pop()
        return item

    def shuffle(self, source: Iterator[Tuple[Any, int]]) -> Iterator[Any]:
        """The items of ``(item, ref)`` pairs from ``source``, in shuffled order (webdataset's algorithm,
        see the module docstring). The buffer's content when an item is yielded is its :meth:`state`."""
        size, initial = self.size, self.initial
        for item, ref in source:
            self.add(item, ref)
            if len(self.items) < size:
                more = next(source, None)
                if more is not None:
                    self.add(*more)
            if len(self.items) >= initial:
                yield self.draw()
            while len(self.items) > size:  # over-full after a resume handed it more: back to size
                yield self.draw()
        while self.items:
            yield self.draw()

    def state(self) -> Dict[str, Any]:
        """``{"held": refs in buffer order, "draws": the generator's state}``: plain ints (torch.save, json)."""
        return {"held": list(self.refs), "draws": self.rng.state}

    def restore(self, items: Sequence[Any], refs: Sequence[int], draws: Optional[int] = None) -> None:
        """Refill with ``items`` (those the references ``refs`` name, in the same order) and, when given,
        the generator's saved state.

        Raises:
            ConfigError: as many items as references were not given.
        """
        if len(items) != len(refs):
            raise ConfigError(f"a shuffle buffer refilled with {len(items)} samples for {len(refs)} references",
                              hint="the shards changed since the checkpoint: resume with the same data")
        self.items[:0] = list(items)
        self.refs[:0] = [int(r) for r in refs]
        if draws is not None:
            self.rng.state = int(draws)


def shares(refs: Sequence[int], index: int, count: int) -> List[int]:
    """Part ``index`` of ``count`` contiguous, balanced shares of ``refs`` (a job's held samples split
    over the parts of the new shape)."""
    n = len(refs)
    return list(refs[index * n // count:(index + 1) * n // count])

