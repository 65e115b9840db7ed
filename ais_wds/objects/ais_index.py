"""AIS's own shard index (AIS 5.0, experimental): ask the cluster to index its tar shards, so that reads of a
member by name (``archpath``: :func:`ais_wds.objects.reader.read_member`, GetBatch entries with an archpath)
go straight to the member's offset instead of scanning the shard.

The ``index-shard`` bucket action (``POST /v1/buckets/<bucket>`` with ``{"action": "index-shard", "value":
{"prefix": ...}}``) starts a job on every target; each target indexes the ``.tar`` objects it owns and keeps
one index object per shard in ``ais://.sys-shardidx`` (format in AIS's ``cmn/archive/shard.go``: the shard's
checksum and size, then per member its name, header offset and size). A shard whose size or checksum
changed later is read by scanning again (AIS checks on every ``archpath`` read). TAR only (not .tgz, .zip);
at most 2^20 members per shard; the first of duplicate names wins. The SDK has no call for it.

Thread safety: the functions may be called from any thread.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Tuple, Union

from .._core.retry import translate
from ..client import Client
from ..errors import AISWdsError, RequestError
from ..urls import AISUrl, parse_url

logger = logging.getLogger(__name__)


def start_shard_index(client: Client, prefix: Union[str, AISUrl], *, workers: int = 0,
                      skip_verify: bool = False) -> str:
    """Start AIS's ``index-shard`` job for the ``.tar`` objects under ``prefix`` (a bucket URL + name prefix).

    Args:
        client: the cluster.
        prefix: e.g. ``ais://bucket/train-``.
        workers: concurrent workers per target (0: AIS decides; -1: none).
        skip_verify: trust a shard's existing index without checking it is current (a fast re-run).

    Returns:
        The job id.

    Raises:
        BucketNotFoundError, AuthError, RequestError, ConnectError: the request was refused.
    """
    u = parse_url(prefix)
    value = {"prefix": u.path}
    if workers:
        value["num-workers"] = workers  # type: ignore[assignment]
    if skip_verify:
        value["skip-verify"] = True  # type: ignore[assignment]
    params = {"provider": u.provider}
    if u.has_namespace:
        params["namespace"] = f"@{u.ns_uuid}#{u.ns_name}"
    try:
        resp = client.http.post(f"{client.endpoint}/v1/buckets/{u.bucket}", params=params,
                                json={"action": "index-shard", "value": value},
                                timeout=(client.config.connect_timeout, client.config.read_timeout))
        if resp.status_code >= 400:
            from aistore.sdk.response_handler import AISResponseHandler

            raise AISResponseHandler().parse_error(resp)
    except AISWdsError:
        raise
    except Exception as e:
        raise translate(e, str(u), endpoint=client.endpoint, token_source=client.config.token_source) from e
    job = str(resp.text).strip().strip('"')
    if not job:
        raise RequestError("AIS answered the index-shard request without a job id", url=str(u))
    return job


def index_shards(client: Client, prefix: Union[str, AISUrl], *, timeout: float = 3600.0, workers: int = 0,
                 skip_verify: bool = False) -> Tuple[str, float]:
    """Have AIS index the shards under ``prefix`` and wait for the job (see :func:`start_shard_index`).

    Returns:
        ``(job id, seconds the job took as seen from here)``.

    Raises:
        RequestError: the job failed or was aborted (AIS's reason), or did not finish within ``timeout``.
    """
    t = time.monotonic()
    job = start_shard_index(client, prefix, workers=workers, skip_verify=skip_verify)
    status = _wait(client, job, str(prefix), t + timeout)
    if getattr(status, "err", "") or getattr(status, "aborted", False):
        raise RequestError(f"AIS's index-shard job {job} failed: {status.err or 'aborted'}", url=str(prefix))
    seconds = time.monotonic() - t
    logger.info("AIS indexed the shards under %s (job %s, %.1fs)", prefix, job, seconds)
    return job, seconds


POLL_SECONDS = 0.2
"""How often the job's state is asked for while it runs."""


def _wait(client: Client, job: str, where: str, deadline: float) -> Any:
    """The job's final status, asked for every :data:`POLL_SECONDS` (a job not known yet is asked again)."""
    last: Exception = TimeoutError("no answer")
    while time.monotonic() < deadline:
        try:
            status = client.sdk.job(job_id=job).status()
            if getattr(status, "end_time", 0):
                return status
        except Exception as e:  # noqa: BLE001 - not registered on every node yet, or a node restarting
            last = e
        time.sleep(POLL_SECONDS)
    raise RequestError(f"AIS's index-shard job {job} did not finish in time ({type(last).__name__}: {last})",
                       url=where, hint="see `ais show job` on the cluster")
