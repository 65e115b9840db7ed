"""Archives built by AIS: the archive job (``ObjectGroup.archive`` in the SDK) and get-batch, as core calls.

:func:`start_archive` asks the cluster to build one tar from a list of objects of one bucket; the
targets read the objects and stream them to the target that owns the archive, which writes it to a
work file and makes it visible only when complete (never a partial archive). :func:`job_failure`
reads the job's state back from every target. :func:`one_target` says whether a list of objects and
an archive all live on one target (the only case in which the archive job keeps the request order).

:func:`open_batch_archive` asks AIS's get-batch job (x-moss) for one tar of a list of objects, member
names = object names, entries in request order: the designated target assembles it from its own
objects and the other targets' streams, reordering them (``xact/xs/moss.go``). The reply is a stream.

Found against AIS v1.5.0 (1 gateway + 2 targets): the members of the archive are NOT in request
order when the objects live on several targets. Each target walks the list in order and handles
only the objects it owns; the owner of the archive writes its own objects as it walks and the others'
as they arrive over the intra-cluster stream, so the two sequences interleave (see docs/pack.md).
Callers that need an order must check it (``ais_wds.shard_index.index.verify_spans``). Get-batch keeps
the order on any cluster, but reads only objects already in the cluster (no cold GET from a cloud
bucket in v1.5.0: ``basewi._write`` in ``xact/xs/moss.go`` treats a missing object as an error).

Thread safety: the functions may be called from any thread.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, List, Optional, Sequence

from ..client import Client
from ..errors import AISWdsError
from ..urls import AISUrl, parse_url
from .connections import uname
from .retry import translate

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


def open_batch_archive(client: Client, bucket: AISUrl, names: Sequence[str]) -> Any:
    """Ask AIS's get-batch job for one tar of the objects ``names`` of ``bucket``, in this order, each
    member named exactly like its object, stopping at the first object AIS cannot serve.

    Returns:
        The reply as a readable urllib3 response (``read(n)``; ``close()`` it; after reading it to the
        end, ``release_conn()`` returns the connection to the pool). A reply that ends short or raises
        while being read means AIS aborted the job (a target went away, an object vanished).

    Raises:
        AISWdsError (NotFoundError, RequestError, ConnectError, ...): the request was refused.
    """
    try:
        from aistore.sdk.batch.types import MossIn

        sdk = client.connections().batch_sdk
        bck = client.bucket(bucket)
        batch = sdk.batch(bucket=bck, cont_on_err=False, streaming_get=True, only_obj_name=True)
        # what batch.add(name) builds, without its per-call checks (a shard has thousands of names)
        bck_name, provider = bck.name, bck.provider.value
        batch.request.moss_in.extend(MossIn(obj_name=name, bck=bck_name, provider=provider) for name in names)
        return batch.get(raw=True)
    except Exception as e:
        raise translate(e, str(bucket), endpoint=client.endpoint, token_source=client.config.token_source) from e


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


class BatchReply:
    """A get-batch reply (see :func:`open_batch_archive`) read into the caller's buffer with few system
    calls and no per-chunk objects.

    AIS streams the tar with chunked transfer encoding, about two HTTP chunks per member (~5 KB each
    for 10 KiB objects); ``http.client`` decodes each into a bytes object of its own and reads the socket
    through an 8 KiB buffer, about 3 s of CPU per GB here. This reader pulls what the socket holds (up to
    ``bufsize`` bytes per call) into one reused buffer and copies the payload out of the chunk framing.
    A reply without chunked encoding is read through ``readinto`` of the response.

    Thread safety: one thread at a time.
    """

    def __init__(self, raw: Any, bufsize: int = 1 << 20):
        self._raw = raw
        fp = getattr(raw, "_fp", None)  # urllib3's http.client.HTTPResponse, headers read, body untouched
        self._fp = getattr(fp, "fp", None) if fp is not None and getattr(fp, "chunked", False) else None
        if self._fp is not None and (getattr(fp, "chunk_left", None) is not None or not hasattr(self._fp, "readinto1")):
            self._fp = None  # something read the body already: let http.client go on decoding it
        self._buf = bytearray(bufsize)
        self._view = memoryview(self._buf)
        self._start = self._end = 0  # received, not yet decoded: _buf[_start:_end]
        self._left = 0  # bytes left in the current chunk, its closing CRLF included
        self._eof = False

    def _fill(self) -> None:
        if self._start:
            n = self._end - self._start
            self._view[:n] = self._view[self._start:self._end]
            self._start, self._end = 0, n
        if self._end == len(self._buf):
            raise ValueError("a chunk-size line longer than the buffer")
        assert self._fp is not None
        k = self._fp.readinto1(self._view[self._end:])
        if not k:
            raise EOFError("the connection closed mid-reply (incomplete chunked encoding)")
        self._end += k

    def _line_end(self) -> int:
        while True:
            i = self._buf.find(b"\r\n", self._start, self._end)
            if i >= 0:
                return i
            self._fill()

    def readinto(self, out: memoryview) -> int:
        """Fill ``out`` with the next bytes of the tar; returns how many (0: the reply is complete).

        Raises: EOFError, ValueError (broken framing), OSError, urllib3 errors: the reply broke off.
        """
        if self._fp is None:
            return int(self._raw.readinto(out))
        n, size, view = 0, len(out), self._view
        while n < size and not self._eof:
            if self._left == 0:
                i = self._line_end()
                chunk = int(bytes(view[self._start:i]).split(b";", 1)[0], 16)
                self._start = i + 2
                if chunk == 0:  # the last chunk; then trailers up to an empty line
                    while True:
                        i = self._line_end()
                        empty, self._start = i == self._start, i + 2
                        if empty:
                            break
                    self._eof = True
                    break
                self._left = chunk + 2
            if self._start == self._end:
                self._fill()
            if self._left > 2:
                k = min(self._left - 2, self._end - self._start, size - n)
                out[n:n + k] = view[self._start:self._start + k]
                n += k
                self._start += k
                self._left -= k
            else:
                while self._end - self._start < self._left:
                    self._fill()
                if view[self._start:self._start + self._left] != b"\r\n"[2 - self._left:]:
                    raise ValueError("broken chunked encoding (no CRLF after a chunk)")
                self._start += self._left
                self._left = 0
        return n

    def finish(self) -> None:
        """After :meth:`readinto` returned 0: hand the connection back for reuse (when this reader decoded
        the framing, http.client does not know where the reply ended: the connection is closed instead)."""
        if self._fp is None:
            self._raw.release_conn()
        else:
            self._raw.close()
            self._raw.release_conn()

    def close(self) -> None:
        """Drop the reply (unread bytes and the connection)."""
        self._raw.close()
