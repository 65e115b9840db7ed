"""Pipelined range GETs (ais_wds.objects.pipelined) with a relay between the client and a real target that
alters the target's answers: an answer that is not the asked one is never returned as the range's bytes
(the caller gets the right bytes through the fallback), a target that never answers is bounded by the
client's read_timeout, and the token is in no log record."""

from __future__ import annotations

import logging
import random
import socket
import threading
from typing import Callable, Optional

import pytest

from ais_wds import Client, write_bytes
from ais_wds.objects import pipelined
from ais_wds.objects.pipelined import PIPELINE_MAX, RangePipeline
from ais_wds.objects.ranges import RangeGetter
from tests.support.secure_objects import secure_objects

Mutate = Callable[[bytes], Optional[bytes]]  # the target's stream so far -> what to send, or None: wait for more


class Relay:
    """Listens on 127.0.0.1; each connection goes to ``upstream`` (set before connecting); the requests pass
    as they are, the answers through ``mutate`` once (then as they are); ``stall``: answers are never sent."""

    def __init__(self, mutate: Optional[Mutate] = None, stall: bool = False):
        self.fault, self.mutate, self.stall = mutate, mutate, stall
        self.upstream = ("127.0.0.1", 0)
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            up = socket.create_connection(self.upstream)
            self.socks += [down, up]
            threading.Thread(target=self._pipe, args=(down, up, None), daemon=True).start()
            if not self.stall:
                threading.Thread(target=self._pipe, args=(up, down, self.mutate), daemon=True).start()
            self.mutate = None  # only the first connection is altered

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, mutate: Optional[Mutate]) -> None:
        held = b""
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if mutate is not None:
                    held += data
                    out = mutate(held)
                    if out is None:
                        continue
                    data, mutate, held = out, None, b""
                    if not data:  # cut
                        break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        for s in self.socks:
            s.close()


@pytest.fixture(scope="module")
def blob(client, module_bucket):
    url = f"ais://{module_bucket}/pipe-faults/o.bin"
    data = random.Random(21).randbytes(1_500_000)
    write_bytes(url, data, client)
    return url, data


def _through(monkeypatch, relay: Relay) -> None:
    real = RangePipeline._connect

    def connect(self, target):
        relay.upstream = (target[1], target[2])
        return real(self, (target[0], "127.0.0.1", relay.port))

    monkeypatch.setattr(RangePipeline, "_connect", connect)
    pipelined._POOL.get().close_all()  # no kept-alive connection that bypasses the relay


@pytest.fixture()
def fresh_pool():
    pipelined._POOL.get().close_all()
    yield
    pipelined._POOL.get().close_all()


RANGES = [(0, 5000), (50_000, 3000), (120_000, 7000), (190_000, 10_000)]  # far apart: one request each


def _check(client, monkeypatch, blob, relay):
    """Direct: every range is the right bytes or None; through the getter: all right."""
    url, data = blob
    ranges = [(url, s, n) for s, n in RANGES]
    _through(monkeypatch, relay)
    got, _ = RangePipeline(client).fetch(ranges)
    assert all(g is None or g == data[s:s + n] for g, (_, s, n) in zip(got, ranges))
    assert None in got  # the altered answer was not believed
    relay.mutate = relay.fault  # the same fault again, now for the getter
    pipelined._POOL.get().close_all()
    assert RangeGetter(client).fetch(ranges) == [data[s:s + n] for _, s, n in ranges]
    return got


def test_a_content_length_altered_is_not_believed(client, blob, monkeypatch, fresh_pool):
    def fault(held: bytes) -> Optional[bytes]:
        j = held.find(b"\r\n\r\n", held.find(b"\r\n\r\n") + 4)  # the second response's head is whole
        if j < 0:
            return None
        return held.replace(b"Content-Length: 3000", b"Content-Length: 3001", 1)

    relay = Relay(fault)
    got = _check(client, monkeypatch, blob, relay)
    url, data = blob
    assert got[0] == data[0:5000] and got[1] is None  # read up to the altered answer, nothing after it
    relay.close()


