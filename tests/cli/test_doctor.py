"""``ais-wds doctor``: exit 0 and only OK lines on a healthy cluster with good shards; the right FAIL line
(with its action) and exit 1 for a wrong endpoint, a wrong or missing token (the auth + TLS cluster), a
wrong CA, and a bucket of non-tar objects named ``.tar``; the token never appears in the output."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import tarfile
import time
from typing import List, Tuple

import pytest

from ais_wds import Client, write_bytes
from ais_wds.cli import main as cli_main
from ais_wds.doctor.cluster import token_expiry
from tests.support.tars import tar_bytes

_SECURE_VARS = ("AIS_ENDPOINT", "AIS_AUTHN_TOKEN", "AIS_CLIENT_CA", "AIS_SKIP_VERIFY_CRT")


def doctor(*args: str) -> Tuple[int, str]:
    """Run `ais-wds ARGS... doctor` in this process: (exit code, standard output + error)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = cli_main(list(args))
    return rc, out.getvalue()


def lines(out: str, status: str) -> List[str]:
    return [line for line in out.splitlines() if line.startswith(status + " ")]


def _tar(samples: int, seed: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for j in range(samples):
            for ext, body in (("jpg", bytes([seed]) * (500 + 37 * j)), ("cls", str(j % 3).encode())):
                info = tarfile.TarInfo(f"s{seed}-{j:03d}.{ext}")
                info.size, info.mtime = len(body), 1_700_000_000
                tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def test_a_healthy_cluster_and_good_shards_pass_with_exit_0(client, bucket, ais_endpoint):
    for s in range(3):
        write_bytes(f"ais://{bucket}/train/train-{s:06d}.tar", _tar(12, s), client)
    rc, out = doctor("--endpoint", ais_endpoint, "doctor", f"ais://{bucket}/train/")
    assert rc == 0, out
    assert lines(out, "FAIL") == [] and lines(out, "WARN") == [], out
    ok = "\n".join(lines(out, "OK"))
    for name in ("endpoint", "auth", "version", "health", "direct reads", f"listing ais://{bucket}/train/",
                 "GET throughput", "shard index"):
        assert name in ok, (name, out)
    assert "3 objects" in ok and "3 shards" in ok
    assert ok.count("24 members in 12 samples (.jpg, .cls)") == 3, out  # 3 shards looked at
    rc, out = doctor("--endpoint", ais_endpoint, "doctor", "--json", f"ais://{bucket}/train/")
    report = json.loads(out)
    assert rc == 0 and report["ok"] is True
    assert {c["status"] for c in report["checks"]} == {"OK"}


def test_a_wrong_endpoint_fails_the_endpoint_check_with_exit_1():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, out = doctor("--endpoint", f"http://127.0.0.1:{port}", "doctor", "ais://anything/train/")
    assert rc == 1, out
    fail = lines(out, "FAIL")
    assert len(fail) == 1 and "endpoint" in fail[0] and "connection refused" in fail[0], out
    assert "-> check AIS_ENDPOINT" in out
    assert any(line.startswith("SKIP") and "ais://anything/train/" in line for line in out.splitlines()), out


def test_non_tar_objects_named_tar_fail_the_shard_check(client, bucket, ais_endpoint):
    for s in range(2):
        write_bytes(f"ais://{bucket}/bad/train-{s:06d}.tar", b"not a tar at all, " * (40 + s), client)
    rc, out = doctor("--endpoint", ais_endpoint, "doctor", f"ais://{bucket}/bad/")
    assert rc == 1, out
    fail = lines(out, "FAIL")
    assert len(fail) == 2 and all("not a valid tar" in line for line in fail), out
    assert f"ais://{bucket}/bad/train-000000.tar" in fail[0]
    assert "-> write shards as tar" in out


def test_a_prefix_without_shards_fails_the_listing_check(client, bucket, ais_endpoint):
    write_bytes(f"ais://{bucket}/loose/a.jpg", b"x" * 100, client)
    rc, out = doctor("--endpoint", ais_endpoint, "doctor", f"ais://{bucket}/loose/")
    assert rc == 1 and "none ends in .tar" in lines(out, "FAIL")[0], out
    assert "ais-wds pack" in out


@pytest.fixture
def secure(secure_cluster, monkeypatch):
    """The auth + TLS cluster's variables, with none of them in the environment yet."""
    for name in _SECURE_VARS:
        monkeypatch.delenv(name, raising=False)
    v = secure_cluster.vars
    return {"endpoint": v["AIS_ENDPOINT"], "token": v["AIS_AUTHN_TOKEN"], "ca": v["AIS_CLIENT_CA"]}


def _assert_no_token(out: str, token: str) -> None:
    for part in [token, *token.split(".")]:
        assert part not in out, "the token (or a part of it) is in the output"


def test_the_auth_and_tls_cluster_passes_with_its_token_and_ca_and_the_token_never_shows(secure, monkeypatch):
    monkeypatch.setenv("AIS_AUTHN_TOKEN", secure["token"])
    monkeypatch.setenv("AIS_CLIENT_CA", secure["ca"])
    client = Client(secure["endpoint"])
    name = f"doctor-{int(time.time() * 1000) % 10**9}"
    client.sdk.bucket(name).create()
    try:
        write_bytes(f"ais://{name}/train/train-000000.tar", _tar(5, 1), client)
        for args in ((), ("--json",)):
            rc, out = doctor("--endpoint", secure["endpoint"], "doctor", *args, f"ais://{name}/train/")
            assert rc == 0, out
            _assert_no_token(out, secure["token"])
        rc, out = doctor("--endpoint", secure["endpoint"], "doctor")
        auth = next(line for line in lines(out, "OK") if " auth " in line)
        assert "token from AIS_AUTHN_TOKEN accepted; it expires in" in auth, out
        assert any("tls" in line and "signed by the CA in" in line for line in lines(out, "OK")), out
    finally:
        client.sdk.bucket(name).delete(missing_ok=True)


def test_a_wrong_token_fails_the_auth_check_and_is_not_shown(secure, monkeypatch):
    head, payload, _ = secure["token"].split(".")
    wrong = f"{head}.{payload}.c2lnbmVkLWJ5LXNvbWVvbmUtZWxzZQ"  # the right claims, another signature
    monkeypatch.setenv("AIS_AUTHN_TOKEN", wrong)
    monkeypatch.setenv("AIS_CLIENT_CA", secure["ca"])
    for args in ((), ("--json",)):
        rc, out = doctor("--endpoint", secure["endpoint"], "doctor", *args)
        assert rc == 1, out
        _assert_no_token(out, wrong)
    rc, out = doctor("--endpoint", secure["endpoint"], "doctor")
    fail = lines(out, "FAIL")
    assert len(fail) == 1 and "auth" in fail[0] and "the token from AIS_AUTHN_TOKEN was refused (HTTP 401" in fail[0]
    assert "-> get a new token" in out


def test_no_token_on_a_cluster_that_needs_one_fails_the_auth_check(secure, monkeypatch):
    monkeypatch.setenv("AIS_CLIENT_CA", secure["ca"])
    rc, out = doctor("--endpoint", secure["endpoint"], "doctor")
    assert rc == 1 and "the cluster requires a token and none is set" in lines(out, "FAIL")[0], out
    assert "-> set AIS_AUTHN_TOKEN" in out


def test_a_wrong_ca_fails_the_tls_check(secure, monkeypatch, tmp_path):
    monkeypatch.setenv("AIS_AUTHN_TOKEN", secure["token"])
    other_ca = "/etc/ssl/certs/ca-certificates.crt"
    if not os.path.exists(other_ca):
        pytest.skip("no system CA bundle to use as the wrong CA")
    rc, out = doctor("--endpoint", secure["endpoint"], "doctor", "--ca-cert", other_ca)
    assert rc == 1, out
    fail = lines(out, "FAIL")
    assert len(fail) == 1 and "tls" in fail[0] and f"not signed by the CA in {other_ca}" in fail[0], out
    assert "-> set AIS_CLIENT_CA" in out
    _assert_no_token(out, secure["token"])


def test_token_expiry_is_read_from_the_jwt_without_verifying_it():
    import base64

    def b64(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    assert token_expiry(f"{b64({'alg': 'HS256'})}.{b64({'exp': 1796639227, 'sub': 'a'})}.sig") == 1796639227.0
    assert token_expiry(f"{b64({'alg': 'HS256'})}.{b64({'sub': 'a'})}.sig") is None
    assert token_expiry("not-a-jwt") is None and token_expiry("a.!!!.c") is None


def test_an_endpoint_that_is_not_ais_fails_the_endpoint_check():
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rc, out = doctor("--endpoint", f"http://127.0.0.1:{server.server_port}", "doctor")
    finally:
        server.shutdown()
        server.server_close()
    assert rc == 1, out
    fail = lines(out, "FAIL")
    assert len(fail) == 1 and "endpoint" in fail[0] and "is not an AIS gateway" in fail[0], out
    assert "-> point AIS_ENDPOINT" in out


def test_a_missing_bucket_fails_the_listing_check(ais_endpoint):
    rc, out = doctor("--endpoint", ais_endpoint, "doctor", "ais://no-such-bucket-p21doctor/train/")
    assert rc == 1, out
    fail = lines(out, "FAIL")
    assert len(fail) == 1 and "listing ais://no-such-bucket-p21doctor/train/" in fail[0], out
    assert "bucket does not exist" in fail[0] and "-> check the bucket name" in out


def test_a_host_the_certificate_does_not_name_fails_the_tls_check(secure, monkeypatch):
    monkeypatch.setenv("AIS_AUTHN_TOKEN", secure["token"])
    monkeypatch.setenv("AIS_CLIENT_CA", secure["ca"])
    other = secure["endpoint"].replace("://127.0.0.1:", "://127.0.0.2:")  # the same gateway, another address
    if other == secure["endpoint"]:
        pytest.skip("the secure cluster's endpoint is not on 127.0.0.1")
    rc, out = doctor("--endpoint", other, "doctor")
    assert rc == 1, out
    fail = lines(out, "FAIL")
    assert len(fail) == 1 and "tls" in fail[0] and "the gateway's certificate is not for '127.0.0.2'" in fail[0], out
    assert "-> put the host name (or IP) the certificate names in AIS_ENDPOINT" in out


def test_split_samples_compression_and_a_stale_index_are_warnings(client, bucket, ais_endpoint):
    import gzip

    from ais_wds import build_index, save_index

    prefix = f"ais://{bucket}/w/"
    for s in range(2):
        write_bytes(f"{prefix}train-{s:06d}.tar", _tar(6, s), client)
    save_index(build_index(prefix, client), f"ais://{bucket}/w/shards.index.msgpack", client, wids=False)
    rc, out = doctor("--endpoint", ais_endpoint, "doctor", prefix)
    assert rc == 0 and lines(out, "WARN") == [], out
    assert any("shard index" in line and "matching the listing" in line for line in lines(out, "OK")), out

    members = [(f"a.{ext}", b"1") for ext in ("jpg", "cls")] + [("b.jpg", b"2"), ("a.txt", b"3")]  # a, b, a
    write_bytes(f"{prefix}train-000001.tar", tar_bytes(members), client)  # the index no longer matches
    write_bytes(f"{prefix}train-000002.tar.gz", gzip.compress(_tar(3, 9)), client)
    rc, out = doctor("--endpoint", ais_endpoint, "doctor", prefix)
    assert rc == 0, out  # warnings only
    warn = "\n".join(lines(out, "WARN"))
    assert "members of 1 samples are not adjacent (e.g. 'a')" in warn, out
    assert "compression gzip" in warn and "gzip-compressed shards cost CPU" in out
    assert "does not match the shards: 1 not indexed, 1 changed size, 0 no longer listed" in warn, out
    assert f"-> rebuild it: `ais-wds index {prefix}`" in out
