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
"""

from __future__ import annotations

import io
import logging
from itertools import islice
from typing import Any, Iterable, Iterator, List, Optional, Tuple, Union

from torch.utils.data import IterableDataset

from .._core.dist import run_on_rank0_and_share
from ..client import Client
from ..listing import list_objects
from ..partition import rank_world, worker_part
from ..reader import DEFAULT_BUFSIZE, open_object
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


class AISFileLister(IterableDataset):
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
        rank, world_size: this rank; default: detected now, in the building process.

    A concrete source is listed once per job, now (on rank 0, shared over torch.distributed). No
    ``len()``. Process safety: picklable (a concrete source is pickled as its listing).
    """

    def __init__(self, url: Union[Client, str, None] = None, source_datapipe: Optional[Iterable[Any]] = None, *,
                 allow_empty: bool = False, split: bool = True, rank: Optional[int] = None,
                 world_size: Optional[int] = None):
        self.rank, self.world_size = rank_world(rank, world_size)
        self.client = Client.of(url)
        self.client.load_sdk()  # forked workers inherit the SDK import
        self.allow_empty = allow_empty
        self.split = split
        self.source_datapipe = source_datapipe
        self._urls: Optional[List[str]] = None
        if _is_concrete(source_datapipe):
            prefixes = as_list(source_datapipe)
            self._urls = list(run_on_rank0_and_share(lambda: self._list(prefixes)).urls)

    def _list(self, prefixes: List[str]) -> Any:
        return list_objects(prefixes, self.client, allow_empty=self.allow_empty)

    def all_urls(self) -> Iterator[str]:
        """Every URL of the source's prefixes, whatever the rank or worker."""
        if self._urls is not None:
            return iter(self._urls)
        if self.source_datapipe is None:
            raise TypeError("AISFileLister has no source: pass source_datapipe, or call it on an iterator of prefixes")
        return self(self.source_datapipe)

    def __iter__(self) -> Iterator[str]:
        urls = self.all_urls()
        return iter(_my_share(urls, self.rank, self.world_size)) if self.split else urls

    def __call__(self, prefixes: Iterable[Any]) -> Iterator[str]:
        """The stage form: list each prefix of ``prefixes`` as it arrives (a plain string is one prefix)."""
        for prefix in [prefixes] if isinstance(prefixes, str) else prefixes:
            yield from self._list([_url_of(prefix)]).urls


class AISFileLoader(IterableDataset):
    """Yields ``(url, stream)`` for each object URL of ``source_datapipe``; the stream is the reader core's
    buffered, resuming reader (:func:`~ais_wds.open_object`), opened lazily (no request before the first read).

    Args:
        url: AIS endpoint URL or :class:`~ais_wds.Client` (None: ``AIS_ENDPOINT``).
        source_datapipe: object URLs (not prefixes): a list, an :class:`AISFileLister`, a
            :class:`~ais_wds.Listing`, or any iterable of URLs (or of dicts with ``"url"``); None when the
            loader is used as a stage (``loader(urls)``).
        bufsize: read buffer per stream.
        split: when iterated over its own source, take only this rank's and DataLoader worker's share
            (strided over the source order). Stage calls never split.
        rank, world_size: this rank; default: detected now, in the building process.

    The consumer should close each stream (a dropped stream is closed by the garbage collector). A
    missing object raises :class:`~ais_wds.errors.ObjectNotFoundError` at the stream's first read.
    No ``len()``. Process safety: picklable.
    """

    def __init__(self, url: Union[Client, str, None] = None, source_datapipe: Optional[Iterable[Any]] = None, *,
                 bufsize: int = DEFAULT_BUFSIZE, split: bool = True, rank: Optional[int] = None,
                 world_size: Optional[int] = None):
        self.rank, self.world_size = rank_world(rank, world_size)
        self.client = Client.of(url)
        self.client.load_sdk()  # forked workers inherit the SDK import
        self.source_datapipe = source_datapipe
        self.bufsize = bufsize
        self.split = split

    def __iter__(self) -> Iterator[Tuple[str, io.BufferedReader]]:
        source = self.source_datapipe
        if source is None:
            raise TypeError("AISFileLoader has no source: pass source_datapipe, or call it on an iterator of URLs")
        urls: Iterable[Any] = source.all_urls() if isinstance(source, AISFileLister) else \
            [source] if isinstance(source, str) else source
        return self(_my_share(urls, self.rank, self.world_size) if self.split else urls)

    def __call__(self, urls: Iterable[Any]) -> Iterator[Tuple[str, io.BufferedReader]]:
        """The stage form: ``(url, stream)`` for each URL of ``urls``, in order."""
        for item in urls:
            url = _url_of(item)
            yield url, open_object(url, self.client, bufsize=self.bufsize)


AISFileListerIterDataPipe = AISFileLister
AISFileLoaderIterDataPipe = AISFileLoader
