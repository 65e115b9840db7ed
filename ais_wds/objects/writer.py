"""The writer core: upload a stream into one AIS object with bounded memory, all or nothing.

``open_writer(url)`` returns a writable binary file object. Bytes are buffered up to ``part_size``;
a small object goes up in one PUT at ``close()``; a larger one goes up as an AIS multipart upload, one
part each time the buffer fills, completed at ``close()``. Memory stays at about ``part_size``
whatever the object size. A ``bytes`` or ``bytearray`` of at least ``part_size`` written while nothing is
buffered goes up as one part as it is (not copied; sent before ``write`` returns).

The object becomes visible only when ``close()`` (or ``commit()``) succeeds. Each of these discards the
upload and leaves no object behind (an existing object of that name stays as it was): ``abort()``; an
exception propagating through the writer's own ``with``; a ``close()`` called from the ``__exit__`` of
another context manager through which an exception is propagating (webdataset's ``TarWriter`` and
``ShardWriter`` close their stream that way, without passing the exception on; the writer looks for that
``__exit__`` frame and its exception on the call stack); a stream dropped without ``close()``. An
exception that is merely being *handled* (``close()``, ``write_bytes`` or ``save_index`` called inside an
``except`` block) never aborts anything.

Every PUT of data goes to the target the gateway redirects to; the request to the gateway carries no
body and nothing is stored by it (a gateway that answers that request with a success instead of a
redirect is not AIS, and the upload fails without sending anything else).

Thread safety: one writer per thread.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from types import FrameType
from typing import Any, Dict, Optional, Union
from urllib.parse import urlsplit

from .._core.retry import Backoff, is_gateway_unreachable, is_transient, translate
from ..client import Client
from ..errors import AISWdsError, AuthError, ObjectNotFoundError, WriteError
from ..urls import AISUrl, parse_url

logger = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 16 << 20


class ObjectWriter(io.RawIOBase):
    """Writable stream into one object; see the module docstring.

    Args:
        client: the :class:`Client`.
        url: destination object URL.
        part_size: bytes buffered before a multipart part is sent (memory bound).

    Raises (from ``write`` / ``close``):
        WriteError: the upload failed; nothing was committed.
    """

    def __init__(self, client: Client, url: Union[str, AISUrl], part_size: int = DEFAULT_PART_SIZE):
        # what close() / __del__ touch is set first, as "done": a constructor that raises (a bad URL) leaves
        # an object that the finaliser (or a close()) closes cleanly, committing nothing
        self._buf = bytearray()
        self._mpu: Any = None
        self._done = True
        super().__init__()
        self._client = client
        self._url = parse_url(url)
        self.name = str(self._url)
        self._part_size = part_size
        self._parts = 0
        self._written = 0
        self._requests_ok = 0
        self._done = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed or self._done:
            raise ValueError(f"write to closed writer {self.name}")
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        self._written += n
        if not self._buf and n >= self._part_size and isinstance(data, (bytes, bytearray)):
            self._flush_part(data)  # a whole part already: it goes out as it is, not copied (sent before returning)
            return n
        self._buf += data
        if len(self._buf) >= self._part_size:
            self._flush_part()
        return n

    @property
    def bytes_written(self) -> int:
        return self._written

    def commit(self) -> None:
        """Upload what is buffered and make the object visible. Idempotent."""
        if self._done:
            return
        self._done = True
        try:
            if self._mpu is None:
                data = bytes(self._buf)
                self._retry("PUT", lambda: self._put(data))
            else:
                if self._buf:
                    self._flush_part()
                self._retry("complete multipart upload", self._mpu.complete)
        except BaseException:
            self._abort_quietly()
            raise
        finally:
            self._buf = bytearray()
        logger.debug("committed %s (%d bytes, %d parts)", self.name, self._written, self._parts)

    def abort(self) -> None:
        """Discard everything written; no object is created. Idempotent."""
        if not self._done:
            self._done = True
            self._abort_quietly()
        self._buf = bytearray()

    def close(self) -> None:
        """Commit, unless an exception is propagating through an enclosing ``__exit__`` (then abort);
        see the module docstring. Idempotent."""
        if self.closed:
            return
        try:
            exc = sys.exc_info()[1]
            if exc is not None and not self._done and _propagating_through_exit(exc):
                logger.warning("%s: closed while %s propagates; upload aborted", self.name, type(exc).__name__)
                self.abort()
            else:
                self.commit()
        finally:
            super().close()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
        self.close()

    def __del__(self) -> None:
        # a writer dropped without close() must not commit a partial object
        if not self.closed:
            try:
                self.abort()
                super().close()
            except Exception:  # noqa: BLE001
                pass

    # -- internals --------------------------------------------------------------------------------
    def _flush_part(self, whole: Union[bytes, bytearray, None] = None) -> None:
        """Upload the buffer (or ``whole``, a part the caller wrote in one piece) as the next part."""
        if self._mpu is None:
            self._mpu = self._retry("create multipart upload",
                                    lambda: self._client.object(self._url).multipart_upload().create())
        self._parts += 1
        # the buffer itself goes out (requests sends a bytearray as is, with its Content-Length): no copy
        number, data = self._parts, self._buf if whole is None else whole
        self._buf = bytearray()
        try:
            params = {"uploadId": self._mpu.upload_id, "partNumber": str(number)}
            self._retry(f"upload part {number}", lambda: self._put(data, params))
            self._mpu.parts.append(number)
        except BaseException:
            self._done = True
            self._abort_quietly()
            raise

    def _put(self, data: Union[bytes, bytearray], params: Optional[Dict[str, str]] = None) -> None:
        """PUT ``data`` to the target that owns the object.

        The gateway answers every PUT with a redirect to a target. Sending the body to the gateway first
        (what requests does; it has no ``Expect: 100-continue``) costs a full extra transfer, measured at
        ~7x slower for 64 MiB on loopback. So the body-less request asks for the redirect and the body
        goes once, to the target.
        """
        session = self._client.http
        url = self._client.object(self._url).get_url()
        timeout = (self._client.config.connect_timeout, self._client.config.read_timeout)
        resp = session.put(url, params=params, data=b"", allow_redirects=False, timeout=timeout)
        if resp.is_redirect and resp.headers.get("Location"):
            resp = session.put(resp.headers["Location"], data=data, allow_redirects=False, timeout=timeout)
            if resp.ok and not resp.is_redirect:
                return
        elif resp.ok:
            raise WriteError(f"the gateway answered HTTP {resp.status_code} to a PUT without redirecting it to a "
                             "target: not an AIS gateway; nothing was sent", url=self.name,
                             hint="check AIS_ENDPOINT")
        if resp.is_redirect:
            raise WriteError(f"unexpected redirect (HTTP {resp.status_code}) from the target", url=self.name)
        from aistore.sdk.response_handler import AISResponseHandler

        raise AISResponseHandler().parse_error(resp)

    def _retry(self, what: str, fn: Any) -> Any:
        backoff = Backoff(self._client.config.retry_seconds)
        while True:
            try:
                result = fn()
                self._requests_ok += 1
                return result
            except AISWdsError:
                raise
            except Exception as e:  # noqa: BLE001 - classified below
                never_reached = (self._requests_ok == 0 and not self._client.answered
                                 and is_gateway_unreachable(e, self._client.endpoint))
                delay = backoff.next_delay() if is_transient(e) and not never_reached else None
                if delay is None:
                    err = translate(e, self.name, endpoint=self._client.endpoint,
                                    token_source=self._client.config.token_source)
                    if isinstance(err, AuthError):  # the same at every retry: say so at once, as reads do
                        raise err from e
                    tries = f"{backoff.attempts + 1} attempts over {backoff.budget:.0f}s"
                    reset = _reset_mid_request(e)
                    if reset is not None:
                        node = "the gateway" if reset == urlsplit(self._client.endpoint).netloc else "the target"
                        raise WriteError(
                            f"{what} failed: the connection to {node} {reset} broke mid-upload ({_cause(e)}) at the "
                            f"last of {tries}; each attempt resent the data from its first byte",
                            url=self.name, hint="nothing was committed; check that the cluster's targets are up "
                            "(ais show cluster) and retry the write (AIS_WDS_RETRY_SECONDS sets how long a write "
                            "keeps retrying)") from e
                    raise WriteError(f"{what} failed after {tries}: {err.message}", url=self.name,
                                     hint="nothing was committed; retry the write") from e
                logger.warning("%s: %s failed (%s); retrying", self.name, what, type(e).__name__)
                time.sleep(delay)

    def _abort_quietly(self) -> None:
        mpu, self._mpu = self._mpu, None
        if mpu is not None:
            try:
                mpu.abort()
            except Exception as e:  # noqa: BLE001 - the upload is unfinished either way
                logger.warning("%s: could not abort multipart upload: %s", self.name, e)


def _reset_mid_request(exc: BaseException) -> Optional[str]:
    """``host:port`` of the node whose connection broke after it was made (reset, aborted, timed out
    reading the answer), or None when the connection was never made (refused, unreachable: the
    endpoint's "cannot connect" is the right message then) or ``exc`` is not a connection failure."""
    import requests

    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)):
        return None
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        if "Connection aborted" not in text and "reset" not in text.lower():
            return None  # NewConnectionError: refused or unreachable
    elif not isinstance(exc, (requests.exceptions.ReadTimeout, requests.exceptions.ChunkedEncodingError,
                              ConnectionResetError)):
        return None
    url = getattr(getattr(exc, "request", None), "url", None) or ""
    return urlsplit(url).netloc or "AIS"


