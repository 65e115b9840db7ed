"""What the object-level datasets share: sources -> one Listing, fetch settings, on_error, transform.

Private to ``ais_wds.datasets.map``, ``ais_wds.datasets.iterable`` and ``ais_wds.datasets.pipes``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from dataclasses import dataclass
from multiprocessing.context import get_spawning_popen
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .._core.dist import run_on_rank0_and_share
from ..client import Client
from ..errors import AISWdsError, ConfigError, NotFoundError, ReadError, RequestError
from ..listing import Listing, list_objects
from ..objects.fetch import BatchGetter, DirectGetter, Getter, Result
from ..objects.prefetch import Prefetcher
from ..tar.reader import iter_members

logger = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")
SKIPPABLE = (NotFoundError, ReadError, RequestError)
"""Per-object failures ``on_error="skip"`` passes over. Anything else (ConnectError: the cluster is
unreachable; URLError, ConfigError: a bug) is raised whatever ``on_error`` says."""

Sample = Tuple[str, bytes]
Transform = Callable[[Sample], Any]
FETCH_METHODS = ("get", "batch")


def as_list(value: Any) -> List[Any]:
    """``None`` -> [], a list/tuple -> list, anything else -> [value]."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def build_listing(client: Client, urls_list: Any, ais_source_list: Any) -> Listing:
    """List ``urls_list`` (prefix URLs) then ``ais_source_list`` (SDK sources) once per job, in that order:
    on rank 0, shared with every rank over torch.distributed when a process group is initialised
    (every rank must build its dataset, as DDP code does). Listings given as sources are not listed.

    Raises:
        ConfigError: neither was given.
        EmptyListingError, BucketNotFoundError, ConnectError, RequestError, URLError: from the listing core.
    """
    sources = as_list(urls_list) + as_list(ais_source_list)
    if not sources:
        raise ConfigError("give urls_list (prefix URLs such as 'ais://bucket/train/') and/or ais_source_list "
                          "(aistore SDK buckets or object groups)")
    if all(isinstance(s, Listing) for s in sources):
        return list_objects(sources, client)
    return run_on_rank0_and_share(lambda: list_objects(sources, client))


@dataclass(frozen=True)
class FetchSettings:
    """How objects are fetched (see ``ais_wds.objects.fetch`` and ``ais_wds.objects.prefetch``).

    Attributes:
        method: ``"batch"`` (AIS batch GET, several objects per request) or ``"get"`` (one direct GET each).
        batch_size: objects per batch request.
        threads: requests in flight at once.
        max_bytes: listed bytes in flight at once.
    """

    method: str = "batch"
    batch_size: int = 256
    threads: int = 4
    max_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        if self.method not in FETCH_METHODS:
            raise ConfigError(f"fetch must be one of {FETCH_METHODS}, got {self.method!r}")

    def engine(self, client: Client) -> Prefetcher:
        batch = self.batch_size if self.method == "batch" else 1
        return Prefetcher(make_getter(client, self.method), threads=self.threads,
                          batch_size=batch, max_bytes=self.max_bytes)


def make_getter(client: Client, method: str = "batch") -> Getter:
    """The getter for ``method``: ``"get"`` (:class:`DirectGetter`) or ``"batch"`` (:class:`BatchGetter`,
    splitting replies with :func:`ais_wds.tar.iter_members`).

    Raises:
        ConfigError: an unknown method.
    """
    if method == "get":
        return DirectGetter(client)
    if method == "batch":
        return BatchGetter(client, members=iter_members, single=DirectGetter(client))
    raise ConfigError(f"fetch method must be one of {FETCH_METHODS}, got {method!r}")


class SkipCounter:
    """How many objects ``on_error="skip"`` passed over, summed over this process and its DataLoader workers.

    Workers write their own slot of a small shared array (inherited under fork, passed at spawn),
    so the main process reads the total. Pickled outside process start-up (e.g. to a file), the
    counter becomes a private one of the copy.
    """

    SLOTS = 64

    def __init__(self) -> None:
        self._slots: Any = multiprocessing.RawArray("q", self.SLOTS)

    def __getstate__(self) -> dict:
        if get_spawning_popen() is not None:
            return {"slots": self._slots}
        return {"slots": None, "value": self.value}

    def __setstate__(self, state: dict) -> None:
        self._slots = state["slots"]
        if self._slots is None:
            self._slots = multiprocessing.RawArray("q", self.SLOTS)
            self._slots[0] = state["value"]

    def add(self, slot: int) -> int:
        """Count one skip for worker ``slot``; returns the new total."""
        self._slots[slot % self.SLOTS] += 1
        return self.value

    @property
    def value(self) -> int:
        return sum(self._slots)


def worker_slot() -> int:
    """1 + the DataLoader worker id, or 0 outside workers (the slot of :class:`SkipCounter` to write)."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return 0 if info is None else 1 + info.id


class ErrorPolicy:
    """Applies ``on_error`` to one fetched result.

    Args:
        on_error: ``"raise"`` or ``"skip"``.

    Raises:
        ConfigError: another value.
    """

    def __init__(self, on_error: str):
        if on_error not in ON_ERROR:
            raise ConfigError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error = on_error
        self.skipped = SkipCounter()

    def check(self, url: str, result: Result) -> Optional[bytes]:
        """The bytes, or None when the object is skipped.

        Raises:
            AISWdsError: ``result`` is an error and ``on_error="raise"``, or it is not skippable.
        """
        if not isinstance(result, AISWdsError):
            return result
        if self.on_error == "skip" and isinstance(result, SKIPPABLE):
            total = self.skipped.add(worker_slot())
            logger.warning("skipping %s (%s); %d skipped so far in pid %d", url, result, total, os.getpid())
            return None
        raise result


def apply(transform: Optional[Transform], url: str, data: bytes) -> Any:
    """``(url, data)``, or what ``transform`` makes of it."""
    return (url, data) if transform is None else transform((url, data))


def check_indices(n: int, indices: Sequence[int]) -> List[int]:
    """Indices normalised to ``0..n-1`` (negative ones count from the end).

    Raises:
        IndexError: an index out of range.
    """
    out = []
    for i in indices:
        j = int(i)
        if j < 0:
            j += n
        if not 0 <= j < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} objects")
        out.append(j)
    return out
