"""The bad-input catalogue: every input a user can get wrong ends in one exact typed error, fast.

Each case checks the error class, that the message names the URL / endpoint / file at fault and the
cause, and that it came at once: counted, not timed (how many HTTP requests were answered and connections
opened, from urllib3's log records, and no retry; none at all where the input is refused before a
request). Only the endpoint that never answers, a hang, has a time bound. The table in
docs/reliability.md lists these cases by test id.

The three "wrong server" endpoints are plain standard-library HTTP servers on loopback that answer as a
web server would (an HTML page, a 404, silence): they are the bad input, not an imitation of AIS.
"""

from __future__ import annotations

import gzip
import http.server
import io
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from typing import Any, Callable, Iterator

import msgpack
import pytest

import ais_wds
from ais_wds import Client, read_bytes, write_bytes
from ais_wds.errors import (
    BucketNotFoundError,
    ConfigError,
    ConnectError,
    ObjectNotFoundError,
    ReadError,
    ShardIndexError,
    TarFormatError,
    URLError,
)
from ais_wds.reader import open_object, read_range
from ais_wds.shard_index.index import INDEX_KIND, load_index
from ais_wds.tar.reader import iter_members
from tests.support.http_log import http_log

SECRET = "s3cr3t-T0KEN-value"


def _raises(cls: type, fn: Callable[[], Any], *fragments: str, requests: int = 0, connections: int = 0,
            hang_bound: float = 0.0) -> BaseException:
    """Run ``fn``; it must raise exactly a ``cls`` whose message holds every fragment, at once: after at most
    ``requests`` answered HTTP requests and ``connections`` connections opened (0: none, the error came
    before any request), and no retry (counted from urllib3's and ais_wds's log records, not timed).
    ``hang_bound``: where a hang is what is tested, the seconds it must fail within (generous)."""
    t0 = time.monotonic()
    with http_log() as log:
        with pytest.raises(cls) as info:
            fn()
    elapsed = time.monotonic() - t0
    text = str(info.value)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    assert not log.retries, f"{cls.__name__} came after retries: {log.summary()}"
    assert len(log.requests) <= requests and len(log.connections) <= connections, log.summary()
    if hang_bound:
        assert elapsed < hang_bound, f"{cls.__name__} took {elapsed:.2f}s (bound {hang_bound}s)"
    assert "Traceback" not in text
    return info.value


# --------------------------------------------------------------------------------------------
# URLs: refused by the URL model before any request (the client points nowhere reachable)

NOWHERE = Client("http://127.0.0.1:9", connect_timeout=0.5, retry_seconds=0)

BAD_URLS = [
    ("ais://A/../B/secret", "'..' segment"),
    ("ais://A/./x", "'.' segment"),
    ("ais://../x", "invalid bucket name '..'"),
    ("ais://" + "b" * 300 + "/x", "too long: 300 > 64"),
    ("ais://b//x", "empty segment"),
    ("ais://b/~/x", "'~/'"),
    ("ais://b/x\x00y", "NUL"),
    ("ais://.sys/x", "leading '.'"),
    ("ais://b@d/x", "invalid bucket name 'b@d'"),
    ("ais://a..b/x", "invalid bucket name 'a..b'"),
    ("ais://@bad!uuid#ns/b/x", "invalid namespace uuid"),
    ("ais://@u#bad..ns/b/x", "invalid namespace name"),
    ("ftp://b/x", "unknown scheme"),
    ("bucket/obj", "no '://'"),
    ("ais:///x", "no bucket"),
    ("ais://b/" + "x" * 5000, "object name is too long"),
]


@pytest.mark.parametrize("url,cause", BAD_URLS, ids=[f"url-{i}" for i in range(len(BAD_URLS))])
def test_a_bad_url_is_a_urlerror_naming_it_before_any_request(url, cause):
    err = _raises(URLError, lambda: read_bytes(url, NOWHERE), cause)
    assert err.url == url and isinstance(err, ValueError)


def test_a_dotdot_url_cannot_write_into_another_bucket():
    _raises(URLError, lambda: write_bytes("ais://A/../B/x", b"data", NOWHERE), "ais://A/../B/x", "'..'")


