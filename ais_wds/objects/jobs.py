"""AIS jobs on many objects, as core calls: the archive job (``ObjectGroup.archive`` in the SDK), the
prefetch job, and the placement checks that decide whether the archive job keeps an order.

:func:`start_archive` asks the cluster to build one tar from a list of objects of one bucket; the
targets read the objects and stream them to the target that owns the archive, which writes it to a
work file and makes it visible only when complete (never a partial archive). :func:`job_failure`
reads the job's state back from every target. :func:`one_target` says whether a list of objects and
an archive all live on one target (the only case in which the archive job keeps the request order).
:func:`prefetch` has the cluster cold-GET a cloud bucket's objects (get-batch, in
:mod:`ais_wds.objects.get_batch`, reads only objects already in the cluster).

Found against AIS v1.5.0 (1 gateway + 2 targets): the members of the archive are NOT in request
order when the objects live on several targets. Each target walks the list in order and handles
only the objects it owns; the owner of the archive writes its own objects as it walks and the others'
as they arrive over the intra-cluster stream, so the two sequences interleave (see docs/pack.md).
Callers that need an order must check it (``ais_wds.shard_index.index.verify_spans``).

Thread safety: the functions may be called from any thread.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, List, Optional, Sequence

from .._core.connections import uname
from .._core.retry import translate
from ..client import Client
from ..errors import AISWdsError
from ..urls import AISUrl, parse_url

logger = logging.getLogger(__name__)


def start_archive(client: Client, bucket: AISUrl, names: Sequence[str], archive_url: str, *,
                  continue_on_error: bool = False) -> str:
    """Start an archive job: the objects ``names`` of ``bucket`` (in this order in the request) into
    the tar ``archive_url`` (any bucket of the same cluster; its extension picks the format).

    Returns:
        The job id.

    Raises:
        BucketNotFoundError, RequestError, ConnectError: the request was refused (nothing was started).
    """
    from aistore.sdk.const import ACT_ARCHIVE_OBJECTS, HTTP_METHOD_PUT

    dst = parse_url(archive_url)
    src_bck, dst_bck = client.bucket(bucket), client.bucket(dst)
    value = {"objnames": list(names), "archname": dst.path, "tobck": dst_bck.as_model().model_dump(),
             "isbn": False, "aate": False, "coer": continue_on_error}
    try:
        resp = src_bck.make_request(HTTP_METHOD_PUT, ACT_ARCHIVE_OBJECTS, value=value)
    except Exception as e:
        raise translate(e, archive_url, endpoint=client.endpoint,
                        token_source=client.config.token_source) from e
    ids = _job_ids(resp.text)
    if not ids:
        raise AISWdsError(f"the archive request answered no job id ({resp.text[:100]!r})", url=archive_url)
    return ids[0]


def _job_ids(text: str) -> List[str]:
    import json

    text = text.strip()
    try:
        value: Any = json.loads(text)
    except ValueError:
        return [text] if text else []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def job_failure(client: Client, job_id: str) -> Optional[str]:
    """AIS's reason when job ``job_id`` was aborted on any target, else None (running, idle or done).

    A job that no target knows any more (finished long ago) counts as not failed.
    """
    try:
        snaps = client.sdk.job(job_id=job_id).get_details().list_snapshots()
    except Exception as e:  # noqa: BLE001 - an unknown job: not a failure we can name
        logger.debug("job %s: no details (%s)", job_id, e)
        return None
    for snap in snaps:
        if getattr(snap, "aborted", False) or getattr(snap, "abort_err", ""):
            return str(getattr(snap, "abort_err", "") or "aborted")
    return None


def one_target(client: Client, urls: Iterable[str], archive_url: str) -> bool:
    """True when the objects ``urls`` and the object ``archive_url`` all belong to one target by the
    cluster map (HRW placement, computed here as AIS does). False when they do not, or when the cluster
    map is unavailable."""
    smap = client.connections().cluster_map()
    if smap is None:
        return False
    try:
        owner = smap.get_target_for_object(uname(parse_url(archive_url))).daemon_id
        return all(smap.get_target_for_object(uname(parse_url(u))).daemon_id == owner for u in urls)
    except Exception as e:  # noqa: BLE001 - NoTargetError (every target in maintenance): not provable
        logger.debug("no placement for %s: %s", archive_url, e)
        return False


def active_targets(client: Client) -> int:
    """Targets of the cluster map not in maintenance (0 when the map is unavailable)."""
    smap = client.connections().cluster_map()
    if smap is None:
        return 0
    return sum(1 for t in smap.tmap.values() if not t.in_maint_or_decomm())


def prefetch(client: Client, bucket: AISUrl, names: Sequence[str], *, timeout: float = 600.0) -> None:
    """Have AIS fetch the objects ``names`` of the cloud bucket ``bucket`` into the cluster (a prefetch
    job: every target cold-GETs the objects it owns) and wait until the job has finished.

    Raises:
        AISWdsError (NotFoundError, RequestError, ConnectError, ...): the request was refused, or the
            job failed or did not finish within ``timeout`` seconds (the message says which).
    """
    url = str(bucket)
    try:
        job = client.bucket(bucket).objects(obj_names=list(names)).prefetch()
        result = client.sdk.job(job_id=job).wait(timeout=int(timeout), verbose=False)
    except Exception as e:
        raise translate(e, url, endpoint=client.endpoint, token_source=client.config.token_source) from e
    if not result.success:
        raise AISWdsError(f"prefetch job {job} of {len(names)} object(s) did not finish: {result.error or 'timed out'}",
                          url=url)
