"""A map-style dataset over the samples inside tar shards: byte ranges read in batches (pipelined range GETs
straight to the targets, or AIS GetBatch requests).

``AISShardDataset(index_or_prefix)`` holds, per sample, only (shard number, byte offset, length) from
a shard index (:mod:`ais_wds.shard_index`): 20 bytes a sample, in arrays that pickle as bytes and are
shared copy-on-write by forked DataLoader workers. ``ds[i]`` reads the sample's byte range, which
covers all its members with their tar headers, and parses it with :mod:`ais_wds.tar.sample` into the
webdataset sample dict (``__key__``, ``__url__``, lower-cased extension -> bytes).

``ds.__getitems__(indices)`` (used by ``torch.utils.data.DataLoader`` for a whole batch) reads the
batch's byte ranges in batches (:class:`ais_wds.objects.ranges.RangeGetter`: range GETs pipelined on
keep-alive connections straight to the targets that own the shards; GetBatch requests with a range per
entry where the targets cannot be reached directly; concurrent range GETs through the gateway for the
rest). With the dataset's
own sampler (``sampler=ds.sampler(shuffle=True)``) each DataLoader worker also reads its next batches
ahead (:mod:`ais_wds.datasets.readahead`: the order is known, so a batch tells where the worker is), which
hides AIS's fixed cost per request. ``fetch="range"`` reads with range GETs instead (neighbouring samples
of one shard merged into one GET).

Thread safety: ``__getitem__`` and ``__getitems__`` may be called from several threads. Process
safety: picklable (the client is rebuilt in each process; the thread pool is not carried).
"""

from __future__ import annotations

import logging
import os
from array import array
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from torch.utils.data import Dataset

from .._core.dist import run_on_rank0_and_share
from .._core.process_local import ProcessLocal
from ..client import Client
from ..datasets.readahead import ReadAhead
from ..datasets.sampler import AISSampler, OrderSpec
from ..errors import AISWdsError, ConfigError
from ..objects.prefetch import Prefetcher
from ..objects.ranges import RangeGetter
from ..objects.reader import read_range
from ..tar.sample import parse_sample
from .index import ShardIndex, build_index, load_index, verify_index

logger = logging.getLogger(__name__)

Sample = Dict[str, Any]

READ_AHEAD_THREADS = 8
"""Batched calls in flight for the read-ahead of one worker."""
READ_AHEAD_PER_REQUEST = {"auto": 64, "getbatch": 256}
"""Ranges per call of the read-ahead, by transport (pipelined range GETs to the targets; GetBatch: AIS's
fixed cost per request spread over them)."""


def resolve_index(source: str, client: Client) -> ShardIndex:
    """Load a saved index (``*.msgpack``: an object URL or a local path), or build one for a shard prefix.

    Raises:
        ShardIndexError, EmptyListingError, NotFoundError: the index or the shards cannot be found.
    """
    if source.endswith(".msgpack"):
        return load_index(source, client)
    logger.info("building a shard index for %s (save one with `ais-wds index` to skip this)", source)
    return build_index(source, client)


