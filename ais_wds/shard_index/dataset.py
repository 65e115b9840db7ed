"""A map-style dataset over the samples inside tar shards: one range GET per sample, no local cache.

``AISShardDataset(index_or_prefix)`` holds, per sample, only (shard number, byte offset, length) from
a shard index (:mod:`ais_wds.shard_index`): 20 bytes a sample, in arrays that pickle as bytes and are
shared copy-on-write by forked DataLoader workers. ``ds[i]`` reads the sample's byte range, which
covers all its members with their tar headers, and parses it with :mod:`ais_wds.tar.reader` into the
webdataset sample dict (``__key__``, ``__url__``, lower-cased extension -> bytes).

``ds.__getitems__(indices)`` (used by ``torch.utils.data.DataLoader`` for a whole batch) reads the
batch's ranges concurrently and merges ranges of neighbouring samples of one shard into one GET.

Thread safety: ``__getitem__`` and ``__getitems__`` may be called from several threads. Process
safety: picklable (the client is rebuilt in each process; the thread pool is not carried).
"""

from __future__ import annotations

import io
import logging
from array import array
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from torch.utils.data import Dataset

from .._core.dist import run_on_rank0_and_share
from .._core.process_local import ProcessLocal
from ..client import Client
from ..datasets.sampler import AISSampler
from ..objects.reader import read_range
from ..tar.reader import group_by_keys, iter_members
from .index import ShardIndex, ShardIndexError, build_index, load_index

logger = logging.getLogger(__name__)

Sample = Dict[str, Any]


def resolve_index(source: str, client: Client) -> ShardIndex:
    """Load a saved index (``*.msgpack``: an object URL or a local path), or build one for a shard prefix.

    Raises:
        ShardIndexError, EmptyListingError, NotFoundError: the index or the shards cannot be found.
    """
    if source.endswith(".msgpack"):
        return load_index(source, client)
    logger.info("building a shard index for %s (save one with `ais-wds index` to skip this)", source)
    return build_index(source, client)


def parse_sample(data: Union[bytes, bytearray, memoryview], url: str) -> Sample:
    """The one webdataset sample in the tar fragment ``data`` (from shard ``url``).

    Raises:
        ShardIndexError: the bytes hold no sample or several (the index does not match the shard).
        TarFormatError: the bytes are not tar headers and members.
    """
    samples = list(group_by_keys(iter_members(io.BytesIO(data), bufsize=min(max(len(data), 512), 1 << 20), url=url),
                                 url=url))
    if len(samples) != 1:
        raise ShardIndexError(f"the indexed byte range holds {len(samples)} samples instead of one", url=url,
                              hint="the index is stale: rebuild it with `ais-wds index`")
    return samples[0]


class AISShardDataset(Dataset):
    """Random access to the samples of a set of tar shards.

    Args:
        source: a :class:`ShardIndex`, the URL or local path of a saved index (``*.msgpack``), or a
            shard prefix (then the index is built now with :func:`~ais_wds.shard_index.build_index`;
            save one with ``ais-wds index`` to skip that).
        client: a :class:`Client` or an endpoint; default from the environment.
        transform: applied to every sample dict before it is returned.
        threads: concurrent range GETs in :meth:`__getitems__`.
        coalesce_gap: neighbouring samples of one shard whose ranges are at most this many bytes apart
            are read with one GET in :meth:`__getitems__` (the gap is read and dropped).
        max_coalesce: the largest merged range in bytes.

    Raises:
        ShardIndexError, EmptyListingError, NotFoundError: the index or the shards cannot be found.
    """

    def __init__(self, source: Union[ShardIndex, str], client: Union[Client, str, None] = None, *,
                 transform: Optional[Callable[[Sample], Any]] = None, threads: int = 16,
                 coalesce_gap: int = 64 << 10, max_coalesce: int = 16 << 20):
        self.client = Client.of(client)
        self.client.load_sdk()  # forked workers inherit the SDK import
        index = self._resolve(source)
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

    def _resolve(self, source: Union[ShardIndex, str]) -> ShardIndex:
        """The index, loaded (or built) once per job: on rank 0, shared over torch.distributed."""
        if isinstance(source, ShardIndex):
            return source
        return run_on_rank0_and_share(lambda: resolve_index(str(source), self.client))

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
        """The samples at ``indices``, in that order: ranges read concurrently, neighbours merged."""
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