def _cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error: ``ConnectionResetError(104, 'Connection reset by
    peer')``, ``Read timed out``, ..."""
    import re

    text = " ".join(str(exc).split())
    m = re.search(r"(ConnectionResetError|BrokenPipeError)\(\d+, '[^']*'\)|Read timed out|IncompleteRead\([^)]*\)",
                  text)
    return m.group(0) if m else f"{type(exc).__name__}: {text[:200]}"


_EXIT_FRAMES = 12
"""Frames above ``close()`` searched for the ``__exit__`` an exception propagates through."""


def _propagating_through_exit(exc: BaseException) -> bool:
    """True when a caller up the stack is an ``__exit__`` (or ``__aexit__``) that was handed ``exc``:
    the exception is leaving a ``with`` block, not being handled in an ``except`` block."""
    frame: Optional[FrameType] = sys._getframe(2)
    for _ in range(_EXIT_FRAMES):
        if frame is None:
            return False
        if frame.f_code.co_name in ("__exit__", "__aexit__"):
            for value in frame.f_locals.values():
                if value is exc or (isinstance(value, tuple) and any(v is exc for v in value)):
                    return True
        frame = frame.f_back
    return False


def open_writer(url: Union[str, AISUrl], client: Union[Client, str, None] = None, *,
                part_size: int = DEFAULT_PART_SIZE) -> ObjectWriter:
    """Open ``url`` for writing; see the module docstring for the all-or-nothing guarantee."""
    return ObjectWriter(Client.of(client), url, part_size)


def write_bytes(url: Union[str, AISUrl], data: bytes, client: Union[Client, str, None] = None) -> None:
    """Upload ``data`` as object ``url`` in one PUT (with retries).

    Raises:
        WriteError: the upload failed.
    """
    w = open_writer(url, client, part_size=max(len(data) + 1, 1))
    try:
        w.write(data)
        w.commit()
    finally:
        w.close()


def delete_object(url: Union[str, AISUrl], client: Union[Client, str, None] = None, *,
                  missing_ok: bool = True) -> None:
    """Delete object ``url``.

    Raises:
        ObjectNotFoundError: it does not exist (only when ``missing_ok`` is False).
        ConnectError, RequestError: from AIS.
    """
    client = Client.of(client)
    try:
        client.object(url).delete()
    except Exception as e:  # noqa: BLE001 - translated into the typed hierarchy
        err = translate(e, str(url), endpoint=client.endpoint,
                        token_source=client.config.token_source)
        if missing_ok and isinstance(err, ObjectNotFoundError):
            return
        raise err from None
