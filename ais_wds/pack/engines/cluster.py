"""The cluster engine of ``pack``: AIS assembles every planned shard, in the plan's member order.

Two ways, chosen per shard (see docs/pack.md for the AIS v1.5.0 source lines behind them):

* **archive job** (x-archive, :func:`ais_wds.objects.jobs.start_archive`) when the shard's member
  objects and the shard itself all live on one target (always on a one-target cluster): that target
  walks the list in order and writes its own objects as it goes, so the order is the request's, and
  nothing passes through the client. AIS makes the archive visible only when complete. Each such shard
  is still proven (its tar headers read back at the offsets the plan predicts, batched ranged GETs,
  :func:`ais_wds.shard_index.index.verify_spans`); one that is not is deleted and built the other way.
* **get-batch** (x-moss, :func:`ais_wds.objects.get_batch.open_batch_archive`) otherwise: the archive job
  does not keep the order of members that live on different targets (the owner writes its own objects
  as it walks and the others' as they arrive), but get-batch does: its designated target assembles the
  tar in request order from its own objects and the other targets' streams. The client streams that
  tar straight into the shard's all-or-nothing upload (two requests per shard, no per-member work),
  checking every planned header as it passes; a shard is committed only when its size and every
  header are the plan's. The payload crosses the client's network link once each way.

Eligibility (:func:`ais_wds.pack.engine_choice.cluster_unsupported`): members named exactly like their objects (no
``--strip-prefix``, the ``wds`` key rule), every header one 512-byte ustar block (names up to 100
bytes), one source bucket per shard (``ais://`` of this cluster, or a cloud bucket it reaches), an
``ais://`` destination in the same cluster. Get-batch reads only objects the cluster holds (no cold GET in
v1.5.0), so a shard of a cloud bucket is first fetched into the cluster by an AIS prefetch job (the
targets GET from the cloud; nothing through the client), then assembled. A shard whose get-batch reply
keeps breaking (a flaky network cuts nearly every long reply) is built by the fallback engine it was
given, the client engine, whose per-object GETs resume.

Thread safety: :meth:`ClusterEngine.build` one call at a time; it runs in the calling thread and its own
threads.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from ..._core.retry import Backoff
from ...client import Client
from ...errors import AISWdsError, AuthError, NotFoundError, PackJobError
from ...objects.get_batch import BatchReply, open_batch_archive
from ...objects.jobs import active_targets, job_failure, one_target, prefetch, start_archive
from ...objects.writer import DEFAULT_PART_SIZE, delete_object, open_writer
from ...shard_index.index import header_matches, record_from_spans, stream_record, verify_spans
from ...tar import writer as tarwrite
from ...urls import AISUrl, parse_url
from ..destination import existing_sizes
from ..plan import PlannedShard
from ..report import PackReport
from . import Engine, Progress, Stopped, Totals, first_failure

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
"""How often the destination is listed while archive jobs run."""
FAILURE_CHECK_SECONDS = 2.0
"""How often the jobs' state is asked for (aborts) while shards are outstanding."""
MIN_SHARD_TIMEOUT = 120.0
"""Seconds a shard may take at least before it is reported as failed (plus 1 s per 20 MB)."""
RELAY_CHUNK = DEFAULT_PART_SIZE
"""Bytes of the get-batch reply read (and checked, and written) at a time: one upload part, which the writer
sends as it is (no copy into its own buffer)."""
ONE_TARGET_CHECK = 16
"""On a multi-target cluster, shards of up to this many samples are checked for members on one target."""
FALLBACK_AFTER = 3
"""Broken get-batch attempts of one shard (reply cut, short, refused) after which the fallback engine builds it."""

Spans = List[Tuple[str, int, int, int]]


