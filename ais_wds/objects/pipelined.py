"""Byte ranges of objects by range GETs pipelined on keep-alive connections straight to the owning targets
(the objects layer's fastest random-access transport; :class:`ais_wds.objects.ranges.RangeGetter` uses it
first).

Why: a target serves a plain range GET of a whole-file object with ``sendfile`` (AIS >= 4.7), and a
pipelined request costs the client only a request line to format and a response head to parse. Measured
here (one process, all samples of a shard set in a random order; client CPU / aisnode CPU per sample and
samples/s; the machine shared and loaded, so ranges): 10 KiB samples 24-36 us / 40-78 us, 8-22k samples/s,
against GetBatch byte ranges (256 per request, 8 in flight) 24-49 us / 45-106 us, 4-18k; 100 KiB samples
61-89 us / 68-234 us, 4-11k, against 121-209 us / 68-448 us, 1.5-5k. GetBatch pays per entry for the JSON
entry parsed by the gateway and by every target and for a transfer between targets for the entries the
designated target does not hold, and per byte for a reply written through the HTTP chunk writer in small
pieces, which the client must then decode (docs/ais5.md has the profiles).

How: the ranges of one call are grouped by the target that owns their object (HRW on the cluster map, as
the SDK's direct reads do), sorted by object and offset, and neighbouring ranges of one object (at most
:data:`COALESCE_GAP` bytes apart, at most :data:`COALESCE_MAX` bytes merged) become one request, split
here. Each group's requests are written at once on one kept-alive connection to its target, then the
responses are read in order (HTTP/1.1 pipelining; the Go server answers them one after another).

Why by hand, on raw sockets: the gain is pipelining itself (many requests written before the first
answer is read), and the well-kept Python HTTP clients do not pipeline. Checked: h11's API docs ("Re-using a
connection: keep-alive and pipelining"): as a client it does not pipeline, by its state machine: a second
request cannot be sent before ``start_next_cycle``, which needs the server's whole response read;
aiohttp: its client does not pipeline (merged pull requests aio-libs/aiohttp#1284, whose author notes that
a connection is reused only once a response is released, and #3691, which says so in its client docs);
urllib3 2.x
(``connectionpool.py``) lends a pooled connection to one request (``_get_conn``) and takes it back after
the response (``_put_conn``), and requests sends through urllib3's pools; httpx: no pipelining option
found, and its maintainer's advice for such requests (encode/httpx#1167) was to send them one after
another. What is parsed here is only what this module asks for (GETs with one ``Range``; answers framed
by one ``Content-Length``), and nothing else is believed:

* a range's bytes come only from a 206 whose ``Content-Range`` names exactly the asked bytes and whose one
  numeric ``Content-Length`` is the asked length (or a 200 of exactly that length for a range from 0);
  any other success, a ``Transfer-Encoding``, a second ``Content-Length`` or a malformed head drops the
  connection and leaves that range and the ones after it on that connection to the caller's fallback;
* a connection found out of step (no status line where a response must start, bytes after the last
  response) also voids the body read just before it (a body longer than its ``Content-Length`` said);
  bytes that arrive after that last check are found when the connection is next used (its first head
  does not parse: it is dropped and the requests sent again on a new one), by which time the body before
  them has been returned: the one case not covered;
* no hang: connecting is bounded by the client's ``connect_timeout``, every send and every receive by its
  ``read_timeout`` (a target that accepts and never answers costs one call one ``read_timeout``: the
  call's other connections are then closed unread, and the path is off for :data:`OFF_SECONDS`); a target
  that trickles bytes is bounded per receive only;
* secrets: the bearer token goes into the request bytes only (checked as an RFC 6750 token68 by the
  config, so it cannot break a header line; object names are percent-encoded by the cluster map's
  ``direct_url``); no log line, exception message or repr of this module holds a header, and an instance
  pickles its client only (whose config carries the token for worker processes, as every front end's
  does);
* TLS: the client's ``ca_cert`` is the only trust store when given (``ssl.create_default_context(cafile=)``;
  ``REQUESTS_CA_BUNDLE`` is requests' variable and plays no part here), hostnames are checked, and both
  checks are off only with the client's ``skip_verify``.

What it does not do: retries and error classification. :meth:`RangePipeline.fetch` returns ``None`` for
every range it could not read as asked (an answer other than 206/200 with the asked length, a connection
that broke, a namespaced bucket, no cluster map) and says whether the direct path was unavailable, so
the caller reads those ranges by a path that classifies errors (GetBatch, or the reader core's range GET
with its resumes and typed errors). A target that refuses connections turns the path off for
:data:`OFF_SECONDS` (targets unreachable from this client: behind a Kubernetes service, restarting); one
that answers 403 turns every direct path of the client off (``Connections.deny_direct``, shared with the
reader core and ``DirectGetter``: a cluster with authentication denies requests that did not come through
the gateway).

Thread safety: one instance may be used by many threads (a connection serves one call at a time; idle
ones wait in a per-process pool, shared by all instances). Process safety: the pool is per process
(:class:`~ais_wds._core.process_local.ProcessLocal`); an instance pickles its client only.
"""

