"""An HTTP forwarder in front of a real AIS gateway that changes list-objects requests, for the listing's fallbacks.

:class:`ListForwarder` listens on 127.0.0.1; a :class:`~ais_wds.Client` pointed at it talks to the real gateway
behind it. Every request is forwarded as it came (with ``Connection: close``: one request per TCP connection, so
no body is ever parsed to find the next request) and the gateway's answer relayed untouched, except:

* ``strip_msgpack=True``: the ``Accept: application/msgpack`` header of every request is removed, so AIS answers
  list pages in JSON (what an AIS without msgpack, or a proxy that drops the header, gives);
* ``fail_lists=N``: the first N list-objects requests (``GET /v1/buckets/...`` whose JSON body has
  ``"action": "list"``) are answered by the forwarder itself, with ``fail_status`` and ``fail_message`` in AIS's
  error form (``{"message", "method", "url_path", "status", ...}``), as a gateway answers when it could not get
  the page from a target; the requests after them reach AIS.

Counters: ``lists`` (list requests seen), ``failed`` (answered by the forwarder), ``json_pages`` (list answers
relayed with a JSON content type), ``accepts`` (the ``Accept`` header of each list request as it arrived).

Standard library only; threads. Not a test itself.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from typing import List, Optional, Tuple

_ACCEPT = re.compile(rb"\r\nAccept: *application/msgpack[^\r\n]*", re.IGNORECASE)
_ACCEPT_VALUE = re.compile(rb"\r\nAccept: *([^\r\n]*)", re.IGNORECASE)
_CONNECTION = re.compile(rb"\r\nConnection:[^\r\n]*", re.IGNORECASE)
_LENGTH = re.compile(rb"\r\nContent-Length: *(\d+)", re.IGNORECASE)


class ListForwarder:
    """See the module docstring. Use as a context manager, or call :meth:`close`."""

    def __init__(self, upstream: str, *, strip_msgpack: bool = False, fail_lists: int = 0, fail_status: int = 400,
                 fail_message: str = ""):
        self.upstream = upstream.split("://", 1)[-1].rstrip("/")
        self.strip_msgpack = strip_msgpack
        self.fail_lists, self.fail_status, self.fail_message = fail_lists, fail_status, fail_message
        self.lists = self.failed = self.json_pages = 0
        self.accepts: List[str] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="list-forwarder").start()

    def __enter__(self) -> ListForwarder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            head, body = request
            is_list = head.startswith(b"GET /v1/buckets/") and _is_list_action(body)
            if is_list:
                with self._lock:
                    self.lists += 1
                    found = _ACCEPT_VALUE.search(head)
                    self.accepts.append(found.group(1).decode() if found else "")
                    fail = self.failed < self.fail_lists
                    if fail:
                        self.failed += 1
                if fail:
                    conn.sendall(self._error(head))
                    return
            if self.strip_msgpack:
                head = _ACCEPT.sub(b"", head)
            head = _CONNECTION.sub(b"", head)
            head = head[:-4] + b"\r\nConnection: close\r\n\r\n"
            host, _, port = self.upstream.rpartition(":")
            with socket.create_connection((host, int(port))) as up:
                up.sendall(head + body)
                first = True
                while True:
                    data = up.recv(1 << 16)
                    if not data:
                        return
                    if first and is_list and b"application/json" in data.split(b"\r\n\r\n", 1)[0].lower():
                        with self._lock:
                            self.json_pages += 1
                    first = False
                    conn.sendall(data)

    def _error(self, head: bytes) -> bytes:
        path = head.split(b" ", 2)[1].split(b"?", 1)[0].decode()
        doc = json.dumps({"message": self.fail_message, "method": "GET", "url_path": path, "remote_addr": "127.0.0.1",
                          "caller": "", "node": "p[forwarder]", "status": self.fail_status}).encode()
        return (f"HTTP/1.1 {self.fail_status} Bad Request\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(doc)}\r\nConnection: close\r\n\r\n").encode() + doc


def _read_request(conn: socket.socket) -> Optional[Tuple[bytes, bytes]]:
    """``(head up to and including the blank line, body)`` of one request with a Content-Length (or none)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return None
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    head, body = data[:end], data[end:]
    found = _LENGTH.search(head)
    length = int(found.group(1)) if found else 0
    while len(body) < length:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return None
        body += chunk
    return head, body


def _is_list_action(body: bytes) -> bool:
    try:
        return json.loads(body or b"{}").get("action") == "list"
    except ValueError:
        return False
