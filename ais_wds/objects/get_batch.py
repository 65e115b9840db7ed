"""Get-batch (AIS's x-moss job) of one bucket's objects as one tar stream, and a fast reader of its reply.

:func:`open_batch_archive` asks AIS's get-batch job for one tar of a list of objects, member names =
object names, entries in request order: the designated target assembles it from its own objects and
the other targets' streams, reordering them (``xact/xs/moss.go``). The reply is a stream;
:class:`BatchReply` reads it into the caller's buffer. Get-batch keeps the order on any cluster, but
reads only objects already in the cluster (no cold GET from a cloud bucket in v1.5.0:
``basewi._write`` in ``xact/xs/moss.go`` treats a missing object as an error; see
:func:`ais_wds.objects.jobs.prefetch`). The whole-object getters of the datasets use the same job
through the SDK (:class:`ais_wds.objects.fetch.BatchGetter`).

Thread safety: the function may be called from any thread; a :class:`BatchReply` is read by one.
"""

from __future__ import annotations

from typing import Any, Sequence

from .._core.retry import translate
from ..client import Client
from ..urls import AISUrl


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
    from .._core.connections import BATCH_READ_TIMEOUT

    cfg = client.config
    # the request as the SDK's Batch builds it, as plain JSON: no model per entry (a shard has thousands)
    body = {"in": [{"objname": name, "bucket": bucket.bucket, "provider": bucket.provider} for name in names],
            "mime": ".tar", "coer": False, "onob": True, "strm": True}
    where = str(bucket)
    try:
        resp = client.http.get(f"{client.endpoint}/v1/ml/moss/{bucket.bucket}", params={"provider": bucket.provider},
                               json=body, stream=True,
                               timeout=(cfg.connect_timeout, min(cfg.read_timeout, BATCH_READ_TIMEOUT)))
        if resp.status_code >= 400:
            from aistore.sdk.response_handler import AISResponseHandler

            try:
                raise AISResponseHandler().parse_error(resp)
            finally:
                resp.close()
    except Exception as e:
        raise translate(e, where, endpoint=client.endpoint, token_source=cfg.token_source) from e
    return resp.raw


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