from __future__ import annotations

import atexit
import logging
import socket
import ssl
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from .._core.process_local import ProcessLocal
from ..client import Client
from ..metrics import core as metrics
from ..urls import parse_url

logger = logging.getLogger(__name__)

COALESCE_GAP = 4096
"""Neighbouring ranges of one object at most this many bytes apart are read by one request."""
COALESCE_MAX = 4 << 20
"""The largest merged request, in bytes."""
OFF_SECONDS = 30.0
"""Seconds the pipelined path stays off after a target refused a connection."""
BUFFER = 256 << 10
"""Bytes of a connection's receive buffer (response heads and small bodies are parsed from it)."""
MAX_HEAD = 64 << 10
"""A response head longer than this is not an AIS answer: the connection is dropped."""
MAX_ERROR_BODY = 1 << 20
"""An error answer (404, 403, ...) with a longer body is not an AIS answer: the connection is dropped."""
_ROUTES_MAX = 1 << 16

PIPELINE_MAX = 128
"""Most requests written at once on one connection: all of them fit in the target's receive buffer, so
writing them never waits for the target, which may be waiting for this client to read its answers."""
IDLE_PER_TARGET = 64
"""Idle kept-alive connections kept per target and process (more are closed when handed back)."""

Range = Tuple[str, int, int]
Target = Tuple[str, str, int]  # (scheme, host, port)
Route = Tuple[Target, str]  # (target, path with query)
Request = Tuple[str, int, int, List[Tuple[int, int, int]]]  # (path, start, end, [(slot, start, length)...])


