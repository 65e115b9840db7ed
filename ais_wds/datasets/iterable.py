"""AISIterDataset: an iterable dataset of whole objects, split over ranks and workers, resumable.

Lists once per job, in ``__init__`` (rank 0 lists and shares the listing over torch.distributed). The
rank is taken there too, and carried to the DataLoader workers with the dataset. Each iterator reads its
part of the epoch's order (``ais_wds.epochs.plan``: contiguous, balanced shares of the seeded order;
every object exactly once across ranks x workers) and fetches ahead through the engine
(``ais_wds.objects.prefetch``), by default as pipelined AIS batch GETs.

Iteration state, in the torchdata.nodes spirit: an iterator counts the objects it has handed out (or
skipped); ``state_dict()`` reports it (torchdata's ``StatefulDataLoader`` stores it per worker with the
batches the training loop consumed) and ``load_state_dict()`` makes the next iterator start after them.
A job state (``ais_wds.job_state``) resumes at another world size or worker count.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from torch.utils.data import IterableDataset

from ..client import Client
from ..epochs.plan import Epochs, PartPlan, rank_runs, slots, total, universe
from ..listing import Listing
from ..partition import Part, epoch_order, rank_world
from ._common import ErrorPolicy, FetchSettings, Transform, apply, build_listing

logger = logging.getLogger(__name__)

MAX_BYTES = 32 << 20
"""The default read-ahead window of an iterator (each DataLoader worker), in listed bytes. Measured on bench
section 25 (2400 objects of 100 KiB, 4 workers, 6 epochs): 256 MiB (cut into 32 MiB requests) held each
worker's whole share of an epoch and left 20-48 MiB more in a fetch thread's malloc arena after epoch 1;
32 MiB (8 MiB requests) keeps workers flat and is as fast."""


class AISIterDataset(IterableDataset):
    """Iterable dataset over every object under some prefixes and/or aistore SDK sources.

    Args:
        client_url, urls_list, ais_source_list, transform, on_error: as :class:`~ais_wds.AISDataset`
            (under ``on_error="skip"`` a failed object is not yielded).
        shuffle: shuffle the order every epoch, the same way in every process (``seed``, ``set_epoch``).
        seed: shuffle seed; must be the same on every rank.
        even: None (ranks may differ by one object), ``"drop"`` or ``"repeat"`` (exactly the same count
            on every rank, as DDP needs).
        rank: this process's DDP rank; default: detected now, in the building process
            (torch.distributed, else RANK/WORLD_SIZE, else SLURM; see ``ais_wds.partition.dist_rank_world``).
        world_size: the number of DDP ranks; default: detected now with ``rank``, the same way.
        part: a :class:`~ais_wds.partition.Part`: fixes the rank, and the worker too when its
            ``num_workers > 1`` (else the DataLoader worker is detected).
        fetch: ``"batch"`` (default; pipelined AIS batch GETs) or ``"get"`` (parallel direct GETs).
        batch_size: most objects per batch GET request.
        threads: requests in flight (per DataLoader worker).
        max_bytes: the read-ahead window of each iterator (each DataLoader worker): the objects in flight
            plus those fetched and not yet handed out hold at most this many listed bytes (objects larger
            than half of it are read one ahead). Default 32 MiB, cut into requests of at most
            ``max_bytes / threads`` (8 MiB), so that a worker's memory does not depend on the object
            size; raise it for throughput over a slow link (``docs/memory.md``).

    Epochs advance on their own (each DataLoader iteration, persistent workers or not, and each
    pass in this process starts the next epoch); ``set_epoch(n)`` fixes the next one.

    Raises:
        ConfigError: no source, or a bad option.
        EmptyListingError, BucketNotFoundError, ConnectError, RequestError, URLError: listing failed.

    Process safety: picklable; the listing goes to the workers, which never list. Thread safety: one
    iterator per thread; ``state_dict`` describes the most recent iterator of this process.
    """

    def __init__(
        self,
        client_url: Union[Client, str, None] = None,
        urls_list: Union[str, Sequence[str], None] = None,
        ais_source_list: Any = None,
        *,
        transform: Optional[Transform] = None,
        on_error: str = "raise",
        shuffle: bool = False,
        seed: int = 0,
        even: Optional[str] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        part: Optional[Part] = None,
        fetch: str = "batch",
        batch_size: int = 512,
        threads: int = 4,
        max_bytes: int = MAX_BYTES,
    ):
        fixed_worker = None
        if part is not None:
            rank, world_size = part.rank, part.world_size
            fixed_worker = (part.worker, part.num_workers) if part.num_workers > 1 else None
        rank, world_size = rank_world(rank, world_size)
        self.client = Client.of(client_url)
        self.client.load_sdk()  # forked workers inherit the SDK import
        self.listing: Listing = build_listing(self.client, urls_list, ais_source_list)
        self.transform = transform
        self.shuffle = shuffle
        self.seed = seed
        self.even = even
        self.epochs = Epochs(rank, world_size, even, "AISIterDataset", worker=fixed_worker)
        self._policy = ErrorPolicy(on_error)
        self._engine = FetchSettings(fetch, batch_size, threads, max_bytes).engine(self.client)

    @classmethod
    def from_listing(cls, listing: Listing, client_url: Union[Client, str, None] = None, **options: Any
                     ) -> AISIterDataset:
        """A dataset over an existing listing (e.g. ``Listing.load("train.msgpack")``); no listing request."""
        return cls(client_url, ais_source_list=[listing], **options)

    @property
    def rank(self) -> int:
        return self.epochs.rank

    @property
    def world_size(self) -> int:
        return self.epochs.world_size

    @property
    def epoch(self) -> int:
        """The epoch in progress in this process, else the next one."""
        return self.epochs.epoch

    @property
    def skipped(self) -> int:
        """Objects skipped under ``on_error="skip"``, in this process and its DataLoader workers."""
        return self._policy.skipped.value

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` at the next iteration (call it on every rank, before the DataLoader starts
        its workers). Optional: epochs advance by themselves."""
        self.epochs.set_epoch(int(epoch))

    def _identity(self) -> Dict[str, Any]:
        return {"dataset": "AISIterDataset", "num_objects": len(self.listing), "shuffle": self.shuffle,
                "seed": self.seed}

    def _order(self, epoch: int) -> List[int]:
        return epoch_order(len(self.listing), seed=self.seed if self.shuffle else None, epoch=epoch)

    def indices(self, plan: Optional[PartPlan] = None) -> List[int]:
        """The listing indices a part reads in its epoch, in order (default: this rank, whole epoch)."""
        if plan is None:
            runs = rank_runs(universe(len(self.listing), self.even, []), self.world_size, self.rank, self.even)
            order = self._order(self.epoch)
        else:
            runs, order = plan.runs, self._order(plan.epoch)
        return [order[s] for s in slots(runs)]

    def __len__(self) -> int:
        """Objects this rank yields in a whole epoch, over all its DataLoader workers (before skips);
        the same on every rank with ``even``."""
        return total(rank_runs(universe(len(self.listing), self.even, []), self.world_size, self.rank, self.even))

    def __iter__(self) -> Iterator[Any]:
        plan = self.epochs.begin(len(self.listing), self._identity())
        return self._read(plan)

    def _read(self, plan: PartPlan) -> Iterator[Any]:
        order = self._order(plan.epoch)
        listing = self.listing
        items = (listing[order[s]] for s in slots(plan.left()))
        done = plan.progress[0]
        for url, result in self._engine.imap(items):
            done += 1
            plan.progress = (done, 0)
            data = self._policy.check(url, result)
            if data is not None:
                yield apply(self.transform, url, data)

    # -- iteration state ---------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Where this process's iteration stands: epoch, part and objects handed out. Small plain data
        (``torch.save`` / json). Combine the states of every rank with ``ais_wds.job_state`` to resume at
        another shape."""
        return self.epochs.state(len(self.listing), self._identity())

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume at the next iteration: from a part state (same rank and worker), or from a job state
        (``ais_wds.job_state``: any world size and worker count).

        Raises:
            ConfigError: the state is for another listing size, shuffle or seed, or another part.
        """
        self.epochs.load(state, self._identity())

    def __repr__(self) -> str:
        return f"AISIterDataset({len(self.listing)} objects, epoch {self.epoch}, {self.client!r})"