def shard_spans(shard: PlannedShard, members: Optional[List[Tuple[str, str, int, int]]] = None) -> Spans:
    """``(member name, header offset, data offset, size)`` of every member, as the plan lays them out
    (``members``: the shard's :meth:`~ais_wds.pack.plan.PlannedShard.members`, when the caller holds them)."""
    out: Spans = []
    offset = 0
    for name, _, size, header in shard.members() if members is None else members:
        out.append((name, offset, offset + header, size))
        offset += header + size + (-size % tarwrite.BLOCK)
    return out


def proven(shard: PlannedShard, client: Client) -> bool:
    """True when the shard in AIS has exactly the plan's layout (headers read back), else False."""
    spans = shard_spans(shard)
    if verify_spans(shard.url, spans, client):
        return True
    # batched ranged reads unavailable or a mismatch: read the headers by streaming the shard once
    try:
        found = stream_record(shard.url, shard.size, client)
    except AISWdsError as e:
        logger.warning("%s: cannot read back the shard (%s)", shard.url, e)
        return False
    return found.to_dict() == record_from_spans(shard.url, shard.size, spans).to_dict()


class ClusterEngine(Engine):
    """Has AIS build each shard in the plan's layout (see the module docstring).

    Args:
        client: the :class:`Client`.
        dst_pattern: the shard template (its destination is listed while archive jobs run).
        parallel: shards in flight (archive jobs, and get-batch streams at once).
        fallback: the engine that builds a shard whose get-batch relay broke :data:`FALLBACK_AFTER` times
            (or whose retry budget ran out), through :meth:`Engine.build_shard`: the client engine; None:
            no fallback. Closed with this engine.
        progress: called with running (samples, member data bytes) totals as shards complete.

    :meth:`build` raises PackJobError: a job was refused or aborted, a shard came out of the wrong size
    or layout, or did not finish in time; names the shard and AIS's cause. No shard is left partial or
    misordered; shards of other jobs in flight are left to AIS (each whole or absent; a resume proves
    those that exist, :meth:`reconcile`).
    """

    name = "cluster"

    def __init__(self, client: Client, dst_pattern: str, *, parallel: int, fallback: Optional[Engine] = None,
                 progress: Optional[Progress] = None):
        self.client, self.dst_pattern, self.parallel, self.fallback = client, dst_pattern, parallel, fallback
        self._progress = progress is not None
        self._totals = Totals(progress)
        self._lock = threading.Lock()

    def build(self, shards: List[PlannedShard], report: PackReport) -> None:
        """Build ``shards`` inside AIS: archive jobs where a shard's members and the shard share one target,
        get-batch otherwise (and for the shards an archive job built in another order, ``report.rebuilt``)."""
        client = self.client
        targets = active_targets(client)
        # on a multi-target cluster a shard of many members almost never has them all on one target: only
        # small shards are worth the check (every member's placement)
        local = [s for s in shards if targets == 1 or (targets > 1 and s.num_samples <= ONE_TARGET_CHECK and one_target(
            client, (m.source for x in s.samples for m in x.members), s.url))]
        chosen = {s.url for s in local}
        rest = [s for s in shards if s.url not in chosen]
        done = partial(self._done, report)
        if local:
            misordered = _archive(local, client, partial(existing_sizes, self.dst_pattern, client),
                                  parallel=self.parallel, on_done=done, report=report)
            report.rebuilt.extend(s.url for s in misordered)
            rest.extend(misordered)
        if rest:
            _batch(rest, client, parallel=self.parallel, on_done=done, report=report, fallback=self.fallback)

    def build_shard(self, shard: PlannedShard, stop: threading.Event) -> None:
        """One shard by get-batch (the fallback engine builds it if the relay keeps breaking)."""
        _relay(shard, self.client, stop, self.fallback)

    def reconcile(self, mine: List[PlannedShard], existing: Dict[str, int], todo: List[PlannedShard],
                  report: PackReport) -> List[PlannedShard]:
        """Shards found complete are proven (an interrupted run may have left one that AIS built in another
        order); the unproven ones are deleted and rebuilt. Shards of the wrong size are deleted too."""
        todo_urls = {s.url for s in todo}
        out = list(todo)
        for shard in mine:
            if shard.url in report.skipped and not proven(shard, self.client):
                logger.info("%s: exists but its layout is not the plan's; rebuilding it", shard.url)
                report.skipped.remove(shard.url)
                delete_object(shard.url, self.client)
                out.append(shard)
            elif shard.url in todo_urls and shard.url in existing:
                delete_object(shard.url, self.client)
        return out

    def close(self) -> None:
        if self.fallback is not None:
            self.fallback.close()

    def _done(self, report: PackReport, shard: PlannedShard) -> None:
        with self._lock:  # from this thread or a worker thread
            report.count(shard)
            self._totals.add(shard.num_samples, sum(m[2] for m in shard.members()) if self._progress else 0)


