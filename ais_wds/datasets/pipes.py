"""AISFileLister and AISFileLoader: the list -> load pipes of AIStore's earlier torchdata plugin, without torchdata.

    urls = AISFileLister(endpoint, ["ais://bucket/train/", "s3://other/val/"])  # object URLs
    for url, stream in AISFileLoader(endpoint, urls):                         # (url, file-like)
        data = stream.read()

Each is a torch ``IterableDataset`` (so a DataLoader takes it) and a callable pipeline stage (so
webdataset takes it: ``wds.DataPipeline(..., AISFileLoader(endpoint), ...)``): called with an iterator
it returns an iterator, without splitting. Iterated directly (``iter(pipe)``) over its own source, the
loader hands each DDP rank and DataLoader worker its own share (every URL exactly once) unless
``split=False``. A lister given a list of prefixes lists them once, when it is made (in the main
process); given a lazy iterator it lists each prefix as it arrives.

Over a concrete source (a lister of a list of prefixes, a list of URLs, a Listing) each pass is an
epoch of ``ais_wds.epochs.plan``, as for the other front ends: contiguous, balanced shares of the
source order per rank then worker, ``even=`` for equal counts per rank, epochs that advance by
themselves, ``len()``, and ``state_dict()`` / ``load_state_dict()`` for exact resume through torchdata's
``StatefulDataLoader`` (and at another world size or worker count from ``ais_wds.job_state``). A lazy
source is split by striding and cannot resume.
"""

from __future__ import annotations

import io
import logging
from itertools import islice
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from torch.utils.data import IterableDataset

from .._core.dist import run_on_rank0_and_share
from ..client import Client
from ..epochs.plan import Epochs, check_even, rank_length
from ..errors import ConfigError
from ..listing import Listing, list_objects
from ..objects.reader import DEFAULT_BUFSIZE, open_object
from ..partition import rank_world, worker_part
from ._common import as_list

logger = logging.getLogger(__name__)


def _is_concrete(source: Any) -> bool:
    return isinstance(source, (str, list, tuple))