def test_a_body_cut_mid_way_is_not_returned(client, blob, monkeypatch, fresh_pool):
    def fault(held: bytes) -> Optional[bytes]:
        j = held.find(b"\r\n\r\n")
        return held[:j + 4 + 2500] if j >= 0 and len(held) >= j + 4 + 2500 else None  # half the first body

    relay = Relay(fault)
    got = _check(client, monkeypatch, blob, relay)
    assert got == [None] * 4
    relay.close()


def test_an_extra_byte_in_a_body_voids_that_body_and_the_rest(client, blob, monkeypatch, fresh_pool):
    def fault(held: bytes) -> Optional[bytes]:
        j = held.find(b"\r\n\r\n")
        return held[:j + 4] + b"X" + held[j + 4:] if j >= 0 else None  # Content-Length unchanged

    relay = Relay(fault)
    got = _check(client, monkeypatch, blob, relay)
    assert got == [None] * 4  # the first body (shifted by the stray byte) is voided too
    relay.close()


def test_a_content_range_other_than_the_asked_one_is_not_believed(client, blob, monkeypatch, fresh_pool):
    def fault(held: bytes) -> Optional[bytes]:
        j = held.find(b"\r\n\r\n")
        return held.replace(b"Content-Range: bytes 0-4999/", b"Content-Range: bytes 1-5000/", 1) if j >= 0 else None

    relay = Relay(fault)
    got = _check(client, monkeypatch, blob, relay)
    assert got[0] is None
    relay.close()


def test_a_target_that_never_answers_costs_one_read_timeout_then_the_fallback(ais_endpoint, blob, monkeypatch,
                                                                              fresh_pool, caplog):
    """Two connections' worth of requests (more than PIPELINE_MAX) to a target that never answers: one
    read_timeout (the other connection is closed unread), the path off, every range right by GetBatch."""
    client = Client(ais_endpoint, read_timeout=1.0)
    url, data = blob
    ranges = [(url, s, 10) for s in range(0, 2 * PIPELINE_MAX * 5000, 5000)]
    relay = Relay(stall=True)
    _through(monkeypatch, relay)
    getter = RangeGetter(client)
    with caplog.at_level(logging.DEBUG, logger="ais_wds.objects"):
        assert getter.fetch(ranges) == [data[s:s + n] for _, s, n in ranges]
    assert sum("timed out" in r.getMessage() for r in caplog.records) == 1
    assert relay.connections == 2 and not getter._pipeline.available()
    assert getter.fetch(ranges[:4]) == [data[s:s + n] for _, s, n in ranges[:4]]
    assert relay.connections == 2  # off for a while: the next calls do not wait on it again
    relay.close()


def test_over_tls_with_a_token_the_client_ca_wins_and_the_token_is_in_no_log_record(secure_cluster, monkeypatch,
                                                                                    caplog):
    """The https + AuthN cluster: REQUESTS_CA_BUNDLE names a bundle without the cluster's CA, yet the TLS
    handshake with the target succeeds on the client's own CA with hostname checks on (the target then
    answers 403 to a direct request: "denied a direct request" is logged, not "refused a connection"); the
    token shows in no log record, repr or error message of the pipelined path (DEBUG everywhere)."""
    import certifi

    from ais_wds import AuthError

    v = secure_cluster.vars
    token = v["AIS_AUTHN_TOKEN"]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    client, objects = secure_objects(secure_cluster, "pipe-secret", {"o.bin": random.Random(6).randbytes(40_000)})
    ((url, data),) = objects.items()
    ranges = [(url, s, 1000) for s in (0, 20_000, 39_000)]
    pipelined._POOL.get().close_all()
    getter = RangeGetter(client)
    with caplog.at_level(logging.DEBUG):
        assert getter.fetch(ranges) == [data[s:s + n] for _, s, n in ranges]
        bad = RangeGetter(Client(v["AIS_ENDPOINT"], token=token + "x", ca_cert=v["AIS_CLIENT_CA"]))
        errors = bad.fetch(ranges)
    messages = [r.getMessage() for r in caplog.records]
    assert any("denied a direct request" in m for m in messages)
    assert not any("refused a connection" in m for m in messages)
    assert all(isinstance(e, AuthError) for e in errors)
    for text in messages + [repr(getter), repr(getter._pipeline), repr(client)] + [str(e) for e in errors]:
        assert token not in text
