"""Auth: a cluster that requires AuthN tokens (`secure_cluster`: --auth --tls --remote, started once per session).

Every front end, the CLI and DataLoader workers (fork, spawn, forkserver) work with the token from
AIS_AUTHN_TOKEN or Client(token=...); a missing, wrong or expired token is an AuthError (a PermissionError)
naming the URL and the token's source, raised at once; the token never shows in a DEBUG log line, an error
message, a repr or a pickle of a dataset.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import time
import uuid
from collections import Counter
from typing import Dict

import pytest

import ais_wds
from ais_wds import AuthError, Client, list_objects, read_bytes, write_bytes
from tests.support.http_log import http_log

pytestmark = pytest.mark.cluster


def _jwt(claims: dict, key: str) -> str:
    """An HS256 token as AuthN makes them (for a wrong or an expired one)."""
    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(hmac.new(key.encode(), head.encode(), hashlib.sha256).digest())


@pytest.fixture(scope="module")
def sec(secure_cluster):
    """The secure cluster's variables, a bucket with objects and shards, and bad tokens."""
    v = secure_cluster.vars
    client = Client(v["AIS_ENDPOINT"], token=v["AIS_AUTHN_TOKEN"], ca_cert=v["AIS_CLIENT_CA"])
    name = f"auth-{uuid.uuid4().hex[:8]}"
    client.sdk.bucket(name).create()
    objects = {f"ais://{name}/objs/o-{i:02d}.bin": os.urandom(1000 + i) for i in range(12)}
    for url, data in objects.items():
        write_bytes(url, data, client)
    samples: Dict[str, Dict[str, bytes]] = {}
    for s in range(2):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for j in range(5):
                key = f"k{s}-{j}"
                samples[key] = {"bin": os.urandom(300 + j)}
                info = tarfile.TarInfo(f"{key}.bin")
                info.size = len(samples[key]["bin"])
                tar.addfile(info, io.BytesIO(samples[key]["bin"]))
        write_bytes(f"ais://{name}/shards/train-{s:06d}.tar", buf.getvalue(), client)
    key = json.loads((secure_cluster.state / "authn" / "secret.json").read_text())["key"]
    now = int(time.time())
    claims = {"admin": True, "sub": "admin", "iss": v["AIS_AUTHN_URL"]}
    return {
        "endpoint": v["AIS_ENDPOINT"], "ca": v["AIS_CLIENT_CA"], "token": v["AIS_AUTHN_TOKEN"], "bucket": name,
        "objects": objects, "samples": samples,
        "wrong": _jwt({**claims, "exp": now + 3600}, "not-the-cluster-key"),
        "expired": _jwt({**claims, "exp": now - 60, "iat": now - 3600}, key),
    }


@pytest.fixture
def token_client(sec, request, monkeypatch):
    """A Client with the token from AIS_AUTHN_TOKEN (param "env") or from token= (param "arg")."""
    monkeypatch.setenv("AIS_CLIENT_CA", sec["ca"])
    if request.param == "env":
        monkeypatch.setenv("AIS_AUTHN_TOKEN", sec["token"])
        client = Client(sec["endpoint"])
        assert client.config.token_source == "AIS_AUTHN_TOKEN"
    else:
        monkeypatch.delenv("AIS_AUTHN_TOKEN", raising=False)
        client = Client(sec["endpoint"], token=sec["token"])
        assert client.config.token_source == "token="
    return client


def _samples(it) -> Dict[str, Dict[str, bytes]]:
    return {s["__key__"]: {k: bytes(v) for k, v in s.items() if not k.startswith("__")} for s in it}


