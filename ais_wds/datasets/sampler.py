"""``AISSampler``: the index sampler of :class:`~ais_wds.AISDataset` that also tells the dataset its
order, so the dataset can read ahead of the DataLoader (see :mod:`ais_wds.datasets._readahead`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, List, Optional

from torch.utils.data import Sampler

from ..partition import Part, dist_rank_world, epoch_order, partition

__all__ = ["AISSampler", "OrderSpec"]


@dataclass(frozen=True)
class OrderSpec:
    """One epoch's order of a rank's indices: what :class:`AISSampler` yields."""

    shuffle: bool = False
    seed: int = 0
    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    even: Optional[str] = None

    def order(self, n: int) -> List[int]:
        full = epoch_order(n, seed=self.seed if self.shuffle else None, epoch=self.epoch)
        return partition(full, Part(self.rank, self.world_size), even=self.even)


class AISSampler(Sampler):
    """Index sampler of an :class:`~ais_wds.AISDataset` that also tells the dataset its order, so the
    dataset can read ahead of the DataLoader (see :mod:`ais_wds.datasets._readahead`). Make it with
    ``dataset.sampler(...)``.

    Args:
        dataset: the dataset it samples.
        shuffle, seed: seeded per-epoch shuffle (the same on every rank).
        rank, world_size: this rank's share (default: torch.distributed or RANK/WORLD_SIZE), as
            ``DistributedSampler`` splits; ``even`` as :func:`~ais_wds.partition.partition`.

    Call :meth:`set_epoch` before each epoch (before the DataLoader starts its workers). With
    ``persistent_workers=True`` the workers keep the first epoch's order and read ahead less (the
    results stay correct).
    """

    def __init__(self, dataset: Any, *, shuffle: bool = False, seed: int = 0, rank: Optional[int] = None,
                 world_size: Optional[int] = None, even: Optional[str] = None):
        if rank is None or world_size is None:
            rank, world_size = dist_rank_world()
        self.dataset = dataset
        self.spec = OrderSpec(shuffle, seed, 0, rank, world_size, even)
        partition([], Part(rank, world_size), even=even)  # validates now
        dataset.order_spec = self.spec

    def set_epoch(self, epoch: int) -> None:
        self.spec = OrderSpec(self.spec.shuffle, self.spec.seed, int(epoch), self.spec.rank,
                              self.spec.world_size, self.spec.even)
        self.dataset.order_spec = self.spec

    def __iter__(self) -> Iterator[int]:
        self.dataset.order_spec = self.spec
        return iter(self.spec.order(len(self.dataset)))

    def __len__(self) -> int:
        return len(self.spec.order(len(self.dataset)))