class AISShardDataset(Dataset):
    """Random access to the samples of a set of tar shards.

    Args:
        source: a :class:`ShardIndex`, the URL or local path of a saved index (``*.msgpack``), or a
            shard prefix (then the index is built now with :func:`~ais_wds.shard_index.build_index`;
            save one with ``ais-wds index`` to skip that).
        client: a :class:`Client` or an endpoint; default from the environment.
        transform: applied to every sample dict before it is returned.
        threads: concurrent batched calls in :meth:`__getitems__` (or range GETs with ``fetch="range"``).
        fetch: ``"batch"`` (default): batched byte ranges (pipelined range GETs to the targets, then
            GetBatch, see :class:`~ais_wds.objects.ranges.RangeGetter`), with read-ahead; ``"getbatch"``:
            GetBatch requests only (then range GETs); ``"range"``: range GETs, neighbours merged (see
            ``coalesce_gap``).
        read_ahead: samples of its next batches each DataLoader worker reads ahead when the order is known
            (the dataset's own sampler); 0: none.
        coalesce_gap: with ``fetch="range"``, neighbouring samples of one shard whose ranges are at most
            this many bytes apart are read with one GET (the gap is read and dropped).
        max_coalesce: the largest merged range in bytes.
        verify: when ``source`` is a saved index, check that no shard changed since it was written (one
            listing of the shards: size, checksum and version; :func:`~ais_wds.shard_index.index.verify_index`),
            once per job. An index passed as a :class:`ShardIndex` is the caller's to check.

    Raises:
        ShardIndexError: the index is stale (a shard changed after it was indexed; the message names it).
        ShardIndexError, EmptyListingError, NotFoundError: the index or the shards cannot be found.
    """

    def __init__(self, source: Union[ShardIndex, str], client: Union[Client, str, None] = None, *,
                 transform: Optional[Callable[[Sample], Any]] = None, threads: int = 16, fetch: str = "batch",
                 read_ahead: int = 4096, coalesce_gap: int = 64 << 10, max_coalesce: int = 16 << 20,
                 verify: bool = True):
        if fetch not in ("batch", "getbatch", "range"):
            raise ConfigError(f"AISShardDataset fetch must be 'batch', 'getbatch' or 'range', got {fetch!r}")
        self.client = Client.of(client)
        self.client.load_sdk()  # forked workers inherit the SDK import
        index = self._resolve(source, verify)
        self.transform = transform
        self.threads = threads
        self.coalesce_gap = coalesce_gap
        self.max_coalesce = max_coalesce
        self.urls: List[str] = [s.url for s in index.shards]
        self._shard = array("I")
        self._offset = array("q")
        self._length = array("q")
        for number, shard in enumerate(index.shards):
            self._shard.extend([number] * len(shard))
            self._offset.extend(shard.offsets)
            self._length.extend(shard.lengths)
        self._pool: ProcessLocal[ThreadPoolExecutor] = ProcessLocal(self._new_pool)
        self.fetch = fetch
        transport = "getbatch" if fetch == "getbatch" else "auto"
        self._engine = Prefetcher(RangeGetter(self.client, transport=transport), threads=max(1, threads),
                                  batch_size=64)
        ahead = RangeGetter(self.client, transport=transport)
        self._ahead = ReadAhead(Prefetcher(ahead, threads=READ_AHEAD_THREADS,
                                           batch_size=READ_AHEAD_PER_REQUEST[transport]), read_ahead)
        self.order_spec: Optional[OrderSpec] = None  # set by AISSampler; None: sequential order
        self._first_pid = 0

    def _resolve(self, source: Union[ShardIndex, str], verify: bool) -> ShardIndex:
        """The index, loaded (or built) and verified once per job: on rank 0, shared over torch.distributed."""
        def load() -> ShardIndex:
            index = source if isinstance(source, ShardIndex) else resolve_index(str(source), self.client)
            if verify and not isinstance(source, ShardIndex) and str(source).endswith(".msgpack"):
                verify_index(index, self.client, origin=str(source))
            return index

        return run_on_rank0_and_share(load)

    def sampler(self, *, shuffle: bool = False, seed: int = 0, rank: Optional[int] = None,
                world_size: Optional[int] = None, even: Optional[str] = None) -> AISSampler:
        """``DataLoader(ds, sampler=ds.sampler(shuffle=True), ...)``: this rank's share of a seeded order,
        a new order every epoch, ``even=`` for the same count on every rank, and a state for torchdata's
        ``StatefulDataLoader`` (exact and elastic resume; see :class:`~ais_wds.AISSampler`)."""
        return AISSampler(self, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, even=even)

    def __len__(self) -> int:
        return len(self._offset)

    def locate(self, i: int) -> Tuple[str, int, int]:
        """``(shard url, offset, length)`` of sample ``i``. Raises: IndexError."""
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"sample index {i} out of range for {len(self)} samples")
        return self.urls[self._shard[i]], self._offset[i], self._length[i]

    def __getitem__(self, i: int) -> Any:
        """The sample dict of sample ``i`` (after ``transform``), read with one range GET.

        Raises:
            IndexError: out of range. ReadError / NotFoundError: from AIS. ShardIndexError: stale index.
        """
        url, offset, length = self.locate(i)
        sample = parse_sample(read_range(url, offset, offset + length, self.client), url)
        return self.transform(sample) if self.transform else sample

    def __getitems__(self, indices: Sequence[int]) -> List[Any]:
        """The samples at ``indices``, in that order: their byte ranges in batches (read ahead when the
        order is known), or range GETs with ``fetch="range"``.

        Raises:
            IndexError: out of range. ReadError / NotFoundError: from AIS. ShardIndexError: stale index.
        """
        if self.fetch == "range":
            return self._getitems_by_range(indices)
        items = _Ranges(self)
        located = [items[i] for i in indices]
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        stride = 1 if info is None else info.num_workers
        results: Optional[List[Any]] = None
        if self._first_pid != os.getpid():
            # a process's first batch: one batched call in this thread before the read-ahead starts its threads
            # (a thread start costs ~10 ms on a busy machine; this batch is never in the read-ahead anyway)
            self._first_pid = os.getpid()
            results = self._engine.getter.fetch([key for key, _ in located])  # type: ignore[misc]
        ahead = self._ahead.take(items, self.order_spec, list(indices), stride)
        if results is None:
            results = ahead if ahead is not None else self._engine.fetch_all(located)  # type: ignore[arg-type]
        out: List[Any] = []
        for ((url, _, _), _), result in zip(located, results):
            if isinstance(result, AISWdsError):
                raise result
            sample = parse_sample(result, url)
            out.append(self.transform(sample) if self.transform else sample)
        return out

    def _getitems_by_range(self, indices: Sequence[int]) -> List[Any]:
        """Range GETs, concurrently, neighbours merged."""
        located = [self.locate(i) for i in indices]
        runs = self._runs(located)
        pool = self._threads()
        datas = list(pool.map(lambda run: read_range(run[0], run[1], run[2], self.client), runs))
        out: List[Any] = [None] * len(located)
        for (url, start, _, members), data in zip(runs, datas):
            for slot, offset, length in members:
                sample = parse_sample(data[offset - start: offset - start + length], url)
                out[slot] = self.transform(sample) if self.transform else sample
        return out

    def _runs(self, located: List[Tuple[str, int, int]]) -> List[Tuple[str, int, int, List[Tuple[int, int, int]]]]:
        """Merge ranges into ``(url, start, end, [(slot, offset, length)...])`` runs."""
        order = sorted(range(len(located)), key=lambda k: (located[k][0], located[k][1]))
        runs: List[Tuple[str, int, int, List[Tuple[int, int, int]]]] = []
        for k in order:
            url, offset, length = located[k]
            if runs:
                r_url, r_start, r_end, members = runs[-1]
                if (url == r_url and offset - r_end <= self.coalesce_gap
                        and max(r_end, offset + length) - r_start <= self.max_coalesce):
                    runs[-1] = (r_url, r_start, max(r_end, offset + length), members)
                    members.append((k, offset, length))
                    continue
            runs.append((url, offset, offset + length, [(k, offset, length)]))
        return runs

    def _threads(self) -> ThreadPoolExecutor:
        """This process's thread pool."""
        return self._pool.get()

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max(1, self.threads), thread_name_prefix="ais-shard-ds")

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        del state["_pool"]
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pool = ProcessLocal(self._new_pool)


class _Ranges:
    """The dataset's samples as the read-ahead sees them: ``[i]`` is ``((url, offset, length), length)``."""

    __slots__ = ("_ds",)

    def __init__(self, ds: AISShardDataset):
        self._ds = ds

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, i: int) -> Tuple[Tuple[str, int, int], int]:
        url, offset, length = self._ds.locate(i)
        return (url, offset, length), length