class _Flight:
    def __init__(self, shard: PlannedShard, job: str, started: float):
        self.shard, self.job, self.started = shard, job, started
        self.deadline = started + MIN_SHARD_TIMEOUT + shard.size / 20e6


def _archive(todo: List[PlannedShard], client: Client, existing: Callable[[], Dict[str, int]], *,
             parallel: int, on_done: Callable[[PlannedShard], None], report: PackReport) -> List[PlannedShard]:
    """Archive jobs, ``parallel`` in flight; each finished shard proven. Returns the shards that came
    back in another member order (deleted again)."""
    pending: Deque[PlannedShard] = deque(todo)
    flights: Dict[str, _Flight] = {}
    misordered: List[PlannedShard] = []
    next_check = time.monotonic() + FAILURE_CHECK_SECONDS
    while pending or flights:
        while pending and len(flights) < max(1, parallel):
            shard = pending.popleft()
            members = shard.members()
            first = parse_url(members[0][1])
            names = [m[0] for m in members]
            del members
            bucket = AISUrl(first.scheme, first.bucket, "")
            try:
                job = start_archive(client, bucket, names, shard.url)
            except AISWdsError as e:
                raise PackJobError(f"the archive job for this shard was refused: {e.message}", url=shard.url,
                                   hint="check the source objects and the destination bucket, then --resume"
                                   ) from e
            flights[shard.url] = _Flight(shard, job, time.monotonic())
            logger.debug("%s: archive job %s (%d members)", shard.url, job, len(names))
        time.sleep(POLL_SECONDS)
        sizes = existing()
        now = time.monotonic()
        for url, flight in list(flights.items()):
            shard = flight.shard
            size = sizes.get(url)
            if size is None:
                if now > flight.deadline:
                    raise PackJobError(f"archive job {flight.job} did not finish this shard in "
                                       f"{now - flight.started:.0f}s", url=url,
                                       hint="see the job with `ais show job`; then run again with --resume")
                continue
            del flights[url]
            if size != shard.size:
                delete_object(url, client)
                raise PackJobError(f"archive job {flight.job} built {size} bytes, the plan says {shard.size} "
                                   "(a source object changed or disappeared); the shard was deleted", url=url,
                                   hint="list and plan again (re-run without --resume), or --resume after fixing")
            if proven(shard, client):
                report.archived.append(url)
                on_done(shard)
            else:
                logger.info("%s: AIS archived the members in another order; building it with get-batch", url)
                delete_object(url, client)
                misordered.append(shard)
        if flights and now >= next_check:
            next_check = now + FAILURE_CHECK_SECONDS
            for job in {f.job for f in flights.values()}:
                cause = job_failure(client, job)
                if cause:
                    url = next(u for u, f in flights.items() if f.job == job)
                    raise PackJobError(f"archive job {job} failed: {cause}", url=url,
                                       hint="fix the cause, then run again with --resume (finished shards are kept)")
    return misordered


