"""The reader core: open an AIS object as a sequential, buffered, resuming, read-only stream.

``open_object(url)`` returns an ``io.BufferedReader`` over :class:`ResumingObjectRaw`:

* it streams in large chunks (``bufsize``, 1 MiB by default) and never holds the whole object;
* it asks the target that owns the object directly (the client's cluster map), so a read, and a resume,
  needs no gateway: streams keep going while the gateway restarts. Without a map, for a namespaced
  bucket, or when the target refuses the connection or answers anything but 200/206, it asks the
  gateway (which redirects to the target) and reports the gateway's answer;
* it checks the length it receives against Content-Length / Content-Range;
* on a dropped connection, a timeout, a short body or a transient AIS error it backs off and resumes
  from its current offset with a Range request, so the bytes delivered are exactly the object's bytes;
  it checks the object version did not change between the pieces;
* it gives up after ``retry_seconds`` (client setting) with :class:`ReadError` naming URL and offset;
* an endpoint that never answered (refused) fails in seconds with :class:`ConnectError`; one that has
  answered as AIS before (in this process, or in the one that pickled or forked the Client) is a gateway
  restarting, and is retried within ``retry_seconds``, as are its "no storage targets" / "not ready"
  answers while its targets rejoin;
* ``close()`` is idempotent, the stream is a context manager, and the HTTP connection goes back to the
  pool at EOF (a stream dropped without ``close()`` is closed by the garbage collector).

Also: :func:`read_range`, :func:`read_bytes` and :func:`read_member` (one member of a shard, AIS
``archpath``) for callers that want bytes.

Thread safety: one stream per thread; the Client behind it may be shared.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any, Optional, Union

from .._core.retry import Backoff, is_gateway_unreachable, is_transient, translate
from ..client import Client
from ..errors import AISWdsError, ReadError
from ..metrics import core as metrics
from ..urls import AISUrl, parse_url

logger = logging.getLogger(__name__)

DEFAULT_BUFSIZE = 1 << 20


class ResumingObjectRaw(io.RawIOBase):
    """Unbuffered reader of bytes ``[start, end)`` of one object, resuming after failures.

    Args:
        client: the :class:`Client` to use.
        url: the object URL.
        start: first byte offset to read.
        end: one past the last byte to read; None reads to the end of the object.

    Raises (from ``readinto``):
        NotFoundError: the object or bucket does not exist.
        ReadError: the read could not be resumed within the client's ``retry_seconds``.
    """

    def __init__(self, client: Client, url: Union[str, AISUrl], start: int = 0, end: Optional[int] = None):
        # what close() touches is set first: a constructor that raises (a bad URL) leaves an object that
        # io.RawIOBase's finaliser still closes
        self._resp: Any = None
        self._readinto: Any = None
        super().__init__()
        self._client = client
        self._url = parse_url(url)
        self.name = str(self._url)
        self._start = start
        self._pos = start
        self._end = end  # exclusive; learnt from the first response when None
        self._version: Optional[str] = None
        self._resumes = 0
        self._opened = False

    # -- io.RawIOBase ----------------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.closed:
            raise ValueError(f"I/O operation on closed stream {self.name}")
        want = len(buf)
        if want == 0 or (self._end is not None and self._pos >= self._end):
            self._release()
            return 0
        if self._end is not None and want > self._end - self._pos:
            buf = memoryview(buf)[: self._end - self._pos]
        backoff = Backoff(self._client.config.retry_seconds)
        while True:
            try:
                if self._resp is None:
                    self._open()
                n: int = self._readinto(buf)
                if n:
                    self._pos += n
                    metrics.read(n)
                    return n
                if self._end is None or self._pos >= self._end:
                    self._end = self._pos
                    self._release()
                    return 0
                raise ConnectionError(f"connection closed early: got {self._pos} of {self._end} bytes")
            except AISWdsError:
                self._drop()
                metrics.count("shards_failed")
                raise
            except Exception as e:  # noqa: BLE001 - classified below
                self._drop()
                never_reached = (not (self._opened or self._client.answered)
                                 and is_gateway_unreachable(e, self._client.endpoint))
                if not is_transient(e) or never_reached:  # a wrong or down endpoint fails fast
                    metrics.count("shards_failed")
                    raise translate(e, self.name, endpoint=self._client.endpoint,
                                    token_source=self._client.config.token_source) from e
                delay = backoff.next_delay()
                if delay is None:
                    metrics.count("shards_failed")
                    raise ReadError(f"gave up after {backoff.attempts + 1} attempts over {backoff.budget:.0f}s "
                                    f"({type(e).__name__}: {e})", url=self.name, offset=self._pos) from e
                self._resumes += 1
                logger.warning("%s: %s at offset %d; resuming in %.1fs (attempt %d)", self.name,
                               type(e).__name__, self._pos, delay, backoff.attempts)
                time.sleep(delay)

    def close(self) -> None:
        if not self.closed:
            self._drop()
        super().close()

    # -- properties --------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Offset in the object of the next byte this raw stream returns."""
        return self._pos

    @property
    def size(self) -> Optional[int]:
        """End offset of the read (the object size for a whole-object read), once known."""
        return self._end

    @property
    def resumes(self) -> int:
        """How many times the stream reconnected after a failure."""
        return self._resumes

    # -- internals --------------------------------------------------------------------------------
    def _open(self) -> None:
        started = time.perf_counter()
        ranged = self._pos > 0 or self._end is not None
        byte_range = None
        if ranged:
            last = "" if self._end is None else str(self._end - 1)
            byte_range = f"bytes={self._pos}-{last}"
        conn = self._client.connections()
        raw, unreachable = conn.open_direct(self._url, self._client.bucket(self._url),
                                            {"Range": byte_range} if byte_range else None)
        raw_is_gateway = raw is None
        if raw is None:  # through the gateway, which redirects to the target
            raw = self._client.object(self._url).get_reader(byte_range=byte_range).raw()
            if unreachable:
                conn.direct_unreachable()
        headers = raw.headers
        version = headers.get("ais-version")
        if self._version is None:
            self._version = version
        elif version and version != self._version:
            raw.close()
            raise ReadError(f"object changed while reading (version {self._version} -> {version})",
                            url=self.name, offset=self._pos, hint="re-run the epoch; the object was overwritten")
        total = _content_range_total(headers.get("Content-Range", ""))
        if total is not None:
            # the object size: a range that asked past the end is cut to it
            self._end = total if self._end is None else min(self._end, total)
        elif self._end is None and not ranged and headers.get("Content-Length") is not None:
            self._end = int(headers["Content-Length"])
        self._resp = raw
        self._readinto = _zero_copy_readinto(raw)
        metrics.get_opened(started, direct=not raw_is_gateway, resumed=self._opened, url=self.name)
        self._opened = True

    def _release(self) -> None:
        """Return the connection to the pool after a complete body."""
        resp, self._resp = self._resp, None
        self._readinto = None
        if resp is not None:
            resp.release_conn()

    def _drop(self) -> None:
        """Discard the current response (the connection is closed unless the body was complete)."""
        resp, self._resp = self._resp, None
        self._readinto = None
        if resp is not None:
            try:
                resp.close()
                resp.release_conn()
            except Exception:  # noqa: BLE001 - best effort on a broken connection
                pass