def test_a_dotdot_url_cannot_open_a_tar_writer_in_another_bucket():
    import webdataset as wds  # a required dependency: an ImportError fails, never skips

    _raises(URLError, lambda: wds.TarWriter("ais://A/../B/x.tar"), "ais://A/../B/x.tar")


def test_a_brace_pattern_expanding_to_a_bad_url_is_a_urlerror():
    _raises(URLError, lambda: ais_wds.expand_urls("ais://b/{ok,..}/x"), "ais://b/../x")


def test_a_url_that_is_not_a_string_is_a_urlerror():
    _raises(URLError, lambda: read_bytes(123, NOWHERE), "expected a URL string")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# endpoints and settings

BAD_SETTINGS = [
    ({"endpoint": "localhost:8080"}, "must start with http://"),
    ({"endpoint": "http://:8080"}, "has no host"),
    ({"endpoint": "http://h:99999"}, "invalid port"),
    ({"endpoint": "http://user:pw@h:8080"}, "must not carry credentials"),
    ({"endpoint": "http://h:8080/?x=1"}, "query or fragment"),
    ({"endpoint": "http://h st:8080"}, "whitespace"),
    ({"connect_timeout": 0}, "connect_timeout must be positive"),
    ({"read_timeout": -1}, "read_timeout must be positive"),
    ({"read_timeout": float("nan")}, "finite"),
    ({"retry_seconds": -1}, "retry_seconds must be >= 0"),
    ({"max_pool_size": 0}, "max_pool_size must be positive"),
    ({"max_pool_size": 2.5}, "whole number"),
    ({"connect_timeout": "3"}, "must be a number"),
    ({"ca_cert": "/nonexistent/ca.pem"}, "does not exist"),
]


@pytest.mark.parametrize("kw,cause", BAD_SETTINGS, ids=[f"setting-{i}" for i in range(len(BAD_SETTINGS))])
def test_a_bad_setting_is_a_configerror_naming_it(kw, cause):
    kw = dict(kw)
    endpoint = kw.pop("endpoint", "http://127.0.0.1:9")
    err = _raises(ConfigError, lambda: Client(endpoint, **kw), cause)
    assert isinstance(err, ValueError)
    assert "pw" not in str(err)


@pytest.mark.parametrize("var,value,cause", [
    ("AIS_CONNECT_TIMEOUT", "abc", "AIS_CONNECT_TIMEOUT='abc' is not a number"),
    ("AIS_READ_TIMEOUT", "inf", "finite"),
    ("AIS_MAX_CONN_POOL", "-3", "max_pool_size must be positive"),
], ids=["env-connect-timeout", "env-read-timeout", "env-pool"])
def test_a_bad_environment_variable_is_a_configerror_naming_it(monkeypatch, var, value, cause):
    monkeypatch.setenv(var, value)
    _raises(ConfigError, lambda: Client("http://127.0.0.1:9"), cause)


@pytest.mark.parametrize("token", [SECRET + "\n", SECRET[:6] + " " + SECRET[6:], SECRET + "\r\nX-Evil: 1",
                                   SECRET + "ö"], ids=["newline", "space", "header-injection", "non-ascii"])
def test_a_token_that_cannot_be_a_header_is_a_configerror_showing_neither_it_nor_its_length(token):
    err = _raises(ConfigError, lambda: Client("http://127.0.0.1:9", token=token), "auth token", "trailing newline")
    text = str(err) + repr(err)
    assert SECRET not in text and SECRET[:6] not in text
    assert str(len(token)) not in text


def test_a_token_read_from_a_file_with_its_newline_fails_at_the_client_not_in_the_http_layer(monkeypatch):
    monkeypatch.setenv("AIS_AUTHN_TOKEN", SECRET + "\n")
    err = _raises(ConfigError, lambda: read_bytes("ais://b/x"), "AIS_AUTHN_TOKEN")
    assert SECRET not in str(err)