class RangePipeline:
    """Range GETs pipelined straight to the targets (see the module docstring).

    Args:
        client: the cluster.
    """

    def __init__(self, client: Client):
        self.client = client
        self._off_until = 0.0
        self._stalled_since = 0.0  # perf_counter when a target last let a receive time out
        self._routes: Dict[Tuple[int, str], Optional[Route]] = {}  # (map version, url) -> route
        self.requests = 0  # HTTP requests sent (this process; diagnostics)

    def __getstate__(self) -> Dict[str, Any]:
        return {"client": self.client}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(state["client"])  # type: ignore[misc]

    def available(self) -> bool:
        """False while the path is off (a target refused a connection lately, or targets deny direct
        requests: ``Connections.direct_allowed``)."""
        return time.monotonic() >= self._off_until and self.client.connections().direct_allowed()

    def fetch(self, ranges: Sequence[Range]) -> Tuple[List[Optional[bytes]], bool]:
        """Read ``ranges`` (``(url, start, length)``); item ``i`` of the list is the bytes of ``ranges[i]``
        or None where this path could not read it. The flag is True when ranges were left unread because
        the direct path is unavailable (no cluster map, namespaced bucket, a target unreachable): the
        caller should try another batched path before reading them one by one."""
        out: List[Optional[bytes]] = [None] * len(ranges)
        if not self.available():
            return out, True
        conn = self.client.connections()
        smap = conn.cluster_map()
        if smap is None:
            return out, True
        groups: Dict[Target, List[Tuple[str, int, int, int]]] = {}
        unroutable = False
        for i, (url, start, length) in enumerate(ranges):
            if length <= 0:
                out[i] = b""
                continue
            route = self._route(conn, smap, url)
            if route is None:
                unroutable = True
                continue
            groups.setdefault(route[0], []).append((route[1], start, length, i))
        if not groups:
            return out, unroutable
        started = time.perf_counter()
        pool = _POOL.get()
        sent = []
        for target, items in groups.items():
            key = self._key(target)
            merged = _coalesce(items)
            for k in range(0, len(merged), PIPELINE_MAX):
                requests = merged[k:k + PIPELINE_MAX]
                c, fresh = self._send(pool, key, target, requests, conn.headers)
                if c is None:
                    unroutable = True
                    continue
                sent.append((key, target, requests, c, fresh))
        served = 0
        for key, target, requests, c, fresh in sent:
            if self._stalled_since >= started:  # a target of this call did not answer: no second wait
                c.close()
                unroutable = True
                continue
            done, c = self._receive(target, c, requests, out)
            if done == 0 and not fresh and self._stalled_since < started:  # a kept-alive connection the target
                # had closed: once more
                c, fresh = self._send(pool, key, target, requests, conn.headers, reuse=False)
                if c is None:
                    unroutable = True
                    continue
                done, c = self._receive(target, c, requests, out)
            if c is not None:
                pool.put(key, c)
            served += done
        if served:
            metrics.get_done(started, sum(len(b) for b in out if b), direct=True)
        return out, unroutable or not self.available()  # (turned off by a denial: GetBatch next)

    # -- internals ---------------------------------------------------------------------------------
    def _route(self, conn: Any, smap: Any, url: str) -> Optional[Route]:
        key = (getattr(smap, "version", 0), url)
        route = self._routes.get(key, False)
        if route is not False:
            return route  # type: ignore[return-value]
        u = parse_url(url)
        route = None
        if not u.has_namespace and u.path:
            direct = conn.direct_url(u, self.client.bucket(u))
            if direct is not None:
                sp = urlsplit(direct)
                route = ((sp.scheme, sp.hostname or "", sp.port or (443 if sp.scheme == "https" else 80)),
                         f"{sp.path}?{sp.query}" if sp.query else sp.path)
        if len(self._routes) >= _ROUTES_MAX:
            self._routes.clear()
        self._routes[key] = route
        return route

    def _key(self, target: Target) -> Tuple[Any, ...]:
        cfg = self.client.config
        return (*target, cfg.ca_cert, cfg.skip_verify) if target[0] == "https" else target

    def _connect(self, target: Target) -> _Conn:
        scheme, host, port = target
        cfg = self.client.config
        s = socket.create_connection((host, port), timeout=cfg.connect_timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            if cfg.skip_verify:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx = ssl.create_default_context(cafile=cfg.ca_cert) if cfg.ca_cert else ssl.create_default_context()
            s = ctx.wrap_socket(s, server_hostname=host)
        s.settimeout(cfg.read_timeout)
        return _Conn(s)

    def _send(self, pool: _Pool, key: Tuple[Any, ...], target: Target, requests: List[Request],
              headers: Dict[str, str], reuse: bool = True) -> Tuple[Optional[_Conn], bool]:
        """Write every request of one target; returns (connection, fresh) or (None, _) when unreachable."""
        host = f"{target[1]}:{target[2]}"
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        data = "".join(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nRange: bytes={start}-{end - 1}\r\n{extra}\r\n"
                       for path, start, end, _ in requests).encode()
        for attempt in range(2):
            c = pool.take(key) if reuse and attempt == 0 else None
            fresh = c is None
            if c is None:
                try:
                    c = self._connect(target)
                except OSError as e:  # refused, timed out, no such host, TLS handshake failed
                    self._unreachable(target, e)
                    return None, True
            try:
                c.sock.sendall(data)
                self.requests += len(requests)
                return c, fresh
            except OSError as e:
                logger.debug("pipelined range GETs to %s: send failed (%s); reconnecting", host, type(e).__name__)
                c.close()
        return None, True

    def _unreachable(self, target: Target, e: BaseException) -> None:
        self._off_until = time.monotonic() + OFF_SECONDS
        self.client.connections().refresh_cluster_map_soon()
        logger.debug("target %s:%d refused a connection (%s); pipelined range GETs off for %.0fs", target[1],
                     target[2], type(e).__name__, OFF_SECONDS)

    def _receive(self, target: Target, c: _Conn, requests: List[Request],
                 out: List[Optional[bytes]]) -> Tuple[int, Optional[_Conn]]:
        """Read the responses in order into ``out``; returns how many responses were read and the
        connection when it can be used again (None: closed). An answer that is not the asked one ends the
        connection (the ranges from it on are left None); one found out of step (no status line where a
        response must start, bytes after the last response) also voids the response read just before,
        whose body may have held the stray bytes' place."""
        done = 0
        last: List[int] = []  # the slots filled from the previous response
        try:
            for path, start, end, members in requests:
                status, body, keep = c.response(start, end - start)
                done += 1
                last = []
                if body is not None:
                    if len(members) == 1:
                        out[members[0][0]] = bytes(body)
                    else:
                        view = memoryview(body)
                        for i, s, n in members:
                            out[i] = bytes(view[s - start:s - start + n])
                    last = [i for i, _, _ in members]
                else:
                    logger.debug("pipelined range GET %s bytes %d-%d answered %d; read otherwise", path, start,
                                 end - 1, status)
                    if status in (404, 400):
                        self.client.connections().refresh_cluster_map_soon()
                    elif status == 403 and self.available():
                        logger.debug("target %s:%d denied a direct request (403); direct requests off for this "
                                     "client", target[1], target[2])
                        self.client.connections().deny_direct(f"target {target[1]}:{target[2]} answered 403 to "
                                                              "a pipelined range GET")
                if not keep:
                    break
            else:
                if not c.stray():
                    return done, c
                raise _OutOfStep("bytes after the last response")
        except ValueError as e:
            if isinstance(e, _OutOfStep):  # the previous body may have held the stray bytes' place
                for i in last:
                    out[i] = None
            logger.debug("pipelined range GETs to %s:%d: an answer that is not the asked one after %d of %d "
                         "responses (%s); the connection is dropped", target[1], target[2], done, len(requests), e)
        except (OSError, EOFError) as e:
            if isinstance(e, socket.timeout):  # a target that does not answer: not again for a while
                self._off_until = max(self._off_until, time.monotonic() + OFF_SECONDS)
                self._stalled_since = time.perf_counter()
            logger.debug("pipelined range GETs to %s:%d broke off after %d of %d responses (%s: %s)", target[1],
                         target[2], done, len(requests), type(e).__name__, e)
        c.close()
        return done, None


def _coalesce(items: List[Tuple[str, int, int, int]]) -> List[Request]:
    """``(path, start, length, slot)`` items -> requests ``(path, start, end, [(slot, start, length)...])``,
    sorted by object and offset, neighbours merged."""
    items.sort(key=lambda t: (t[0], t[1]))
    requests: List[Request] = []
    for path, start, length, slot in items:
        end = start + length
        if requests:
            p, s, e, members = requests[-1]
            if p == path and start - e <= COALESCE_GAP and max(e, end) - s <= COALESCE_MAX and start >= s:
                requests[-1] = (p, s, max(e, end), members)
                members.append((slot, start, length))
                continue
        requests.append((path, start, end, [(slot, start, length)]))
    return requests


class _OutOfStep(ValueError):
    """No response head where one must start: a body before was longer than its Content-Length said."""


def _field(head: bytes, name: bytes) -> List[bytes]:
    """The values of every header ``name`` (``b"\\r\\nname:"``, lower case) in a lower-cased head, stripped."""
    out = []
    j = head.find(name)
    while j >= 0:
        k = head.find(b"\r\n", j + len(name))
        out.append(head[j + len(name):k if k >= 0 else None].strip())
        j = head.find(name, j + len(name))
    return out


class _Conn:
    """One keep-alive HTTP/1.1 connection: pipelined responses parsed from a reused buffer."""

    __slots__ = ("sock", "buf", "view", "a", "e")

    def __init__(self, sock: Any):
        self.sock = sock
        self.buf = bytearray(BUFFER)
        self.view = memoryview(self.buf)
        self.a = self.e = 0  # received, not yet parsed: buf[a:e]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self) -> None:
        if self.a == self.e:
            self.a = self.e = 0
        elif self.e == len(self.buf):
            n = self.e - self.a
            self.view[:n] = self.view[self.a:self.e]
            self.a, self.e = 0, n
        k = self.sock.recv_into(self.view[self.e:])
        if not k:
            raise EOFError("the target closed the connection")
        self.e += k

    def response(self, start: int, expected: int) -> Tuple[int, Optional[bytearray], bool]:
        """The next response to a ``Range: bytes=start-(start+expected-1)`` request: ``(status, body,
        keep-alive)``. The body is returned only for a 206 whose ``Content-Range`` names exactly the asked
        bytes and whose ``Content-Length`` is ``expected`` (or a 200 of exactly ``expected`` bytes for a
        range from 0: the whole object); an error answer's body (at most :data:`MAX_ERROR_BODY` bytes) is
        skipped and None returned. Raises ValueError for anything that is not such an answer (the
        connection cannot be trusted to be in step any more), EOFError/OSError when it broke."""
        while True:
            i = self.buf.find(b"\r\n\r\n", self.a, self.e)
            if i >= 0:
                break
            if self.e - self.a > MAX_HEAD:
                raise ValueError("a response head longer than 64 KiB")
            self._fill()
        head = bytes(self.view[self.a:i]).lower()
        self.a = i + 4
        if not head.startswith(b"http/1.1 ") or not head[9:12].isdigit() or head[12:13] not in (b" ", b"\r", b""):
            raise _OutOfStep(f"not an HTTP/1.1 status line ({len(head)} bytes of head)")
        status = int(head[9:12])
        keep = b"\r\nconnection: close" not in head
        if b"\r\ntransfer-encoding:" in head:
            raise ValueError("a response with Transfer-Encoding")  # not one we asked for: cannot be framed here
        lengths = _field(head, b"\r\ncontent-length:")
        if len(lengths) != 1 or not lengths[0].isdigit():
            if not lengths and (status in (204, 304) or 100 <= status < 200):
                return status, None, keep
            raise ValueError("a response without exactly one Content-Length")
        length = int(lengths[0])
        if status not in (200, 206):
            if length > MAX_ERROR_BODY:
                raise ValueError(f"an error answer of {length} bytes")
            self._skip(length)
            return status, None, keep
        if length != expected:
            raise ValueError(f"{length} bytes answered for {expected} asked")
        if status == 206:
            ranges = _field(head, b"\r\ncontent-range:")
            asked = b"bytes %d-%d/" % (start, start + expected - 1)
            if len(ranges) != 1 or not ranges[0].startswith(asked):
                raise ValueError("a Content-Range other than the asked one")
        elif start != 0:
            raise ValueError("a whole object (200) answered for a range not from 0")
        body = bytearray(length)
        got = min(length, self.e - self.a)
        body[:got] = self.view[self.a:self.a + got]
        self.a += got
        if got < length:
            bview = memoryview(body)
            while got < length:
                n = self.sock.recv_into(bview[got:])
                if not n:
                    raise EOFError("the target closed the connection mid-body")
                got += n
        return status, body, keep

    def stray(self) -> bool:
        """True when bytes no request asked for are already here after the last response (a response
        longer than its Content-Length said: the connection is out of step)."""
        if self.a != self.e:
            return True
        if isinstance(self.sock, ssl.SSLSocket):
            return self.sock.pending() > 0
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0)  # (a socket with a timeout waits for data even with MSG_DONTWAIT)
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(timeout)

    def _skip(self, length: int) -> None:
        while length > 0:
            if self.a == self.e:
                self._fill()
            n = min(length, self.e - self.a)
            self.a += n
            length -= n


class _Pool:
    """This process's idle connections, per target (shared by every RangePipeline and thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: Dict[Tuple[Any, ...], List[_Conn]] = {}

    def take(self, key: Tuple[Any, ...]) -> Optional[_Conn]:
        with self.lock:
            conns = self.idle.get(key)
            return conns.pop() if conns else None

    def put(self, key: Tuple[Any, ...], conn: _Conn) -> None:
        with self.lock:
            conns = self.idle.setdefault(key, [])
            if len(conns) < IDLE_PER_TARGET:
                conns.append(conn)
                return
        conn.close()

    def close_all(self) -> None:
        with self.lock:
            conns = [c for cs in self.idle.values() for c in cs]
            self.idle.clear()
        for c in conns:
            c.close()


_POOL: ProcessLocal[_Pool] = ProcessLocal(_Pool)


@atexit.register
def _close_idle() -> None:
    _POOL.get().close_all()
