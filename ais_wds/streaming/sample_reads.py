"""Samples named by reference (shard, sample number), read back from AIS: what a shuffle needs to refill
its buffer on resume and to serve a global sample shuffle.

* :func:`read_in_order` / :func:`read_indexed`: with a shard index, each sample's own byte range. Many
  ranges go out at once: through the objects layer's batched byte-range read (:func:`batched_reader`:
  range GETs pipelined straight to the targets, GetBatch with ``start``/``length`` per entry where the
  targets cannot be reached, range GETs where both fail, said at DEBUG) when the objects layer offers
  it, else as concurrent range GETs (``ais_wds.read_range``; a DEBUG line says so once per process).
* :func:`reread`: without an index, the shards that hold the samples are read again from their start
  (concurrently, one thread per shard, up to ``threads``) and the samples picked by number.

Both return raw samples (webdataset dicts from the tar stage), in the order of the references.

Thread safety: the functions may run in any thread; they use their own thread pools.
"""

from __future__ import annotations

import collections
import importlib
import io
import itertools
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..client import Client
from ..errors import ReadError, ShardIndexError
from ..objects.reader import open_object, read_range
from ..shuffle.refs import unpack_ref
from ..tar.sample import plain_sample
from .stages import tar_samples

logger = logging.getLogger(__name__)

RANGE_THREADS = 32
"""Range GETs in flight per reader when the objects layer has no batched byte-range read."""
PER_REQUEST: Optional[int] = None
"""Ranges per batched call; None: the objects layer's choice for its transport (up to 64 ranges and 1 MiB
per call of pipelined range GETs to the targets, 256 per GetBatch request)."""
WINDOW: Optional[int] = None
"""Batched calls in flight; None: the objects layer's choice (32 pipelined calls, 8 GetBatch requests;
measured figures in ``ais_wds.objects.ranges.WINDOW``)."""
TRANSPORT = "auto"
"""The objects layer's transport (``ais_wds.objects.ranges.RangeGetter``): ``"auto"`` (pipelined range GETs
to the targets, then GetBatch, then range GETs), ``"getbatch"`` or ``"range"`` (the benchmark compares them)."""

Range = Tuple[str, int, int]
"""``(url, start, length)``: ``length`` bytes of one object from ``start``."""

_said_fallback = [False]


def batched_reader() -> Optional[Callable[..., Iterator[bytes]]]:
    """The objects layer's batched byte-range read (``ais_wds.objects.ranges.read_ranges``: pipelined range
    GETs to the targets, GetBatch, range GETs; many calls in flight), when this ais_wds has it."""
    try:
        module = importlib.import_module("ais_wds.objects.ranges")
    except ImportError:
        return None
    fn = getattr(module, "read_ranges", None)
    return fn if callable(fn) else None


def read_in_order(client: Client, ranges: Iterable[Range]) -> Iterator[bytes]:
    """The bytes of every range, in order, with read-ahead: batched calls when the objects layer has them
    (:func:`batched_reader`), else concurrent range GETs (said once per process at DEBUG).

    Raises:
        AISWdsError (ReadError, NotFoundError, ...): a range could not be read.
    """
    reader = batched_reader()
    if reader is not None:
        return iter(reader(client, ranges, per_request=PER_REQUEST, window=WINDOW, transport=TRANSPORT))
    if not _said_fallback[0]:
        _said_fallback[0] = True
        logger.debug("no batched byte-range read (GetBatch) in this ais_wds: samples are read by concurrent "
                     "range GETs")
    return _range_gets(client, ranges)