def _every_front_end(client: Client, sec: dict) -> None:
    """Read and write through every front end with ``client``; bytes checked."""
    import webdataset as wds
    from webdataset.gopen import gopen_schemes

    b = sec["bucket"]
    assert dict(list_objects([f"ais://{b}/objs/"], client)) == {u: len(d) for u, d in sec["objects"].items()}
    assert {u: read_bytes(u, client) for u in sec["objects"]} == sec["objects"]
    for fetch in ("get", "batch"):
        mapped = ais_wds.AISDataset(client, f"ais://{b}/objs/", fetch=fetch)
        assert dict((u, bytes(d)) for u, d in (mapped[i] for i in range(len(mapped)))) == sec["objects"]
        assert {u: bytes(d) for u, d in ais_wds.AISIterDataset(client, f"ais://{b}/objs/", fetch=fetch)} == \
            sec["objects"]
    assert _samples(ais_wds.WebDataset(f"ais://{b}/shards/", client=client)) == sec["samples"]
    saved = dict(gopen_schemes)
    ais_wds.register(client)
    try:
        urls = ais_wds.shard_urls(f"ais://{b}/shards/", client=client)
        assert _samples(wds.WebDataset(urls, shardshuffle=False)) == sec["samples"]
        out = f"ais://{b}/written-{uuid.uuid4().hex[:6]}/w-%06d.tar"
        with wds.ShardWriter(out, maxcount=100) as sink:
            for key, sample in sec["samples"].items():
                sink.write({"__key__": key, **sample})
    finally:
        gopen_schemes.clear()
        gopen_schemes.update(saved)
    assert _samples(ais_wds.WebDataset(out.replace("%06d", "000000"), client=client)) == sec["samples"]
    from ais_wds.pack import pack

    dst = f"ais://{b}/packed-{uuid.uuid4().hex[:6]}/p-%06d.tar"
    pack(f"ais://{b}/objs/", dst, client, samples_per_shard=5, index=dst.replace("p-%06d.tar", "p.index.msgpack"))
    shards = ais_wds.AISShardDataset(dst.replace("p-%06d.tar", "p.index.msgpack"), client)
    assert {f"ais://{b}/objs/{s['__key__'].rsplit('/', 1)[-1]}.bin": bytes(s["bin"])
            for s in (shards[i] for i in range(len(shards)))} == sec["objects"]


@pytest.mark.parametrize("token_client", ["env", "arg"], indirect=True)
def test_every_front_end_works_with_the_token(token_client, sec):
    _every_front_end(token_client, sec)


def test_a_remote_cluster_bucket_by_alias_works_through_the_authenticated_cluster(sec, secure_cluster, monkeypatch):
    monkeypatch.delenv("AIS_AUTHN_TOKEN", raising=False)
    client = Client(sec["endpoint"], token=sec["token"], ca_cert=sec["ca"])
    name = f"auth-rem-{uuid.uuid4().hex[:6]}"
    Client(secure_cluster.vars["AIS_REMOTE_ENDPOINT"]).sdk.bucket(name).create()
    data = os.urandom(70_000)
    # a PUT by alias over https: ais_wds's writer (the SDK 2.0.0's own https PUT sends the namespace twice and
    # AIS takes the alias, which its target cannot resolve; the uuid form works there)
    write_bytes(f"ais://@remote/{name}/o", data, client)
    assert read_bytes(f"ais://@{secure_cluster.vars['AIS_REMOTE_UUID']}/{name}/o", client) == data


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_dataloader_workers_carry_the_token(sec, method, monkeypatch):
    from torch.utils.data import ChainDataset, DataLoader

    monkeypatch.setenv("AIS_CLIENT_CA", sec["ca"])
    monkeypatch.setenv("AIS_AUTHN_TOKEN", sec["token"])
    from_env = Client(sec["endpoint"])
    monkeypatch.setenv("AIS_AUTHN_TOKEN", sec["wrong"])  # token= must win over it, in the workers too
    from_arg = Client(sec["endpoint"], token=sec["token"])
    monkeypatch.setenv("AIS_AUTHN_TOKEN", sec["token"])
    prefix = f"ais://{sec['bucket']}/objs/"
    both = ChainDataset([ais_wds.AISIterDataset(c, prefix, fetch="get") for c in (from_env, from_arg)])
    got = [(u, bytes(d)) for u, d in DataLoader(both, batch_size=None, num_workers=1, multiprocessing_context=method)]
    assert sorted(got) == sorted(list(sec["objects"].items()) * 2)