def test_a_cli_given_a_token_with_a_newline_prints_one_line_without_the_token():
    env = {**os.environ, "AIS_AUTHN_TOKEN": SECRET + "\n", "AIS_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-m", "ais_wds.cli", "cat", "ais://b/x"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert SECRET not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert "auth token" in proc.stderr


# --------------------------------------------------------------------------------------------
# endpoints that are not AIS

class _Web(http.server.BaseHTTPRequestHandler):
    status = 200
    body = b"<html><body>Welcome to nginx!</body></html>"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.body)

    do_GET = do_PUT = do_POST = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


class _NotFound(_Web):
    status = 404
    body = b"404 page not found"


@pytest.fixture(scope="module")
def web_servers() -> Iterator[dict]:
    """An HTML web server, a 404 server, a socket that accepts and never answers, and a closed port."""
    servers = []
    out = {}
    for name, handler in (("html", _Web), ("404", _NotFound)):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        out[name] = f"http://127.0.0.1:{srv.server_address[1]}"
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # the kernel accepts; nobody ever reads or answers
    out["silent"] = f"http://127.0.0.1:{silent.getsockname()[1]}"
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    out["closed"] = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening: refused
    yield out
    for srv in servers:
        srv.shutdown()
    silent.close()
    closed.close()


def test_an_html_server_answering_200_is_a_connecterror_never_data(web_servers):
    ep = web_servers["html"]
    err = _raises(ConnectError, lambda: read_bytes("ais://b/x", Client(ep)), ep, "not an AIS gateway",
                  "HTTP 200 (text/html)", "Welcome to nginx", requests=1, connections=1)
    assert err.url == ep


def test_an_html_server_answering_200_to_a_put_is_not_a_successful_write(web_servers):
    ep = web_servers["html"]
    _raises(ConnectError, lambda: write_bytes("ais://b/x", b"data", Client(ep)), ep, "not an AIS gateway", requests=1,
            connections=1)


def test_a_server_answering_404_is_a_connecterror_naming_the_endpoint_not_a_missing_object(web_servers):
    ep = web_servers["404"]
    err = _raises(ConnectError, lambda: read_bytes("ais://b/x", Client(ep)), ep, "HTTP 404", requests=1, connections=1)
    assert not isinstance(err, ObjectNotFoundError)


def test_an_endpoint_that_accepts_and_never_answers_fails_within_the_probe_timeout(web_servers):
    ep = web_servers["silent"]
    # a hang is what this tests, so it keeps a (generous) time bound: the connect timeout (3 s) + the
    # endpoint probe's read timeout (5 s) + 2 s
    _raises(ConnectError, lambda: read_bytes("ais://b/x", Client(ep)), ep, "did not answer", connections=1,
            hang_bound=3 + 5 + 2)


def test_an_endpoint_that_refuses_connections_fails_within_seconds(web_servers):
    ep = web_servers["closed"]
    # counted, not timed: 6 refused connections today (the cluster-map fetch and the SDK's own connection
    # attempts, none waited for: ~1.5 s in all); no ais_wds retry loop
    _raises(ConnectError, lambda: read_bytes("ais://b/x", Client(ep)), "cannot connect", connections=6)


# --------------------------------------------------------------------------------------------
# objects, buckets and ranges on the real cluster (typed, and the aistore SDK's classes too)

def test_a_missing_object_is_objectnotfound_and_the_sdks_errobjnotfound(client, module_bucket):
    from aistore.sdk.errors import ErrObjNotFound

    url = f"ais://{module_bucket}/missing.bin"
    # the cluster map (once per process), the target's 404, the gateway's redirect and its target's 404
    err = _raises(ObjectNotFoundError, lambda: read_bytes(url, client), url, "does not exist", requests=4,
                  connections=3)
    assert isinstance(err, ErrObjNotFound) and isinstance(err, FileNotFoundError) and err.status_code == 404


def test_a_missing_bucket_is_bucketnotfound_and_the_sdks_errbcknotfound(client):
    from aistore.sdk.errors import AISError, ErrBckNotFound

    url = "ais://no-such-bucket-ais-wds-x1/x"
    err = _raises(BucketNotFoundError, lambda: read_bytes(url, client), url, "bucket does not exist", requests=3,
                  connections=3)
    assert isinstance(err, ErrBckNotFound) and isinstance(err, AISError)


