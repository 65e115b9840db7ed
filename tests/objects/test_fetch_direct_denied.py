"""DirectGetter (ais_wds.objects.fetch) on a cluster with AuthN, whose targets answer 403 ("direct target
access denied") to requests that did not come through the gateway: every object still arrives, without
an error, and the direct path is turned off for the getter instead of being tried for every object.
Counted with the urllib3 request log (tests/support/http_log.py), not timed."""

from __future__ import annotations

import os

from ais_wds.objects.fetch import DIRECT_DECLINES_OFF, DirectGetter
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
    # the first objects: the getter's direct GET and the reader core's own try are denied, then the getter
    # stops asking the targets directly; the reader core still tries each object's target once
    # (ais_wds._core.connections.open_direct has no rule for a 403)
    assert len(denied) == 2 * DIRECT_DECLINES_OFF + (len(objects) - DIRECT_DECLINES_OFF), log.summary()
    assert getter.fallbacks == DIRECT_DECLINES_OFF and not log.retries  # then no direct try by the getter
