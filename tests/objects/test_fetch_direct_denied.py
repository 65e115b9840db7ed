"""DirectGetter (ais_wds.objects.fetch) on a cluster with AuthN, whose targets answer 403 ("direct target
access denied") to requests that did not come through the gateway: every object still arrives, without
an error, and the direct path is turned off for the client (the switch in ais_wds._core.connections, shared
with the reader core) instead of being tried for every object. Counted with the urllib3 request log
(tests/support/http_log.py), not timed."""

from __future__ import annotations

import os

from ais_wds.objects.fetch import DirectGetter
from tests.support.http_log import http_log
from tests.support.secure_objects import secure_objects


def test_a_cluster_that_denies_direct_requests_is_read_through_the_gateway_without_retrying_targets(secure_cluster):
    client, objects = secure_objects(secure_cluster, "direct-denied", {f"o-{i:02d}": os.urandom(500 + i)
                                                                         for i in range(20)})
    gateway = client.config.endpoint.split("://", 1)[1]
    getter = DirectGetter(client)
    with http_log() as log:
        got = getter.fetch(list(objects))
    assert got == list(objects.values())
    denied = [r for r in log.requests if r[3] == 403]
    assert all(host != gateway for _, host, _, _ in denied)
    # the first object's direct GET is denied (and, when the 403 does not say why, the reader core's own
    # try); then neither the getter nor the reader core asks a target directly
    assert 1 <= len(denied) <= 2, log.summary()
    assert getter.fallbacks == 1 and not log.retries, log.summary()
    assert not client.connections().direct_allowed()