def _url_of(item: Any) -> str:
    """A URL from a pipeline item: a string, a webdataset-style dict with ``"url"``, or a ``(url, ...)`` tuple."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return item["url"]
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], str):
        return item[0]
    raise TypeError(f"expected a URL string, a dict with 'url' or a (url, ...) tuple, got {type(item).__name__}")


def _my_share(items: Iterable[Any], rank: int, world_size: int) -> Iterable[Any]:
    """This DDP rank's and DataLoader worker's share of ``items`` (strided; every item exactly once)."""
    part = worker_part(rank, world_size)
    return items if part.count == 1 else islice(items, part.index, None, part.count)


class _Pipe(IterableDataset):
    """What both pipes share: the rank taken at construction, and over a concrete source (a sequence
    of items known now) one epoch plan per pass, with its state. Subclasses give :meth:`_items`."""

    def __init__(self, what: str, rank: Optional[int], world_size: Optional[int], split: bool,
                 even: Optional[str]):
        check_even(even)
        self.rank, self.world_size = rank_world(rank, world_size)
        self.split = split
        self.even = even
        self.what = what
        self.epochs = Epochs(self.rank, self.world_size, even, what) if split else \
            Epochs(0, 1, even, what, worker=(0, 1))

    def _items(self) -> Optional[Sequence[Any]]:
        """Every item of the source, when it is concrete; None for a lazy source."""
        raise NotImplementedError

    def _check_even(self, source: Any) -> None:
        if self.even is not None and source is not None:
            self._concrete(f"give every rank the same count (even={self.even!r})")

    def _identity(self, items: Sequence[Any]) -> Dict[str, Any]:
        return {"dataset": self.what, "num_objects": len(items)}

    def _planned(self, items: Sequence[Any]) -> Iterator[Any]:
        """This pass's items: the next epoch's part of this rank and worker, or a loaded state's rest."""
        plan = self.epochs.begin(len(items), self._identity(items))
        return (items[slot] for slot in plan.walk())

    def _concrete(self, doing: str) -> Sequence[Any]:
        items = self._items()
        if items is None:
            raise ConfigError(f"{self.what} over a lazy source cannot {doing}",
                              hint="give a list of prefixes or URLs, a Listing, or an AISFileLister of a list")
        return items

    @property
    def epoch(self) -> int:
        """The epoch in progress in this process, else the next one."""
        return self.epochs.epoch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` at the next iteration (optional: epochs advance by themselves)."""
        self.epochs.set_epoch(int(epoch))

    def __len__(self) -> int:
        """Items this rank yields in a whole epoch, over all its DataLoader workers.

        Raises:
            TypeError: the source is lazy (unknown length; ``list()`` and DataLoader then do without).
        """
        items = self._items()
        if items is None:
            raise TypeError(f"{self.what} over a lazy source has no len(): give a list, a Listing or an "
                            "AISFileLister of a list")
        return rank_length(len(items), self.epochs.world_size, self.epochs.rank, self.even)

    def state_dict(self) -> Dict[str, Any]:
        """Where this process's pass stands: epoch, part and items handed out (small plain data). Over a
        lazy source: a state that :meth:`load_state_dict` refuses (so a ``StatefulDataLoader`` still runs)."""
        items = self._items()
        if items is None:
            return {"dataset": self.what, "resumable": False}
        return self.epochs.state(len(items), self._identity(items))

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume at the next iteration from a part state (same rank and worker) or a job state
        (``ais_wds.job_state``: any world size and worker count).

        Raises:
            ConfigError: the source is lazy, or the state is for another source length or part.
        """
        self.epochs.load(state, self._identity(self._concrete("resume")))


class AISFileLister(_Pipe):
    """Yields the URL of every object under each prefix URL of ``source_datapipe``, prefix by prefix.

    Args:
        url: AIS endpoint URL or :class:`~ais_wds.Client` (None: ``AIS_ENDPOINT``).
        source_datapipe: prefix URLs (braces expanded): one string, a list, or any iterable; None when
            the lister is used as a stage (``lister(prefixes)``).
        allow_empty: when False, a prefix that matches nothing raises
            :class:`~ais_wds.errors.EmptyListingError`.
        split: when iterated directly (``iter(lister)``, e.g. as a DataLoader's dataset), yield only this
            rank's and worker's share. An :class:`AISFileLoader` reading from this lister takes all its
            URLs and splits them itself.
        rank: this rank; default: detected now, in the building process.
        world_size: the number of ranks; default: detected now with ``rank``.
        even: None, ``"drop"`` or ``"repeat"``: the same count on every rank (a concrete source only:
            else ConfigError).

    A concrete source is listed once per job, now (on rank 0, shared over torch.distributed); ``len()``
    and ``state_dict()`` / ``load_state_dict()`` (exact and elastic resume) need one. Process safety:
    picklable (a concrete source is pickled as its listing).
    """

    def __init__(self, url: Union[Client, str, None] = None, source_datapipe: Optional[Iterable[Any]] = None, *,
                 allow_empty: bool = False, split: bool = True, rank: Optional[int] = None,
                 world_size: Optional[int] = None, even: Optional[str] = None):
        super().__init__("AISFileLister", rank, world_size, split, even)
        self.client = Client.of(url)
        self.client.load_sdk()  # forked workers inherit the SDK import
        self.allow_empty = allow_empty
        self.source_datapipe = source_datapipe
        self.listing: Optional[Listing] = None
        if _is_concrete(source_datapipe):
            prefixes = as_list(source_datapipe)
            self.listing = run_on_rank0_and_share(lambda: self._list(prefixes))
        self._check_even(source_datapipe)

    def _list(self, prefixes: List[str]) -> Listing:
        return list_objects(prefixes, self.client, allow_empty=self.allow_empty)

    def _items(self) -> Optional[Sequence[str]]:
        return self.listing.urls if self.listing is not None else None

    def all_urls(self) -> Iterator[str]:
        """Every URL of the source's prefixes, whatever the rank or worker."""
        if self.listing is not None:
            return iter(self.listing.urls)
        if self.source_datapipe is None:
            raise TypeError("AISFileLister has no source: pass source_datapipe, or call it on an iterator of prefixes")
        return self(self.source_datapipe)

    def __iter__(self) -> Iterator[str]:
        if self.listing is not None:
            return self._planned(self.listing.urls)
        urls = self.all_urls()
        return iter(_my_share(urls, self.rank, self.world_size)) if self.split else urls

    def __call__(self, prefixes: Iterable[Any]) -> Iterator[str]:
        """The stage form: list each prefix of ``prefixes`` as it arrives (a plain string is one prefix)."""
        for prefix in [prefixes] if isinstance(prefixes, str) else prefixes:
            yield from self._list([_url_of(prefix)]).urls


class AISFileLoader(_Pipe):
    """Yields ``(url, stream)`` for each object URL of ``source_datapipe``; the stream is the reader core's
    buffered, resuming reader (:func:`~ais_wds.open_object`), opened lazily (no request before the first read).

    Args:
        url: AIS endpoint URL or :class:`~ais_wds.Client` (None: ``AIS_ENDPOINT``).
        source_datapipe: object URLs (not prefixes): a list, an :class:`AISFileLister`, a
            :class:`~ais_wds.Listing`, or any iterable of URLs (or of dicts with ``"url"``); None when the
            loader is used as a stage (``loader(urls)``).
        bufsize: read buffer per stream.
        split: when iterated over its own source, take only this rank's and DataLoader worker's share
            (a contiguous share of the source order; strided over a lazy source). Stage calls never split.
        rank: this rank; default: detected now, in the building process.
        world_size: the number of ranks; default: detected now with ``rank``.
        even: None, ``"drop"`` or ``"repeat"``: the same count on every rank (a concrete source only:
            else ConfigError).

    The consumer should close each stream (a dropped stream is closed by the garbage collector). A
    missing object raises :class:`~ais_wds.errors.ObjectNotFoundError` at the stream's first read.
    ``len()`` and ``state_dict()`` / ``load_state_dict()`` (exact and elastic resume) need a concrete
    source: a list, a :class:`~ais_wds.Listing` or an :class:`AISFileLister` of a list of prefixes. A
    stream counts as consumed when it is handed out. Process safety: picklable.
    """

    def __init__(self, url: Union[Client, str, None] = None, source_datapipe: Optional[Iterable[Any]] = None, *,
                 bufsize: int = DEFAULT_BUFSIZE, split: bool = True, rank: Optional[int] = None,
                 world_size: Optional[int] = None, even: Optional[str] = None):
        super().__init__("AISFileLoader", rank, world_size, split, even)
        self.client = Client.of(url)
        self.client.load_sdk()  # forked workers inherit the SDK import
        self.source_datapipe = source_datapipe
        self.bufsize = bufsize
        self._check_even(source_datapipe)

    def _items(self) -> Optional[Sequence[Any]]:
        source = self.source_datapipe
        if isinstance(source, AISFileLister):
            return source._items()
        if isinstance(source, Listing):
            return source.urls
        if isinstance(source, str):
            return [source]
        return source if isinstance(source, (list, tuple)) else None

    def __iter__(self) -> Iterator[Tuple[str, io.BufferedReader]]:
        source = self.source_datapipe
        if source is None:
            raise TypeError("AISFileLoader has no source: pass source_datapipe, or call it on an iterator of URLs")
        items = self._items()
        if items is not None:
            return self(self._planned(items))
        urls: Iterable[Any] = source.all_urls() if isinstance(source, AISFileLister) else source
        return self(_my_share(urls, self.rank, self.world_size) if self.split else urls)

    def __call__(self, urls: Iterable[Any]) -> Iterator[Tuple[str, io.BufferedReader]]:
        """The stage form: ``(url, stream)`` for each URL of ``urls``, in order."""
        for item in urls:
            url = _url_of(item)
            yield url, open_object(url, self.client, bufsize=self.bufsize)


AISFileListerIterDataPipe = AISFileLister
AISFileLoaderIterDataPipe = AISFileLoader