def _zero_copy_readinto(resp: Any) -> Any:
    """The fastest ``readinto`` for a urllib3 response body.

    urllib3's own ``readinto`` reads a new bytes object and copies it into the buffer (measured ~1.1 s
    of CPU per GB); http.client's fills the buffer directly (~0.25 s/GB). Its length checks stay on
    (``IncompleteRead`` on a short body, retried by the caller). Bodies with a Content-Encoding go
    through urllib3, which decodes them.
    """
    fp = getattr(resp, "_fp", None)
    if fp is not None and hasattr(fp, "readinto") and not resp.headers.get("Content-Encoding"):
        return fp.readinto
    return resp.readinto


def _content_range_total(value: str) -> Optional[int]:
    """The complete length from ``Content-Range: bytes a-b/total``, if given."""
    _, slash, total = value.rpartition("/")
    return int(total) if slash and total.isdigit() else None


def open_object(
    url: Union[str, AISUrl],
    client: Union[Client, str, None] = None,
    *,
    start: int = 0,
    end: Optional[int] = None,
    bufsize: int = DEFAULT_BUFSIZE,
) -> io.BufferedReader:
    """Open ``url`` for sequential reading (see the module docstring for the guarantees).

    Args:
        url: object URL.
        client: a :class:`Client`, an endpoint, or None for the environment default.
        start, end: read only ``[start, end)`` (end exclusive; None = to the end).
        bufsize: read-ahead buffer size; memory use is about this much per open stream.

    Returns:
        A binary file object (``read``, ``readinto``, ``close``, context manager). No request is made
        until the first read.
    """
    raw = ResumingObjectRaw(Client.of(client), url, start, end)
    return io.BufferedReader(raw, buffer_size=bufsize)


def read_range(url: Union[str, AISUrl], start: int, end: int, client: Union[Client, str, None] = None) -> bytearray:
    """Bytes ``[start, end)`` of the object, with resume; exactly ``end - start`` bytes or an error.

    The bytes are read straight into one preallocated buffer (returned as a ``bytearray``).

    Raises:
        ReadError: the object is shorter than ``end``, or retries ran out.
    """
    buf = bytearray(max(end - start, 0))
    if not buf:
        return buf
    view = memoryview(buf)
    got = 0
    with open_object(url, client, start=start, end=end, bufsize=64 << 10) as f:
        while got < len(buf):
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
    if got != len(buf):
        raise ReadError(f"range {start}-{end} returned {got} bytes", url=str(url), offset=start + got,
                        hint="the object is shorter than expected: it changed since it was listed or indexed")
    return buf


def read_bytes(url: Union[str, AISUrl], client: Union[Client, str, None] = None) -> bytes:
    """The whole object as bytes (use :func:`open_object` for large objects)."""
    with open_object(url, client) as f:
        return f.read()


def read_member(url: Union[str, AISUrl], archpath: str, client: Union[Client, str, None] = None) -> bytes:
    """One member of a shard (tar, tgz, tar.lz4, zip) by its path inside the archive (AIS ``archpath``).

    AIS refuses Range with archpath, so a failed read is retried from the start of the member.

    Raises:
        ObjectNotFoundError: the shard or the member does not exist.
        ReadError: retries ran out.
    """
    from aistore.sdk.archive_config import ArchiveConfig

    client = Client.of(client)
    name = f"{url}?archpath={archpath}"
    backoff = Backoff(client.config.retry_seconds)
    while True:
        try:
            data: bytes = client.object(url).get_reader(archive_config=ArchiveConfig(archpath=archpath)).read_all()
            return data
        except AISWdsError:
            raise
        except Exception as e:  # noqa: BLE001 - classified below
            never_reached = not client.answered and is_gateway_unreachable(e, client.endpoint)
            delay = backoff.next_delay() if is_transient(e) and not never_reached else None
            if delay is None:
                raise translate(e, name, endpoint=client.endpoint,
                                token_source=client.config.token_source) from e
            time.sleep(delay)
