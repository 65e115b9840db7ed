"""AISIterDataset: an iterable dataset of whole objects, split over ranks and workers, resumable.

Lists once, in ``__init__``. Each iterator takes its :class:`~ais_wds.partition.Part` of the epoch's
order (``epoch_order`` + ``partition``: every object exactly once across ranks x workers), and fetches
ahead through the engine (``ais_wds._core.prefetch``), by default as pipelined AIS batch GETs.

Iteration state, in the torchdata.nodes spirit: an iterator counts the objects it has handed out (or
skipped); ``state_dict()`` reports it and ``load_state_dict()`` makes the next iterator start after
them, so a resumed epoch yields exactly the remaining objects.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from torch.utils.data import IterableDataset

from ..client import Client
from ..errors import ConfigError
from ..listing import Listing
from ..partition import Part, current_part, dist_rank_world, epoch_order, partition
from ._common import ErrorPolicy, FetchSettings, Transform, apply, build_listing

logger = logging.getLogger(__name__)

STATE_VERSION = 1


def _part_key(part: Part) -> str:
    return f"{part.rank}/{part.world_size}/{part.worker}/{part.num_workers}"


class AISIterDataset(IterableDataset):
    """Iterable dataset over every object under some prefixes and/or aistore SDK sources.

    Args:
        client_url, urls_list, ais_source_list, transform, on_error: as :class:`~ais_wds.AISDataset`
            (under ``on_error="skip"`` a failed object is not yielded).
        shuffle: shuffle the order every epoch, the same way in every process (``seed``, ``set_epoch``).
        seed: shuffle seed; must be the same on every rank.
        even: None (ranks may differ by one object), ``"drop"`` or ``"repeat"`` (equal counts per rank,
            as DDP needs; see :func:`~ais_wds.partition.partition`).
        part: fix this iterator's rank/worker instead of detecting it (torch.distributed or
            RANK/WORLD_SIZE, and the DataLoader worker).
        fetch: ``"batch"`` (default; pipelined AIS batch GETs) or ``"get"`` (parallel direct GETs).
        batch_size: objects per batch GET request.
        threads: requests in flight (per DataLoader worker).
        max_bytes: most listed bytes fetched ahead (per DataLoader worker).

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
        part: Optional[Part] = None,
        fetch: str = "batch",
        batch_size: int = 512,
        threads: int = 4,
        max_bytes: int = 256 << 20,
    ):
        self.client = Client.of(client_url)
        self.listing: Listing = build_listing(self.client, urls_list, ais_source_list)
        self.transform = transform
        self.shuffle = shuffle
        self.seed = seed
        self.even = even
        self.part = part
        partition([], Part(), even=even)  # validates ``even`` now rather than in a worker
        self._policy = ErrorPolicy(on_error)
        self._engine = FetchSettings(fetch, batch_size, threads, max_bytes).engine(self.client)
        self.epoch = 0
        self._positions: Dict[str, int] = {}  # part key -> objects handed out or skipped this epoch
        self._resume: Dict[str, int] = {}  # positions to start from, consumed by the next iterator

    @classmethod
    def from_listing(cls, listing: Listing, client_url: Union[Client, str, None] = None, **options: Any
                     ) -> AISIterDataset:
        """A dataset over an existing listing (e.g. ``Listing.load("train.msgpack")``); no listing request."""
        return cls(client_url, ais_source_list=[listing], **options)

    @property
    def skipped(self) -> int:
        """Objects skipped under ``on_error="skip"``, in this process and its DataLoader workers."""
        return self._policy.skipped.value

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order from the next iterator on (call it on every rank, before the DataLoader
        starts its workers, e.g. before each ``for batch in loader``)."""
        self.epoch = int(epoch)
        self._positions = {}
        self._resume = {}

    def indices(self, part: Optional[Part] = None) -> List[int]:
        """The listing indices ``part`` (default: the caller's) reads this epoch, in order."""
        part = part or self.part or current_part()
        order = epoch_order(len(self.listing), seed=self.seed if self.shuffle else None, epoch=self.epoch)
        return partition(order, part, even=self.even)

    def __len__(self) -> int:
        """Objects this rank yields per epoch over all its DataLoader workers (before any skips)."""
        rank, world = (self.part.rank, self.part.world_size) if self.part else dist_rank_world()
        return len(self.indices(Part(rank, world)))

    def __iter__(self) -> Iterator[Any]:
        part = self.part or current_part()
        key = _part_key(part)
        idx = self.indices(part)
        start = self._resume.pop(key, 0)
        self._positions[key] = start
        urls, sizes = self.listing.urls, self.listing.sizes
        items = ((urls[i], sizes[i]) for i in idx[start:])
        position = start
        for url, result in self._engine.imap(items):
            position += 1
            self._positions[key] = position
            data = self._policy.check(url, result)
            if data is not None:
                yield apply(self.transform, url, data)

    # -- iteration state ---------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Where iteration stands: epoch, and per rank/worker part the objects already handed out.

        Returns:
            A small dict of plain values (save it with ``torch.save`` or json).
        """
        return {"version": STATE_VERSION, "epoch": self.epoch, "shuffle": self.shuffle, "seed": self.seed,
                "num_objects": len(self.listing), "positions": {**self._resume, **self._positions}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next iterator of each part starts after its handed-out objects.

        Raises:
            ConfigError: the state is for another listing size, shuffle or seed.
        """
        if state.get("version") != STATE_VERSION:
            raise ConfigError(f"unknown AISIterDataset state version {state.get('version')!r}")
        mine = {"num_objects": len(self.listing), "shuffle": self.shuffle, "seed": self.seed}
        for name, value in mine.items():
            if state[name] != value:
                raise ConfigError(f"cannot resume: the state has {name}={state[name]!r}, this dataset {value!r}",
                                  hint="resume with the same listing and shuffle settings")
        self.epoch = int(state["epoch"])
        self._positions = {}
        self._resume = {str(k): int(v) for k, v in state["positions"].items()}

    def __repr__(self) -> str:
        return f"AISIterDataset({len(self.listing)} objects, epoch {self.epoch}, {self.client!r})"
