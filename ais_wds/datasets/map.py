"""AISDataset: a map-style dataset of whole objects, ``ds[i] -> (url, bytes)``.

Lists once, in ``__init__`` (the :class:`~ais_wds.listing.Listing` is what DataLoader workers receive);
fetches through the core: one object with a direct GET, a DataLoader batch (``__getitems__``) with
parallel direct GETs (or AIS batch GETs). When the order of indices is known (``ds.sampler()``, or
sequential order) each worker also reads its next batches ahead, as pipelined batch GETs
(``ais_wds.datasets.readahead``).
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Sequence, Union

from torch.utils.data import Dataset, get_worker_info

from ..client import Client
from ..listing import Listing
from ..objects.fetch import DirectGetter
from ._common import ErrorPolicy, FetchSettings, Transform, apply, build_listing, check_indices
from .readahead import ReadAhead
from .sampler import AISSampler, OrderSpec

logger = logging.getLogger(__name__)

READ_AHEAD_THREADS = 8
"""Batch GET requests in flight for the read-ahead of one worker."""


class AISDataset(Dataset):
    """Map-style dataset over every object under some prefixes and/or aistore SDK sources.

    Args:
        client_url: AIS endpoint URL or :class:`~ais_wds.Client` (None: ``AIS_ENDPOINT``).
        urls_list: one prefix URL or a list of them, any provider (``"ais://b/train-"``, ``"s3://b/x/"``).
        ais_source_list: one aistore SDK source or a list (``sdk.bucket("b")``,
            ``bucket.objects(obj_names=[...])``). Listed after ``urls_list``.
        transform: called on each ``(url, bytes)`` sample, in the process that fetches it (a DataLoader
            worker); what it returns is the sample. Must be picklable for spawn workers.
        on_error: ``"raise"`` (default): a failed object raises (an object deleted after listing:
            :class:`~ais_wds.errors.ObjectNotFoundError` naming its URL). ``"skip"``: it is left out of
            the batch (``ds[i]`` returns None), logged, and counted in :attr:`skipped`.
        fetch: how ``__getitems__`` fetches a batch it did not read ahead: ``"get"`` (default; parallel
            direct GETs) or ``"batch"`` (AIS batch GETs, split over ``threads`` requests).
        threads: concurrent requests per ``__getitems__`` call.
        batch_size: most objects per AIS batch GET request.
        read_ahead: objects each worker fetches ahead (whole DataLoader batches, at least one) when the
            order is known; 0 turns read-ahead off.

    Raises:
        ConfigError: no source, or a bad option.
        EmptyListingError, BucketNotFoundError, ConnectError, RequestError, URLError: listing failed.

    Process safety: picklable (the listing, not connections, is pickled); each DataLoader worker opens
    its own connections. Thread safety: ``__getitem__`` / ``__getitems__`` may be called from threads
    (read-ahead helps only when batches come in sampler order).
    """

    def __init__(
        self,
        client_url: Union[Client, str, None] = None,
        urls_list: Union[str, Sequence[str], None] = None,
        ais_source_list: Any = None,
        *,
        transform: Optional[Transform] = None,
        on_error: str = "raise",
        fetch: str = "get",
        threads: int = 16,
        batch_size: int = 256,
        read_ahead: int = 2048,
    ):
        self.client = Client.of(client_url)
        self.client.load_sdk()  # forked workers inherit the SDK import
        self.listing: Listing = build_listing(self.client, urls_list, ais_source_list)
        self.transform = transform
        self._policy = ErrorPolicy(on_error)
        self._engine = FetchSettings(fetch, batch_size, threads).engine(self.client)
        self._single = DirectGetter(self.client)
        self._ahead = ReadAhead(FetchSettings("batch", batch_size, READ_AHEAD_THREADS).engine(self.client),
                                read_ahead)
        self.order_spec: Optional[OrderSpec] = None  # set by AISSampler; None: sequential order

    def sampler(self, *, shuffle: bool = False, seed: int = 0, rank: Optional[int] = None,
                world_size: Optional[int] = None, even: Optional[str] = None) -> AISSampler:
        """A sampler for ``DataLoader(ds, sampler=ds.sampler(shuffle=True), batch_size=...)`` that lets
        the workers read ahead: each rank's share of a seeded order (rank and world size detected now,
        unless given), a new order every epoch (``set_epoch(n)`` fixes one), ``even=`` for the same count
        on every rank, and a state for torchdata's ``StatefulDataLoader`` (see :class:`AISSampler`)."""
        return AISSampler(self, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, even=even)

    @classmethod
    def from_listing(cls, listing: Listing, client_url: Union[Client, str, None] = None, **options: Any
                     ) -> AISDataset:
        """A dataset over an existing listing (e.g. ``Listing.load("train.msgpack")``); no listing request."""
        return cls(client_url, ais_source_list=[listing], **options)

    def __len__(self) -> int:
        return len(self.listing)

    @property
    def urls(self) -> Sequence[str]:
        """The object URLs, in index order (a read-only sequence)."""
        return self.listing.urls

    @property
    def skipped(self) -> int:
        """Objects skipped under ``on_error="skip"``, in this process and its DataLoader workers."""
        return self._policy.skipped.value

    def __getitem__(self, index: int) -> Any:
        """``(url, bytes)`` of object ``index`` (or the transform of it; None if skipped).

        Raises:
            IndexError: out of range.
            ObjectNotFoundError, ReadError, RequestError: the object failed and ``on_error="raise"``.
            ConnectError: AIS is unreachable.
        """
        (i,) = check_indices(len(self.listing), [index])
        url = self.listing.urls[i]
        data = self._policy.check(url, self._single.get(url))
        return None if data is None else apply(self.transform, url, data)

    def __getitems__(self, indices: Sequence[int]) -> List[Any]:
        """The samples at ``indices``, fetched in parallel, in order; skipped objects are left out.

        Raises: as :meth:`__getitem__`.
        """
        idx = check_indices(len(self.listing), indices)
        items = [self.listing[i] for i in idx]
        info = get_worker_info()
        results = self._ahead.take(self.listing, self.order_spec, idx, 1 if info is None else info.num_workers)
        if results is None:
            results = self._engine.fetch_all(items)
        out = []
        for (url, _), result in zip(items, results):
            data = self._policy.check(url, result)
            if data is not None:
                out.append(apply(self.transform, url, data))
        return out

    def __repr__(self) -> str:
        return f"AISDataset({len(self)} objects, {self.client!r})"
