"""Connections (ais_wds._core.connections) remembers, per client per process, that targets deny direct
requests (a cluster with AuthN answers 403 "direct target access denied" to requests that did not come
through the gateway): later reads go through the gateway at once, without a refused request or a
cluster-map refresh each. Counted with the urllib3 request log (tests/support/http_log.py), not timed."""

from __future__ import annotations

import logging
import os

import pytest

from ais_wds import read_bytes, write_bytes
from ais_wds.errors import AISWdsError
from tests.support.http_log import http_log
from tests.support.secure_objects import secure_objects


def _smap_requests(log) -> list:
    return [r for r in log.requests if r[2].startswith("/v1/daemon")]


def test_reads_on_a_cluster_that_denies_direct_requests_cost_one_refused_request_in_all(secure_cluster, caplog):
    client, objects = secure_objects(secure_cluster, "core-denied", {f"o-{i:02d}": os.urandom(700 + i)
                                                                       for i in range(20)})
    gateway = client.config.endpoint.split("://", 1)[1]
    caplog.set_level(logging.INFO, logger="ais_wds._core.connections")
    with http_log() as log:
        got = [read_bytes(url, client) for url in objects]
    assert got == list(objects.values())
    denied = [r for r in log.requests if r[3] == 403]
    assert all(host != gateway for _, host, _, _ in denied), log.summary()
    assert 1 <= len(denied) <= 2, log.summary()  # the first object's; then the direct path is off
    assert len(_smap_requests(log)) <= 1, log.summary()  # no cluster-map refresh per object
    assert not client.connections().direct_allowed() and not log.retries
    lines = [r for r in caplog.records if "deny direct requests" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    token = secure_cluster.vars["AIS_AUTHN_TOKEN"]
    assert all(token not in r.getMessage() for r in caplog.records)


def test_the_direct_path_is_tried_once_again_after_the_off_time(secure_cluster, monkeypatch):
    import ais_wds._core.connections as connections

    client, objects = secure_objects(secure_cluster, "core-denied-again", {f"o-{i}": os.urandom(300 + i)
                                                                             for i in range(6)})
    urls = list(objects)
    with http_log() as log:
        assert read_bytes(urls[0], client) == objects[urls[0]]
        monkeypatch.setattr(connections, "DIRECT_DENIED_OFF_SECONDS", -1.0)  # the off time is over at once
        client.connections().deny_direct("test")  # (re-arm: off until now - 1 s)
        assert client.connections().direct_allowed()
        got = [read_bytes(u, client) for u in urls[1:]]
    assert got == [objects[u] for u in urls[1:]]
    # the switch comes back on, so each read tries its target once more (and the target denies again)
    denied = [r for r in log.requests if r[3] == 403]
    assert len(denied) >= len(urls) - 1, log.summary()


def test_direct_reads_still_go_to_the_targets_on_a_plain_cluster(client, bucket):
    bodies = {f"ais://{bucket}/p-{i:02d}": os.urandom(900 + i) for i in range(10)}
    for url, body in bodies.items():
        write_bytes(url, body, client)
    gateway = client.config.endpoint.split("://", 1)[1]
    with http_log() as log:
        got = [read_bytes(url, client) for url in bodies]
    assert got == list(bodies.values())
    direct = [r for r in log.requests if r[0] == "GET" and r[1] != gateway and r[2].startswith("/v1/objects/")
              and r[3] == 200]
    assert len(direct) == len(bodies), log.summary()
    assert client.connections().direct_allowed()


def test_a_404_from_a_target_keeps_the_direct_path_and_asks_for_a_fresh_map(client, bucket, monkeypatch):
    write_bytes(f"ais://{bucket}/there", b"x" * 100, client)
    conn = client.connections()
    conn.cluster_map()
    refreshes = []
    refresh = conn.refresh_cluster_map_soon
    monkeypatch.setattr(conn, "refresh_cluster_map_soon", lambda *a: (refreshes.append(a), refresh(*a)))
    with http_log() as log, pytest.raises(AISWdsError):
        read_bytes(f"ais://{bucket}/not-there", client)
    gateway = client.config.endpoint.split("://", 1)[1]
    assert any(r[3] == 404 and r[1] != gateway for r in log.requests), log.summary()  # the target was asked
    assert refreshes and conn.direct_allowed()
    with http_log() as log:
        assert read_bytes(f"ais://{bucket}/there", client) == b"x" * 100
    assert any(r[3] == 200 and r[1] != gateway for r in log.requests), log.summary()