def test_code_written_for_the_sdk_keeps_catching_our_errors(client, module_bucket):
    from aistore.sdk.errors import AISError

    try:
        read_bytes(f"ais://{module_bucket}/missing-too.bin", client)
    except AISError as e:  # what aistore.pytorch code catches
        assert e.status_code == 404 and e.req_url.endswith("missing-too.bin")
    else:
        pytest.fail("no error")


def test_a_range_past_the_end_is_a_readerror_with_the_offset(client, module_bucket):
    url = f"ais://{module_bucket}/short.bin"
    write_bytes(url, b"x" * 100, client)
    err = _raises(ReadError, lambda: read_range(url, 50, 200, client), url, "returned 50 bytes", requests=2,
                  connections=2)
    assert err.offset == 100


# --------------------------------------------------------------------------------------------
# shards

def _tar(n: int = 20, size: int = 3000, random: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for i in range(n):
            data = os.urandom(size) if random else bytes([i]) * size
            info = tarfile.TarInfo(f"s{i:04d}.bin")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _huge_member() -> bytes:
    info = tarfile.TarInfo("huge.bin")
    info.size = 10 ** 12  # 1 TB claimed, 4 KiB present
    return info.tobuf(format=tarfile.GNU_FORMAT) + b"x" * 4096


def _bad_crc() -> bytes:
    gz = gzip.compress(_tar())
    return gz[:-8] + b"\0\0\0\0" + gz[-4:]


BAD_SHARDS = [
    # (name, bytes, cause, offset): the offset is where the walk was when it failed; in a compressed shard
    # it counts decompressed bytes, none yet here (the first read asks for more than these shards hold)
    ("truncated.tar.gz", lambda: (lambda gz: gz[: len(gz) // 2])(gzip.compress(_tar(random=True))),
     "gzip stream (EOFError", 0),
    ("badcrc.tar.gz", _bad_crc, "BadGzipFile: CRC check failed", 0),
    ("huge.tar", _huge_member, "claims 1000000000000 bytes", 0),  # the header at 0
    ("notatar.tar", lambda: b"<html>not a tar</html>" * 100, "bad tar header checksum", 0),
    ("truncated.tar", lambda: _tar()[:5000], "truncated member 's0001.bin'", 512 + 3072),  # its header
]


@pytest.mark.parametrize("name,make,cause,offset", BAD_SHARDS, ids=[s[0] for s in BAD_SHARDS])
def test_a_bad_shard_is_a_tarformaterror_naming_the_shard_url_and_offset(client, module_bucket, name, make,
                                                                         cause, offset):
    url = f"ais://{module_bucket}/shards/{name}"
    write_bytes(url, make(), client)

    def walk() -> None:
        with open_object(url, client) as f:
            for _ in iter_members(f, url=url):
                pass

    err = _raises(TarFormatError, walk, url, cause, requests=2, connections=2)  # one GET (+ the cluster map)
    assert err.offset == offset and err.url == url


def test_a_bad_shard_in_the_pipeline_is_a_tarformaterror_naming_it(client, module_bucket):
    url = f"ais://{module_bucket}/pipe/train-000000.tar.gz"
    write_bytes(url, _bad_crc(), client)
    ds = ais_wds.WebDataset([url], client=client, shuffle=False)
    _raises(TarFormatError, lambda: list(ds), url, "CRC check failed", requests=2, connections=2)


# --------------------------------------------------------------------------------------------
# shard indexes

def _index_doc(**shard_overrides: Any) -> dict:
    shard = {"url": "ais://b/s-000000.tar", "size": 4096, "keys": ["a", "b"], "offsets": [0, 1024],
             "lengths": [1024, 1024], "member_counts": [1, 1], "member_names": ["a.jpg", "b.jpg"],
             "member_offsets": [512, 1536], "member_sizes": [10, 10]}
    shard.update(shard_overrides)
    return {"kind": INDEX_KIND, "plan": None, "shards": [{k: v for k, v in shard.items() if v is not ...}]}


BAD_INDEXES = [
    (_index_doc(offsets=...), "shard 0: field 'offsets' is missing"),
    (_index_doc(size="big"), "field 'size' is not a non-negative integer"),
    (_index_doc(lengths=[1024]), "field 'lengths' has 1 entries for 2 keys"),
    (_index_doc(member_names=["a.jpg"]), "'member_names' has 1 entries; member_counts add up to 2"),
    (_index_doc(offsets=[0, -5]), "not a non-negative integer"),
    (_index_doc(lengths=[1024, 9999]), "ends past the shard's size"),
    ({"kind": INDEX_KIND, "shards": "nope"}, "field 'shards' is missing or not a list"),
    ({"kind": "something-else", "shards": []}, "not an ais_wds shard index"),
]


@pytest.mark.parametrize("doc,cause", BAD_INDEXES, ids=[f"index-{i}" for i in range(len(BAD_INDEXES))])
def test_a_damaged_shard_index_is_a_shardindexerror_naming_the_file_and_field(tmp_path, doc, cause):
    path = tmp_path / "train.index.msgpack"
    path.write_bytes(msgpack.packb(doc, use_bin_type=True))
    err = _raises(ShardIndexError, lambda: load_index(str(path)), str(path), cause)
    assert err.url == str(path)


def test_a_file_that_is_not_msgpack_is_a_shardindexerror(tmp_path):
    path = tmp_path / "x.index.msgpack"
    path.write_bytes(b"\xc1garbage")
    _raises(ShardIndexError, lambda: load_index(str(path)), str(path), "not a msgpack shard index")


# --------------------------------------------------------------------------------------------
# the writer's commit rule

def test_write_bytes_called_inside_an_except_block_commits(client, module_bucket):
    url = f"ais://{module_bucket}/from-except.bin"
    try:
        raise KeyError("an unrelated, handled error")
    except KeyError:
        write_bytes(url, b"written while handling", client)
    assert read_bytes(url, client) == b"written while handling"


def test_an_exception_leaving_the_writers_with_commits_nothing(client, module_bucket):
    from ais_wds.writer import open_writer

    url = f"ais://{module_bucket}/aborted.bin"
    with pytest.raises(RuntimeError):
        with open_writer(url, client) as w:
            w.write(b"partial")
            raise RuntimeError("source broke")
    _raises(ObjectNotFoundError, lambda: read_bytes(url, client), url, requests=4, connections=3)


def test_a_zero_byte_object_round_trips(client, module_bucket):
    url = f"ais://{module_bucket}/empty.bin"
    write_bytes(url, b"", client)
    assert read_bytes(url, client) == b""


# --------------------------------------------------------------------------------------------
# CLI arguments

@pytest.mark.parametrize("args,cause", [
    (["cat", "ais://A/../B/x"], "'..' segment"),
    (["--endpoint", "nohttp:1", "ls", "ais://b/"], "must start with http://"),
    (["cat", "ftp://b/x"], "unknown scheme"),
    (["cat", "--range", "abc-def", "ais://b/x"], "'abc-def' is not START-END"),
], ids=["cli-dotdot", "cli-endpoint", "cli-scheme", "cli-range"])
def test_a_bad_cli_argument_exits_2_with_one_line_naming_it(args, cause):
    proc = subprocess.run([sys.executable, "-m", "ais_wds.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "AIS_ENDPOINT": "http://127.0.0.1:9"}, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert cause in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------
# saved states

@pytest.mark.parametrize("state, cause", [({"epoch": "x"}, "not an ais_wds ais_wds.WebDataset state"),
                                          ({}, "not an ais_wds ais_wds.WebDataset state"),
                                          ("garbage", "not an ais_wds WebDataset state: str")],
                         ids=["state-bad-epoch", "state-empty", "state-not-a-dict"])
def test_a_state_that_is_not_the_pipelines_is_a_configerror(state, cause):
    ds = ais_wds.WebDataset(["ais://b/x-000000.tar"], client=NOWHERE, shuffle=False)
    _raises(ConfigError, lambda: ds.load_state_dict(state), cause)
