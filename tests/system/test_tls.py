"""TLS: the https cluster (`secure_cluster`: --auth --tls --remote, self-signed CA, started once per session).

Everything works over https with AIS_CLIENT_CA, also while REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE name a
system bundle without the cluster's CA (requests would let those win); AIS_SKIP_VERIFY_CRT=true works
without a CA; a wrong CA is a ConnectError that says "certificate", at once.
"""

from __future__ import annotations

import warnings

import pytest

import ais_wds
from ais_wds import Client, ConnectError, list_objects, read_bytes
from tests.support.http_log import http_log
from tests.system import test_auth

pytestmark = pytest.mark.cluster

sec = test_auth.sec  # the same module-scoped fixture: the secure cluster's bucket, token and CA

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

WRONG_CA_CONNECTIONS = 3
"""TLS handshakes a call may try before a wrong CA's ConnectError: 1 to 3 were seen per call (2026-12-06),
none answered; a retried call (3.5 s before the fix) tries again after each failed handshake."""


@pytest.fixture
def https_env(sec, monkeypatch, tmp_path):
    """The token in the environment; a system CA bundle (without the cluster's CA) in requests' variables."""
    bundle = SYSTEM_BUNDLE
    if not __import__("os").path.exists(bundle):
        bundle = str(tmp_path / "empty.pem")
        open(bundle, "w").close()
    monkeypatch.setenv("AIS_AUTHN_TOKEN", sec["token"])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    monkeypatch.setenv("CURL_CA_BUNDLE", bundle)
    monkeypatch.delenv("AIS_SKIP_VERIFY_CRT", raising=False)
    monkeypatch.delenv("AIS_CLIENT_CA", raising=False)
    return bundle


def test_every_front_end_over_https_with_ais_client_ca(sec, https_env, monkeypatch):
    assert sec["endpoint"].startswith("https://")
    monkeypatch.setenv("AIS_CLIENT_CA", sec["ca"])
    client = Client(sec["endpoint"])
    assert client.config.ca_cert == sec["ca"]
    test_auth._every_front_end(client, sec)


def test_skip_verify_crt_works_without_a_ca(sec, https_env, monkeypatch):
    monkeypatch.setenv("AIS_SKIP_VERIFY_CRT", "true")
    client = Client(sec["endpoint"])
    assert client.config.skip_verify and client.config.ca_cert is None
    b = sec["bucket"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns that skipping verification is insecure
        assert dict(list_objects([f"ais://{b}/objs/"], client)) == {u: len(d) for u, d in sec["objects"].items()}
        assert {u: read_bytes(u, client) for u in sec["objects"]} == sec["objects"]
        mapped = ais_wds.AISDataset(client, f"ais://{b}/objs/", fetch="get")  # direct GETs to the targets
        assert dict((u, bytes(d)) for u, d in (mapped[i] for i in range(len(mapped)))) == sec["objects"]


@pytest.mark.parametrize("ca", ["system", "none"])
def test_a_wrong_ca_is_a_connecterror_saying_certificate_at_once(sec, https_env, monkeypatch, ca):
    if ca == "system":
        monkeypatch.setenv("AIS_CLIENT_CA", https_env)  # a bundle that did not sign the cluster's certificate
    client = Client(sec["endpoint"])
    url = next(iter(sec["objects"]))
    for op in (lambda: read_bytes(url, client), lambda: list_objects([f"ais://{sec['bucket']}/objs/"], client),
               lambda: ais_wds.AISDataset(client, [url])[0]):
        with http_log() as log:
            with pytest.raises(ConnectError) as err:
                op()
        print(f"wrong CA ({ca}): ConnectError after {log.summary()}")
        # not retried: counted, not timed (retried, it took 3.5 s)
        assert not log.retries and len(log.connections) <= WRONG_CA_CONNECTIONS, log.summary()
        assert not log.requests, log.summary()  # no handshake succeeded, no request was answered
        assert "certificate" in str(err.value) and "AIS_CLIENT_CA" in str(err.value)
        assert sec["endpoint"] in str(err.value)