class _HeaderCheck:
    """Checks, as a stream passes, the 512-byte tar header at every offset the plan predicts.

    Each header is compared where it lies in the chunk (a memoryview, no copy): the name and size fields
    against the bytes a ustar writer puts there, the type flag, an empty ustar prefix and the checksum
    (``_fast_header_ok``); a header that differs from that form (another writer's field format) is
    judged by ``header_matches``, the index's own check. A header split between two chunks is put
    together first."""

    def __init__(self, spans: Spans):
        self._heads = [(off, name, size) for name, off, _, size in spans]
        self._next = 0
        self._pos = 0
        self._part = bytearray()  # the start of a header that continues in the next chunk
        self.mismatch: Optional[str] = None
        self._vector: Any = None  # (offsets, name fields, size fields) as numpy arrays, built on first use

    def feed(self, chunk: memoryview) -> None:
        """Check the headers that end in ``chunk``, the stream's next bytes."""
        pos, end, heads = self._pos, self._pos + len(chunk), self._heads
        if self.mismatch is not None:
            return
        if not self._part and not pos % tarwrite.BLOCK and not len(chunk) % tarwrite.BLOCK:
            self._next = self._vector_pass(chunk, pos)  # the rows it could not pass are checked one by one below
        while self._next < len(heads) and self.mismatch is None:
            offset, name, size = heads[self._next]
            if offset >= end:
                break
            if self._part or offset + tarwrite.BLOCK > end:  # a header across the chunk boundary
                start = max(offset, pos) - pos
                self._part += chunk[start:start + tarwrite.BLOCK - len(self._part)]
                if len(self._part) < tarwrite.BLOCK:
                    break
                block: Any = memoryview(bytes(self._part))
                self._part = bytearray()
            else:
                block = chunk[offset - pos:offset - pos + tarwrite.BLOCK]
            if not (_fast_header_ok(block, name, size) or _matches(bytes(block), name, size)):
                found = bytes(block[:100]).split(b"\0")[0].decode("utf-8", "replace")
                self.mismatch = f"the header at offset {offset} is {found!r}, not {name!r} ({size} bytes)"
            self._next += 1
        self._pos = end

    def _vector_pass(self, chunk: memoryview, pos: int) -> int:
        """Pass, all at once, the headers from ``self._next`` on that lie in ``chunk`` (block-aligned at stream
        offset ``pos``) and are in the form Go's archive/tar writes (:func:`_fast_header_ok`'s, with the
        checksum as six octal digits, a NUL and a space); returns the first header not passed (the caller checks
        it, and the rest, one by one). A few microseconds a header less than checking each in Python."""
        import numpy as np

        heads, first = self._heads, self._next
        if len(heads) - first < VECTOR_MIN:
            return first
        if self._vector is None:
            names = [name.encode("ascii", "replace") for _, name, _ in heads]
            fields = b"".join(n.ljust(100, b"\0") if len(n) <= 100 else bytes(100) for n in names)
            sizes = b"".join(b"%011o\0" % size for _, _, size in heads)
            self._vector = (np.fromiter((h[0] for h in heads), np.int64, len(heads)),
                            np.frombuffer(fields, np.uint8).reshape(-1, 100),
                            np.frombuffer(sizes, np.uint8).reshape(-1, 12),
                            np.fromiter((len(n) <= 100 for n in names), bool, len(heads)))
        offsets, name_fields, size_fields, short = self._vector
        last = int(np.searchsorted(offsets, pos + len(chunk) - tarwrite.BLOCK, side="right"))
        if last - first < VECTOR_MIN or offsets[first] < pos:
            return first
        rows = np.frombuffer(chunk, np.uint8).reshape(-1, tarwrite.BLOCK)[(offsets[first:last] - pos) // tarwrite.BLOCK]
        stored = rows[:, 148:156]
        digits = stored[:, :6]
        ok = short[first:last] & (rows[:, :100] == name_fields[first:last]).all(1)
        ok &= (rows[:, 124:136] == size_fields[first:last]).all(1)
        ok &= (rows[:, 156] == 48) | (rows[:, 156] == 0)
        ok &= ~(rows[:, 257:263] == np.frombuffer(_USTAR, np.uint8)).all(1) | (rows[:, 345] == 0)
        ok &= ((digits >= 48) & (digits <= 55)).all(1) & (stored[:, 6] == 0) & (stored[:, 7] == 32)
        value = ((digits.astype(np.int64) - 48) * _OCTAL).sum(1)
        ok &= value == rows.sum(1, dtype=np.int64) - stored.sum(1, dtype=np.int64) + 256
        return first + int(np.argmin(ok)) if not ok.all() else last

    @property
    def complete(self) -> bool:
        return self._next == len(self._heads) and self.mismatch is None


def _matches(block: bytes, name: str, size: int) -> bool:
    """:func:`header_matches`, with a header whose numeric fields are not numbers (it raises ValueError on them)
    judged not to match."""
    try:
        return header_matches(block, name, size)
    except ValueError:
        return False


_NULS = bytes(100)
_USTAR = b"ustar\0"
_OCTAL = [8 ** 5, 8 ** 4, 8 ** 3, 8 ** 2, 8, 1]
VECTOR_MIN = 16
"""Headers in a chunk below which they are checked one by one (numpy's fixed cost is higher)."""


def _fast_header_ok(block: memoryview, name: str, size: int) -> bool:
    """True when ``block`` is the ustar header of ``name`` (at most 100 bytes) of ``size`` bytes as AIS
    (Go's archive/tar) and most writers write it: the name NUL-padded in its field, the size as 11 octal
    digits and a NUL, type '0' or NUL, no ustar prefix, a valid checksum. False means "not in this form"
    (:func:`header_matches` decides then), never a false True."""
    b = bytes(block)  # one 512-byte copy: slicing bytes is cheaper than slicing the memoryview
    raw = name.encode("ascii", "replace")
    if (len(raw) > 100 or b[:100] != raw + _NULS[len(raw):] or b[124:136] != b"%011o\0" % size
            or b[156] not in (48, 0) or (b[257:263] == b"ustar\0" and b[345] != 0)):
        return False
    stored = b[148:156]
    digits = stored.split(b"\0")[0].strip()
    if not digits or digits.translate(None, b"01234567"):  # no checksum, or not octal: not this form
        return False
    # the byte sum of each 256-byte half (at most 65,280) is exact in adler32's low word (mod 65,521)
    view = memoryview(b)
    total = (zlib.adler32(view[:256]) & 0xFFFF) + (zlib.adler32(view[256:]) & 0xFFFF) - 2
    return int(digits, 8) == total - sum(stored) + 256


def _relay_once(shard: PlannedShard, client: Client, stop: threading.Event) -> None:
    """One get-batch request for ``shard``, streamed into its upload; commits only a proven shard.

    Raises: Stopped; AISWdsError (the request or the upload failed, the reply broke off, or its
    layout is not the plan's: the message says which)."""
    members = shard.members()
    first = parse_url(members[0][1])
    bucket, names = AISUrl(first.scheme, first.bucket, ""), [m[0] for m in members]
    if first.provider != "ais":  # get-batch reads only what the cluster holds: have AIS fetch it first
        prefetch(client, bucket, names)
    check = _HeaderCheck(shard_spans(shard, members))
    del members
    reply = BatchReply(open_batch_archive(client, bucket, names))
    del names
    writer = open_writer(shard.url, client, part_size=RELAY_CHUNK)
    whole = bytearray(RELAY_CHUNK)
    buf = memoryview(whole)
    total = 0
    try:
        while True:
            if stop.is_set():
                raise Stopped()
            try:
                n = reply.readinto(buf)
            except Exception as e:  # noqa: BLE001 - socket, framing or urllib3 errors: the reply broke off
                raise AISWdsError(f"the get-batch reply broke off after {total} bytes "
                                  f"({type(e).__name__}: {' '.join(str(e).split())[:200]})", url=shard.url) from e
            if not n:
                break
            total += n
            if total > shard.size:
                raise AISWdsError(f"get-batch sent more than the plan's {shard.size} bytes", url=shard.url)
            chunk = buf[:n]
            check.feed(chunk)
            if check.mismatch:
                raise AISWdsError(f"get-batch assembled another layout: {check.mismatch}", url=shard.url)
            writer.write(whole if n == RELAY_CHUNK else chunk)  # a full buffer is sent as it is before write returns
        if total != shard.size or not check.complete:
            raise AISWdsError(f"get-batch sent {total} bytes, the plan says {shard.size} (the reply ended early: "
                              "AIS aborted the job, or a source object changed)", url=shard.url)
        writer.close()
        reply.finish()
    except BaseException:
        writer.abort()
        reply.close()
        raise


def _relay(shard: PlannedShard, client: Client, stop: threading.Event, fallback: Optional[Engine] = None) -> bool:
    """:func:`_relay_once`, tried again (nothing was committed) within the client's ``retry_seconds``:
    a target that restarts, or a cluster that starts to rebalance, refuses or cuts get-batch requests for
    a while. After :data:`FALLBACK_AFTER` broken attempts (or once the budget is spent) ``fallback``, when
    given, builds the shard instead (a flaky network cuts nearly every long reply, while per-object GETs
    resume where they broke). A missing source object or a refused token is final at once.

    Returns: True when ``fallback`` built the shard. Raises: Stopped; PackJobError (names the shard and
    the last cause)."""
    backoff = Backoff(client.config.retry_seconds)
    while True:
        try:
            _relay_once(shard, client, stop)
            return False
        except AISWdsError as e:
            final = isinstance(e, (NotFoundError, AuthError))
            if final or stop.is_set():
                delay = None
            elif fallback is not None and backoff.attempts + 1 >= FALLBACK_AFTER:
                delay = None
            else:
                delay = backoff.next_delay()
            if delay is None and not final and fallback is not None and not stop.is_set():
                _build_by_fallback(shard, fallback, stop, backoff.attempts + 1, e)
                return True
            if delay is None:
                raise PackJobError(f"AIS's get-batch job could not build this shard ({backoff.attempts + 1} "
                                   f"attempt(s)): {e.message}", url=shard.url,
                                   hint="check the source objects and the cluster's health, then run again with "
                                        "--resume (finished shards are kept)") from e
            logger.warning("%s: get-batch attempt %d failed (%s); retrying", shard.url, backoff.attempts, e.message)
            client.connections().refresh_cluster_map_soon(0.0)
            time.sleep(delay)


def _build_by_fallback(shard: PlannedShard, fallback: Engine, stop: threading.Event, attempts: int,
                       cause: AISWdsError) -> None:
    """``fallback.build_shard(shard, stop)`` for a shard whose get-batch relay broke ``attempts`` times
    (last: ``cause``).

    Raises: Stopped; PackJobError (the fallback failed too: names the shard and both causes)."""
    logger.warning("%s: get-batch broke %d time(s) (last: %s); building this shard with the client engine",
                   shard.url, attempts, cause.message)
    try:
        fallback.build_shard(shard, stop)
    except AISWdsError as e:
        raise PackJobError(f"get-batch broke {attempts} time(s) (last: {cause.message}), and the client engine "
                           f"could not build this shard either: {e.message}", url=shard.url,
                           hint="check the source objects and the network to the cluster, then run again with "
                                "--resume (finished shards are kept)") from e


def _batch(todo: List[PlannedShard], client: Client, *, parallel: int, on_done: Callable[[PlannedShard], None],
           report: PackReport, fallback: Optional[Engine] = None) -> None:
    """Get-batch streams, ``parallel`` at a time; the first failure stops the others."""
    stop = threading.Event()
    by_client: Set[str] = set()

    def build(shard: PlannedShard) -> None:
        if _relay(shard, client, stop, fallback):
            by_client.add(shard.url)

    def ok(shard: PlannedShard) -> None:
        (report.by_client if shard.url in by_client else report.batched).append(shard.url)
        on_done(shard)

    with ThreadPoolExecutor(max(1, parallel), thread_name_prefix="pack-batch") as pool:
        first_failure({pool.submit(build, shard): shard for shard in todo}, stop, ok)