def _range_gets(client: Client, ranges: Iterable[Range]) -> Iterator[bytes]:
    pool = ThreadPoolExecutor(RANGE_THREADS, thread_name_prefix="ais_wds-ranges")
    inflight: Deque[Future] = collections.deque()
    try:
        for url, start, length in ranges:
            inflight.append(pool.submit(read_range, url, start, start + length, client))
            if len(inflight) >= RANGE_THREADS * 8:
                yield bytes(inflight.popleft().result())
        while inflight:
            yield bytes(inflight.popleft().result())
    finally:
        for fut in inflight:
            fut.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def sample_of(url: str, data: bytes, **tar_kw: Any) -> Dict[str, Any]:
    """The one sample in ``data`` (a sample's tar members, as its byte range holds them): the dict the tar
    stage makes. Plain fragments are split by the tar layer (:func:`ais_wds.tar.sample.plain_sample`, a few
    microseconds a member); anything else, and any ``select_files`` / ``rename_files``, goes through the tar
    stage itself with ``tar_kw`` (its ``handler`` included; about 100 us a sample).

    Raises:
        ShardIndexError: the bytes hold no sample or several (the shard changed since it was indexed).
        TarFormatError: the bytes are not tar headers and members (as the ``handler`` decides).
    """
    if tar_kw.get("select_files") is None and tar_kw.get("rename_files") is None:
        fast = plain_sample(data, url)
        if fast is not None:
            return fast
    samples = list(itertools.islice(tar_samples(({"url": url, "stream": io.BytesIO(data)},), **tar_kw), 2))
    if len(samples) != 1:
        raise ShardIndexError(f"a sample's byte range holds {len(samples)} samples instead of one", url=url,
                              hint="the shard changed since it was indexed: index it again (`ais-wds index`)")
    return samples[0]


def read_indexed(client: Client, byte_range: Callable[[int, int], Range], refs: Sequence[int],
                 **tar_kw: Any) -> List[Dict[str, Any]]:
    """The samples ``refs`` (packed references) by their byte ranges (``byte_range(shard, sample)``)."""
    if not refs:
        return []
    ranges = [byte_range(*unpack_ref(r)) for r in refs]
    datas = list(read_in_order(client, ranges))
    return [sample_of(rng[0], data, **tar_kw) for rng, data in zip(ranges, datas)]


def reread(client: Client, urls: Sequence[str], refs: Sequence[int], threads: int = 8,
           **tar_kw: Any) -> List[Dict[str, Any]]:
    """The samples ``refs`` (packed references), by reading their shards again from the start.

    Raises:
        ReadError: a shard holds fewer samples than a reference names (it changed since the checkpoint).
    """
    if not refs:
        return []
    wanted: Dict[int, List[int]] = {}
    for r in refs:
        shard, sample = unpack_ref(r)
        wanted.setdefault(shard, []).append(sample)

    def one(shard: int) -> Dict[int, Dict[str, Any]]:
        numbers = set(wanted[shard])
        last = max(numbers)
        got: Dict[int, Dict[str, Any]] = {}
        seen = 0
        stream = open_object(urls[shard], client, bufsize=256 << 10)
        for j, sample in enumerate(tar_samples(({"url": urls[shard], "stream": stream},), **tar_kw)):
            seen = j + 1
            if j in numbers:
                got[j] = sample
            if j >= last:
                break
        stream.close()
        if len(got) != len(numbers):
            raise ReadError(f"the shard holds {seen} samples, the checkpoint names sample {last}",
                            url=urls[shard], hint="resume with the shards the checkpoint was taken on")
        return got

    shards = sorted(wanted)
    with ThreadPoolExecutor(min(threads, len(shards))) as pool:
        found = dict(zip(shards, pool.map(one, shards)))
    return [found[s][j] for s, j in map(unpack_ref, refs)]


def open_from(client: Client, url: str, *, skip: int, start: int = 0, end: Optional[int] = None,
              bufsize: int = 256 << 10, **tar_kw: Any) -> Iterator[Dict[str, Any]]:
    """The samples of ``url``'s bytes ``[start, end)`` after the first ``skip`` (lazy: the GET happens on
    the first ``next``)."""
    stream = open_object(url, client, start=start, end=end, bufsize=bufsize)
    samples = tar_samples(({"url": url, "stream": stream},), **tar_kw)
    for _ in itertools.islice(samples, skip):
        pass
    yield from samples
