"""The cluster engine of ``pack``: every planned shard is built inside AIS by an archive job.

The client sends one archive request per shard (the shard's member objects, in plan order), keeps
``parallel`` shards in flight, and watches the destination: AIS writes each archive to a work file and
makes it visible only when complete, so a shard is either absent or whole. No payload byte passes
through the client on this path.

AIS v1.5.0 does not keep the request order of members that live on different targets (see
:mod:`ais_wds._core.archive` and docs/pack.md). So every finished shard is proven before it counts:
its tar headers are read back at the offsets the plan predicts (batched ranged GETs, 512 bytes per
member; :func:`ais_wds.shard_index.index.verify_spans`). A shard whose members came back in another
order is deleted and handed back to the caller, which rebuilds it with the client engine. A shard
is never left misordered, and the index written from the plan is proven by the same reads.

Eligibility (:func:`cluster_unsupported`): members named exactly like their objects (no
``--strip-prefix``, the ``wds`` key rule), every header one 512-byte ustar block (names up to 100
bytes), one source bucket per shard, an ``ais://`` destination in the same cluster. Cloud sources
(``s3://`` etc.) are read by the targets (cold GET), so they are eligible too.

Thread safety: one call at a time per plan; it runs in the calling thread.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from itertools import accumulate
from typing import Callable, Deque, Dict, List, Optional, Tuple

from .._core.archive import job_failure, start_archive
from ..client import Client
from ..errors import AISWdsError, PackJobError
from ..shard_index.index import record_from_spans, stream_record, verify_spans
from ..tar import writer as tarwrite
from ..urls import AISUrl, parse_url
from ..writer import delete_object
from .plan import PlannedShard

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
"""How often the destination is listed while archive jobs run."""
FAILURE_CHECK_SECONDS = 2.0
"""How often the jobs' state is asked for (aborts) while shards are outstanding."""
MIN_SHARD_TIMEOUT = 120.0
"""Seconds a shard may take at least before it is reported as failed (plus 1 s per 20 MB)."""

Spans = List[Tuple[str, int, int, int]]


def shard_spans(shard: PlannedShard) -> Spans:
    """``(member name, header offset, data offset, size)`` of every member, as the plan lays them out."""
    out: Spans = []
    for sample in shard.samples:
        starts = accumulate((m.span for m in sample.members), initial=sample.offset)
        out.extend((m.name, start, start + m.header_size, m.size) for m, start in zip(sample.members, starts))
    return out


def cluster_unsupported(shards: List[PlannedShard], dst_pattern: str) -> Optional[str]:
    """Why these shards cannot be built by archive jobs (a sentence), or None when they can."""
    dst = parse_url(dst_pattern)
    if dst.provider != "ais" or dst.has_namespace:
        return f"the destination {dst.scheme}://{dst.bucket} is not an ais:// bucket of this cluster"
    for shard in shards:
        bucket: Optional[Tuple[str, str]] = None
        for sample in shard.samples:
            for m in sample.members:
                u = parse_url(m.source)
                if u.has_namespace:
                    return f"{m.source} is in a remote cluster or namespace; archive jobs read local buckets"
                if m.name != u.path:
                    return (f"member {m.name!r} is not named like its object {u.path!r} (AIS names archive members "
                            "after their objects; --strip-prefix and --key stem/REGEX rename them)")
                if m.header_size != tarwrite.BLOCK:
                    return f"member {m.name!r} needs more than one ustar header block (name over 100 bytes)"
                if bucket is None:
                    bucket = (u.provider, u.bucket)
                elif bucket != (u.provider, u.bucket):
                    return f"shard {shard.url} takes samples from two buckets; one archive job reads one bucket"
    return None


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


class _Flight:
    def __init__(self, shard: PlannedShard, job: str, started: float):
        self.shard, self.job, self.started = shard, job, started
        self.deadline = started + MIN_SHARD_TIMEOUT + shard.size / 20e6


def build_shards(todo: List[PlannedShard], client: Client, existing: Callable[[], Dict[str, int]], *,
                 parallel: int, on_done: Callable[[PlannedShard], None]) -> List[PlannedShard]:
    """Build ``todo`` with archive jobs, ``parallel`` at a time; prove each finished shard.

    Args:
        todo: eligible shards (see :func:`cluster_unsupported`) that do not exist yet.
        existing: lists the destination: URL -> size (called every :data:`POLL_SECONDS`).
        parallel: archive jobs in flight.
        on_done: called with each shard proven complete (in this thread).

    Returns:
        The shards AIS built in another member order; they were deleted again (rebuild them).

    Raises:
        PackJobError: a job was refused, aborted, built a shard of the wrong size, or did not finish
            in time; names the shard and AIS's cause. Shards of other jobs in flight are left to AIS
            (each is whole or absent; a resume proves the ones that exist).
    """
    pending: Deque[PlannedShard] = deque(todo)
    flights: Dict[str, _Flight] = {}
    misordered: List[PlannedShard] = []
    next_check = time.monotonic() + FAILURE_CHECK_SECONDS
    while pending or flights:
        while pending and len(flights) < max(1, parallel):
            shard = pending.popleft()
            first = parse_url(shard.samples[0].members[0].source)
            names = [m.name for s in shard.samples for m in s.members]
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
                on_done(shard)
            else:
                logger.info("%s: AIS archived the members in another order; rebuilding it", url)
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
