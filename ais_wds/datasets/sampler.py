"""``AISSampler``: the index sampler of the map-style datasets (:class:`~ais_wds.AISDataset`,
:class:`~ais_wds.AISShardDataset`): this rank's share of a seeded epoch order, epochs that advance on
their own, and a state for torchdata's ``StatefulDataLoader`` (exact and elastic resume). It also tells
an :class:`~ais_wds.AISDataset` its order, so the dataset can read ahead of the DataLoader (see
:mod:`ais_wds.datasets.readahead`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

from torch.utils.data import Sampler

from ..epochs.plan import Epochs, Layer, rank_runs, slots, total, universe
from ..partition import epoch_order, rank_world

__all__ = ["AISSampler", "OrderSpec"]


@dataclass(frozen=True)
class OrderSpec:
    """One epoch's order of a rank's indices: what :class:`AISSampler` yields (``layers``: the shapes
    the epoch was read at before a resume)."""

    shuffle: bool = False
    seed: int = 0
    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    even: Optional[str] = None
    layers: Tuple[Layer, ...] = ()

    def order(self, n: int) -> List[int]:
        full = epoch_order(n, seed=self.seed if self.shuffle else None, epoch=self.epoch)
        runs = rank_runs(universe(n, self.even, self.layers), self.world_size, self.rank, self.even)
        return [full[s] for s in slots(runs)]


class AISSampler(Sampler):
    """Index sampler of a map-style dataset: this rank's contiguous share of the epoch's seeded order.

    Make it with ``dataset.sampler(...)``.

    Args:
        dataset: the dataset it samples (anything with ``len()``).
        shuffle, seed: seeded per-epoch shuffle (the same on every rank).
        rank: this rank; default: detected now (torch.distributed, else RANK/WORLD_SIZE, else SLURM).
        world_size: the number of ranks; default: detected now with ``rank``, the same way.
            ``even="drop"|"repeat"``: exactly the same count on every rank.

    Every ``iter()`` starts the next epoch (``set_epoch(n)`` fixes it, as with ``DistributedSampler``).
    ``state_dict()`` / ``load_state_dict()``: torchdata's ``StatefulDataLoader`` saves and restores them
    with the batches consumed, so a resumed epoch yields exactly the indices not consumed; a job state
    (``ais_wds.job_state``) resumes at another world size.
    """

    def __init__(self, dataset: Any, *, shuffle: bool = False, seed: int = 0, rank: Optional[int] = None,
                 world_size: Optional[int] = None, even: Optional[str] = None):
        rank, world_size = rank_world(rank, world_size)
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = seed
        self.even = even
        self.epochs = Epochs(rank, world_size, even, "AISSampler")
        self.spec = OrderSpec(shuffle, seed, 0, rank, world_size, even)
        self._pending = False  # an iterator was made but not read yet
        self._publish(self.spec)

    def _publish(self, spec: OrderSpec) -> None:
        self.spec = spec
        if hasattr(self.dataset, "order_spec"):
            self.dataset.order_spec = spec

    def _identity(self) -> Dict[str, Any]:
        return {"dataset": type(self.dataset).__name__, "num_objects": len(self.dataset), "shuffle": self.shuffle,
                "seed": self.seed}

    @property
    def epoch(self) -> int:
        return self.epochs.epoch

    def set_epoch(self, epoch: int) -> None:
        self.epochs.set_epoch(int(epoch))

    def __iter__(self) -> Iterator[int]:
        # The epoch begins at the first next(): DataLoaders make iterators they never read (torch makes
        # two per epoch, torchdata more while restoring); only a read one starts an epoch.
        self._pending = True
        return self._yield()

    def _yield(self) -> Iterator[int]:
        self._pending = False
        plan = self.epochs.begin(len(self.dataset), self._identity(), per_rank=True)
        spec = OrderSpec(self.shuffle, self.seed, plan.epoch, plan.rank, plan.world_size, self.even, plan.layers)
        self._publish(spec)
        order = spec.order(len(self.dataset))
        done = plan.progress[0]
        for i in order[done:]:
            done += 1
            plan.progress = (done, 0)
            yield i

    def __len__(self) -> int:
        """Indices this rank yields in a whole epoch (the same on every rank with ``even``)."""
        n = len(self.dataset)
        return total(rank_runs(universe(n, self.even, []), self.epochs.world_size, self.epochs.rank, self.even))

    def state_dict(self) -> Dict[str, Any]:
        return self.epochs.state(len(self.dataset), self._identity(), per_rank=True, fresh=self._pending)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.epochs.load(state, self._identity())
