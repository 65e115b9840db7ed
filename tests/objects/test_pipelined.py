"""Pipelined range GETs straight to the targets (ais_wds.objects.pipelined) against the live cluster: bytes
equal to the objects', neighbours merged and split, kept-alive connections the target closed, targets
that refuse connections (then GetBatch serves the call), answers that are not the asked bytes."""

from __future__ import annotations

import logging
import random
import socket

import pytest

from ais_wds import write_bytes
from ais_wds.objects import pipelined
from ais_wds.objects.pipelined import COALESCE_GAP, RangePipeline
from ais_wds.objects.ranges import RangeGetter
from tests.support.ports import free_port


@pytest.fixture(scope="module")
def blobs(client, module_bucket):
    rng = random.Random(11)
    out = {}
    for name in ["a.bin", "b c.bin", "ünï-名前.bin", "d/e.bin"]:
        url = f"ais://{module_bucket}/pipe/{name}"
        data = rng.randbytes(rng.randint(60_000, 300_000))
        write_bytes(url, data, client)
        out[url] = data
    return out


def _expected(blobs, ranges):
    return [blobs[u][s:s + n] for u, s, n in ranges]


def test_neighbouring_ranges_are_read_by_one_request_and_split(client, blobs):
    url = sorted(blobs)[0]
    # adjacent, overlapping, a gap under the limit, a gap over it, out of order
    ranges = [(url, 5000, 100), (url, 0, 1000), (url, 1000, 500), (url, 1200, 600), (url, 5100 + COALESCE_GAP + 1, 10),
              (url, 5100 + 4 * COALESCE_GAP, 7)]
    pipe = RangePipeline(client)
    got, unavailable = pipe.fetch(ranges)
    assert got == _expected(blobs, ranges) and not unavailable
    assert pipe.requests == 3  # [0, 5100) in one, then the two far ones


def test_object_names_with_spaces_and_unicode_and_slashes(client, blobs):
    ranges = [(u, 17, 4000) for u in sorted(blobs)] + [(u, len(d) - 9, 9) for u, d in sorted(blobs.items())]
    got, _ = RangePipeline(client).fetch(ranges)
    assert got == _expected(blobs, ranges)


def test_a_connection_the_target_closed_while_idle_is_opened_again(client, blobs):
    pipe = RangePipeline(client)
    ranges = [(u, 100, 2000) for u in sorted(blobs)]
    assert pipe.fetch(ranges)[0] == _expected(blobs, ranges)
    idle = [c for conns in pipelined._POOL.get().idle.values() for c in conns]
    assert idle
    for conn in idle:  # as if every target had closed its idle connection
        conn.sock.shutdown(socket.SHUT_RD)
    assert pipe.fetch(ranges)[0] == _expected(blobs, ranges)


def test_a_missing_object_is_none_and_the_ranges_after_it_still_arrive(client, blobs, module_bucket):
    url = sorted(blobs)[1]
    ranges = [(url, 0, 10), (f"ais://{module_bucket}/pipe/absent.bin", 0, 10), (url, 50_000, 10), (url, 10, 10)]
    got, unavailable = RangePipeline(client).fetch(ranges)
    assert got[1] is None and not unavailable
    assert [got[0], got[2], got[3]] == [blobs[url][0:10], blobs[url][50_000:50_010], blobs[url][10:20]]


def test_a_range_past_the_end_is_none_not_short_bytes(client, blobs):
    url = sorted(blobs)[2]
    got, _ = RangePipeline(client).fetch([(url, len(blobs[url]) - 10, 100), (url, 0, 5)])
    assert got == [None, blobs[url][:5]]


