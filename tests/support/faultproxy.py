"""A TCP fault proxy for the fault catalogue: cuts connections at random byte offsets and stalls them.

:class:`FaultProxy` listens on 127.0.0.1 in front of an AIS gateway; the client's endpoint points at it.
AIS answers every object GET and PUT with a redirect to the target that owns the object, so the proxy
rewrites the ``Location`` header of those redirects to relays of its own, one per target, started on
demand. Clients also GET objects straight from their target, at the address the cluster map gives
(``GET /v1/daemon?what=smap``): the proxy rewrites each target's public address in that map to the
target's relay (placement hashes node ids, not addresses, so the client still picks the right
target). Every byte between the client and a target (direct GETs and their range resumes, redirected
reads, batch GET replies, uploaded parts) then crosses a relay that can cut or stall it. Only
``Location`` headers and the targets' public addresses in cluster maps are rewritten; other bodies
are relayed untouched. Each relayed request gets ``Connection:
close`` (one request per TCP connection, so a relay never has to parse bodies to find the next head).

Faults are bounded in count and time and stop by themselves: at most ``cuts`` cuts and ``stalls``
stalls, only during the first ``duration`` seconds; each one is planned for a connection with
probability ``rate`` at an offset drawn uniformly from ``[0, max_offset)`` bytes of the response (head
and body; a cut inside an upload's answer comes after AIS stored the object) or, for half of the
uploads, of the request body; a connection that ends before its offset is not cut and is not
counted. A cut closes both sides with a TCP reset; a stall holds the stream ``stall_seconds``. After
``lifetime`` seconds the proxy closes itself. Faults go to target relays only unless ``gateway=True``.

Standard library only; threads. Not a test itself: ``tests/system/test_faults.py`` and ``make soak`` use it.
"""

from __future__ import annotations

import json
import random
import re
import socket
import struct
import threading
import time
from typing import Dict, List, Optional, Tuple