def test_the_cli_works_with_the_token_from_the_environment_and_fails_in_one_line_without(sec):
    url = next(iter(sec["objects"]))
    env = {**os.environ, "AIS_AUTHN_TOKEN": sec["token"], "AIS_CLIENT_CA": sec["ca"], "AIS_ENDPOINT": sec["endpoint"]}
    cli = [sys.executable, "-m", "ais_wds.cli"]
    ok = subprocess.run([*cli, "cat", url], env=env, capture_output=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == sec["objects"][url]
    del env["AIS_AUTHN_TOKEN"]
    bad = subprocess.run([*cli, "ls", f"ais://{sec['bucket']}/objs/"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2
    assert "401" in bad.stderr and "no token was sent" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("which", ["none", "wrong", "expired"])
def test_a_missing_wrong_or_expired_token_is_an_autherror_at_once(sec, which, monkeypatch):
    monkeypatch.delenv("AIS_AUTHN_TOKEN", raising=False)
    client = Client(sec["endpoint"], ca_cert=sec["ca"], token=None if which == "none" else sec[which])
    b, url = sec["bucket"], next(iter(sec["objects"]))
    ops = [  # a list: the first and the last name the same object (a dict kept only the last)
        (url, lambda: read_bytes(url, client)),
        (f"ais://{b}/objs/", lambda: list_objects([f"ais://{b}/objs/"], client)),
        (f"ais://{b}/new.bin", lambda: write_bytes(f"ais://{b}/new.bin", b"x", client)),
        (f"ais://{b}/shards/", lambda: next(iter(ais_wds.WebDataset(f"ais://{b}/shards/", client=client)))),
        (f"ais://{b}/objs/o-00.bin", lambda: ais_wds.AISDataset(client, [f"ais://{b}/objs/o-00.bin"])[0]),
    ]
    for where, op in ops:
        with http_log() as log:
            with pytest.raises(AuthError) as err:
                op()
        print(f"{which} token, {where}: AuthError after {log.summary()}")
        # at once: counted, not timed: no request sent again after its 401 (a read's cluster-map fetch is
        # refused too: another request), no retry
        refused = Counter((method, path) for method, _, path, status in log.requests if status == 401)
        assert not log.retries and refused and max(refused.values()) == 1, f"{where}: {log.summary()}"
        text = str(err.value)
        assert isinstance(err.value, PermissionError) and err.value.status == 401
        assert where.rstrip("/").split("/objs/")[0] in text
        source = "no token was sent" if which == "none" else "the token from token= was refused"
        assert source in text, text
        assert err.value.token_source == ("none" if which == "none" else "token=")
        if which != "none":
            assert sec[which] not in text and sec[which] not in repr(err.value)
    monkeypatch.setenv("AIS_AUTHN_TOKEN", sec["wrong"])
    with pytest.raises(AuthError, match="the token from AIS_AUTHN_TOKEN was refused"):
        read_bytes(url, Client(sec["endpoint"], ca_cert=sec["ca"]))


def test_the_token_never_shows_in_logs_errors_reprs_or_pickles(sec, monkeypatch, caplog):
    monkeypatch.setenv("AIS_CLIENT_CA", sec["ca"])
    seen = []
    with caplog.at_level(logging.DEBUG):  # every logger: ais_wds, the SDK, urllib3, requests
        for source in ("env", "arg"):
            if source == "env":
                monkeypatch.setenv("AIS_AUTHN_TOKEN", sec["token"])
                client = Client(sec["endpoint"])
            else:
                monkeypatch.delenv("AIS_AUTHN_TOKEN", raising=False)
                client = Client(sec["endpoint"], token=sec["token"])
            _every_front_end(client, sec)
            b = sec["bucket"]
            datasets = [ais_wds.AISDataset(client, f"ais://{b}/objs/"), ais_wds.AISIterDataset(client, f"ais://{b}/objs/"),
                        ais_wds.WebDataset(f"ais://{b}/shards/", client=client),
                        ais_wds.AISFileLister(client, [f"ais://{b}/objs/"]), client, client.config]
            for ds in datasets:
                seen += [repr(ds), str(ds)]
                blob = pickle.dumps(ds)
                assert sec["token"].encode() not in blob, f"the token is in a pickle of {type(ds).__name__}"
                seen.append(blob.decode("latin-1"))
        monkeypatch.delenv("AIS_AUTHN_TOKEN", raising=False)
        for bad in ("wrong", "expired"):
            with pytest.raises(AuthError) as refused:  # a read that succeeded would leave nothing to check
                read_bytes(next(iter(sec["objects"])), Client(sec["endpoint"], token=sec[bad]))
            seen += [str(refused.value), repr(refused.value), repr(refused.value.__cause__)]
    seen += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    for token in (sec["token"], sec["wrong"], sec["expired"]):
        assert not [s for s in seen if token in s]
        # nor its signature alone (the part that makes it a secret)
        assert not [s for s in seen if token.rsplit(".", 1)[-1] in s]