def test_targets_that_refuse_connections_leave_the_call_to_getbatch(client, blobs, monkeypatch, caplog):
    closed = free_port()
    real_connect = RangePipeline._connect
    monkeypatch.setattr(RangePipeline, "_connect", lambda self, target: real_connect(self, (target[0], "127.0.0.1",
                                                                                            closed)))
    pipelined._POOL.get().close_all()  # no kept-alive connection from earlier tests: every one is new, refused
    getter = RangeGetter(client)
    ranges = [(u, 300, 3000) for u in sorted(blobs)] * 3
    with caplog.at_level(logging.DEBUG, logger="ais_wds.objects"):
        assert getter.fetch(ranges) == _expected(blobs, ranges)
    assert (getter.pipelined, getter.requests, getter.fallbacks) == (0, 1, 0)
    assert any("refused a connection" in r.getMessage() for r in caplog.records)
    assert not getter._pipeline.available()  # off for a while: the next call goes to GetBatch at once
    assert getter.fetch(ranges[:4]) == _expected(blobs, ranges[:4]) and getter.requests == 2


def test_forked_workers_read_on_connections_of_their_own(client, blobs):
    import multiprocessing as mp

    getter = RangeGetter(client)
    ranges = [(u, 1, 1234) for u in sorted(blobs)]
    assert getter.fetch(ranges) == _expected(blobs, ranges)  # the parent holds connections now
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.map(getter.fetch, [ranges, ranges[::-1], ranges])
    assert results == [_expected(blobs, ranges), _expected(blobs, ranges[::-1]), _expected(blobs, ranges)]
    assert getter.fetch(ranges) == _expected(blobs, ranges)


def test_connections_are_kept_alive_across_calls_and_getters(client, blobs):
    ranges = [(u, 5, 500) for u in sorted(blobs)]
    RangeGetter(client).fetch(ranges)
    pool = pipelined._POOL.get()
    before = {id(c) for conns in pool.idle.values() for c in conns}
    assert RangeGetter(client).fetch(ranges) == _expected(blobs, ranges)  # a new getter, same connections
    assert {id(c) for conns in pool.idle.values() for c in conns} == before


def test_a_cluster_with_authentication_denies_direct_requests_and_getbatch_serves(secure_cluster, caplog):
    """An https cluster with AuthN answers requests sent straight to a target with 403 ("direct target access
    denied"): the getter turns the pipelined path off and GetBatch (through the gateway, TLS, token)
    serves the call and the next ones."""
    import uuid

    from ais_wds import AuthError, Client

    ca = secure_cluster.vars["AIS_CLIENT_CA"]
    client = Client(secure_cluster.endpoint, token=secure_cluster.vars["AIS_AUTHN_TOKEN"], ca_cert=ca)
    name = f"pipe-tls-{uuid.uuid4().hex[:8]}"
    client.sdk.bucket(name).create()
    data = random.Random(5).randbytes(80_000)
    write_bytes(f"ais://{name}/o.bin", data, client)
    ranges = [(f"ais://{name}/o.bin", s, 3000) for s in (0, 9000, 70_000, 4000)]
    getter = RangeGetter(client)
    with caplog.at_level(logging.DEBUG, logger="ais_wds.objects"):
        assert getter.fetch(ranges) == [data[s:s + n] for _, s, n in ranges]
        assert getter.fetch(ranges[:2]) == [data[s:s + n] for _, s, n in ranges[:2]]
    assert (getter.pipelined, getter.requests, getter.fallbacks) == (0, 2, 0)
    assert not getter._pipeline.available()
    assert any("denied a direct request" in r.getMessage() for r in caplog.records)
    bad = RangeGetter(Client(secure_cluster.endpoint, token="not-a-token", ca_cert=ca))
    assert all(isinstance(r, AuthError) for r in bad.fetch(ranges))  # the reader core says why


def test_a_call_of_many_ranges_goes_out_on_several_connections_per_target(client, module_bucket):
    from ais_wds.objects.pipelined import PIPELINE_MAX

    url = f"ais://{module_bucket}/pipe/big.bin"
    data = random.Random(12).randbytes(4 << 20)
    write_bytes(url, data, client)
    starts = list(range(0, len(data) - 100, 8192))  # 512 ranges 8 KiB apart: none merged, one target
    random.Random(13).shuffle(starts)
    ranges = [(url, s, 100) for s in starts]
    pipe = RangePipeline(client)
    got, unavailable = pipe.fetch(ranges)
    assert got == [data[s:s + 100] for s in starts] and not unavailable
    assert pipe.requests == len(starts) > 3 * PIPELINE_MAX