_LOCATION = re.compile(rb"(\r\nLocation: https?://)([^/\r\n]+)", re.IGNORECASE)
_CONNECTION = re.compile(rb"\r\nConnection:[^\r\n]*", re.IGNORECASE)
_CONTENT_LENGTH = re.compile(rb"\r\nContent-Length:[^\r\n]*", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\nTransfer-Encoding: *chunked", re.IGNORECASE)
_SMAP_REQUEST = re.compile(rb"GET /v1/daemon\?(?:[^ ]*&)?what=smap[& ]")


class FaultProxy:
    """See the module docstring.

    Args:
        upstream: ``host:port`` of the AIS gateway.
        cuts, stalls: how many of each to inject, at most.
        rate: probability that a relayed connection gets a planned fault (while the budget lasts).
        max_offset: faults land at a uniform byte offset below this.
        stall_seconds: how long a stall holds the stream.
        duration: faults are injected only during the first ``duration`` seconds.
        lifetime: the proxy closes itself after this many seconds.
        gateway: also inject faults on the gateway's own connections (listing, HEAD, redirects).
        seed: the random seed (offsets and choices are reproducible for one request order).
    """

    def __init__(self, upstream: str, *, cuts: int = 0, stalls: int = 0, rate: float = 0.5,
                 max_offset: int = 1 << 20, stall_seconds: float = 1.0, duration: float = 300.0,
                 lifetime: float = 1800.0, gateway: bool = False, seed: int = 0):
        self.upstream = upstream
        self.cuts_left = cuts
        self.stalls_left = stalls
        self.rate = rate
        self.max_offset = max_offset
        self.stall_seconds = stall_seconds
        self.gateway_faults = gateway
        self.cuts = 0  # injected so far
        self.stalls = 0
        self.connections = 0
        self.target_connections = 0  # relayed to targets: direct GETs + redirected requests
        self.redirects = 0  # Location headers rewritten (requests that went through the gateway)
        self.cluster_maps = 0  # cluster maps rewritten (clients then GET straight from the relays)
        self.fault_log: List[Tuple[str, str, int]] = []  # (kind, relay upstream, offset)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._relays: Dict[str, _Relay] = {}
        self._started = time.monotonic()
        self._fault_until = self._started + duration
        self._closed = False
        self._gateway = self._relay(upstream, is_gateway=True)
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()

    @property
    def endpoint(self) -> str:
        """The URL to give the client as its AIS endpoint."""
        return f"http://127.0.0.1:{self._gateway.port}"

    def close(self) -> None:
        """Stop listening and relaying. Idempotent."""
        self._closed = True
        self._timer.cancel()
        with self._lock:
            relays = list(self._relays.values())
        for relay in relays:
            relay.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------
    def _relay(self, upstream: str, is_gateway: bool = False) -> _Relay:
        with self._lock:
            relay = self._relays.get(upstream)
            if relay is None:
                relay = self._relays[upstream] = _Relay(self, upstream, is_gateway)
            return relay

    def rewrite_cluster_map(self, body: bytes) -> bytes:
        """A cluster map (JSON) with each target's public address replaced by its relay's."""
        smap = json.loads(body)
        self.cluster_maps += 1
        for node in (smap.get("tmap") or {}).values():
            pub = node.get("public_net") or {}
            if pub.get("node_ip_addr") and pub.get("daemon_port"):
                port = self._relay(f"{pub['node_ip_addr']}:{pub['daemon_port']}").port
                scheme = pub.get("direct_url", "http://").split("://", 1)[0]
                node["public_net"] = {**pub, "node_ip_addr": "127.0.0.1", "daemon_port": str(port),
                                      "direct_url": f"{scheme}://127.0.0.1:{port}"}
        return json.dumps(smap).encode()

    def rewrite_location(self, head: bytes) -> bytes:
        def swap(m: re.Match) -> bytes:
            self.redirects += 1
            return m.group(1) + f"127.0.0.1:{self._relay(m.group(2).decode()).port}".encode()

        return _LOCATION.sub(swap, head)

    def plan(self, is_gateway: bool) -> Optional[Tuple[str, int]]:
        """A fault for one new connection: ``("cut" | "stall", offset)`` or None."""
        if is_gateway and not self.gateway_faults:
            return None
        with self._lock:
            if time.monotonic() > self._fault_until or self._rng.random() >= self.rate:
                return None
            kinds = (["cut"] if self.cuts_left > 0 else []) + (["stall"] if self.stalls_left > 0 else [])
            if not kinds:
                return None
            return self._rng.choice(kinds), self._rng.randrange(self.max_offset)

    def record(self, kind: str, upstream: str, offset: int) -> bool:
        """Count a fault that is about to happen; False if the budget ran out meanwhile."""
        with self._lock:
            if kind == "cut":
                if self.cuts_left <= 0:
                    return False
                self.cuts_left -= 1
                self.cuts += 1
            else:
                if self.stalls_left <= 0:
                    return False
                self.stalls_left -= 1
                self.stalls += 1
            self.fault_log.append((kind, upstream, offset))
            return True


class _Relay:
    """One listening socket relaying to one upstream ``host:port``."""

    def __init__(self, proxy: FaultProxy, upstream: str, is_gateway: bool):
        self.proxy = proxy
        host, _, port = upstream.rpartition(":")
        self.upstream = upstream
        self.address = (host, int(port))
        self.is_gateway = is_gateway
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name=f"faultproxy-{self.port}").start()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while not self.proxy._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.proxy.connections += 1
            if not self.is_gateway:
                self.proxy.target_connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: Optional[socket.socket] = None
        try:
            head, rest = _read_head(client)
            if head is None:
                return
            method = head.split(b" ", 1)[0]
            head = _CONNECTION.sub(b"", head[:-4]) + b"\r\nConnection: close\r\n\r\n"
            upstream = socket.create_connection(self.address, timeout=30)
            upstream.settimeout(None)
            fault = self.proxy.plan(self.is_gateway)
            upload = method in (b"PUT", b"POST") and fault is not None and random.random() < 0.5
            upstream.sendall(head)
            sender = threading.Thread(target=self._pipe_request, daemon=True,
                                      args=(client, upstream, rest, fault if upload else None))
            sender.start()
            if self.is_gateway and _SMAP_REQUEST.match(head):
                self._relay_cluster_map(upstream, client)
            else:
                self._pipe_response(upstream, client, None if upload else fault)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def _pipe_request(self, client: socket.socket, upstream: socket.socket, rest: bytes,
                      fault: Optional[Tuple[str, int]]) -> None:
        try:
            sent = 0
            data = rest
            while True:
                if data:
                    sent, fault = self._forward(data, sent, fault, upstream, client, upstream)
                    if sent < 0:
                        return
                data = client.recv(1 << 16)
                if not data:
                    upstream.shutdown(socket.SHUT_WR)
                    return
        except OSError:
            return

    def _pipe_response(self, upstream: socket.socket, client: socket.socket,
                       fault: Optional[Tuple[str, int]]) -> None:
        head, rest = _read_head(upstream)
        if head is None:
            return
        sent = 0
        data = self.proxy.rewrite_location(head) + rest  # offsets count the head too: a PUT's answer can be cut
        while True:
            if data:
                sent, fault = self._forward(data, sent, fault, client, client, upstream)
                if sent < 0:
                    return
            data = upstream.recv(1 << 16)
            if not data:
                return

    def _relay_cluster_map(self, upstream: socket.socket, client: socket.socket) -> None:
        """Relay the gateway's answer to a cluster-map GET with the targets' addresses rewritten."""
        head, body = _read_head(upstream)
        if head is None:
            return
        while True:  # the request said Connection: close: the body ends at EOF
            chunk = upstream.recv(1 << 16)
            if not chunk:
                break
            body += chunk
        if _CHUNKED.search(head):
            body = _dechunk(body)
            head = _CHUNKED.sub(b"", head)
        if head.startswith(b"HTTP/1.1 200") and b"json" in head.lower():
            body = self.proxy.rewrite_cluster_map(body)
        head = _CONTENT_LENGTH.sub(b"", head[:-4]) + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        client.sendall(head + body)

    def _forward(self, data: bytes, sent: int, fault: Optional[Tuple[str, int]], dst: socket.socket,
                 client: socket.socket, upstream: socket.socket) -> Tuple[int, Optional[Tuple[str, int]]]:
        """Send ``data`` to ``dst``, injecting ``fault`` when its offset falls inside; returns the new byte
        count and the fault still pending (``sent == -1``: the connection was cut, stop pumping)."""
        if fault is not None and sent + len(data) > fault[1]:
            cut = fault[1] - sent
            dst.sendall(data[:cut])
            if self._fault(fault, client, upstream) and fault[0] == "cut":
                return -1, None
            fault, data, sent = None, data[cut:], sent + cut
        dst.sendall(data)
        return sent + len(data), fault

    def _fault(self, fault: Tuple[str, int], client: socket.socket, upstream: socket.socket) -> bool:
        kind, offset = fault
        if not self.proxy.record(kind, self.upstream, offset):
            return False
        if kind == "stall":
            time.sleep(self.proxy.stall_seconds)
            return True
        for s in (client, upstream):
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not FIN
                s.shutdown(socket.SHUT_RD)  # wakes the other direction's recv, so the close really happens
                s.close()
            except OSError:
                pass
        return True


def _read_head(sock: socket.socket) -> Tuple[Optional[bytes], bytes]:
    """Read up to and including the blank line that ends an HTTP head; ``(None, b"")`` at EOF."""
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            return buf[: end + 4], buf[end + 4:]
        chunk = sock.recv(1 << 16)
        if not chunk:
            return None, b""
        buf += chunk
        if len(buf) > 1 << 20:
            raise OSError("HTTP head larger than 1 MiB")


def _dechunk(body: bytes) -> bytes:
    """The payload of a chunked HTTP body."""
    out, pos = b"", 0
    while True:
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol].split(b";", 1)[0], 16)
        if size == 0:
            return out
        out += body[eol + 2: eol + 2 + size]
        pos = eol + 2 + size + 2
