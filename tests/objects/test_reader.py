"""Reader core against the live cluster: exact bytes, ranges, archpath, bounded memory, resume."""

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading

import pytest

from ais_wds import (
    Client,
    ConnectError,
    ObjectNotFoundError,
    ReadError,
    open_object,
    read_bytes,
    read_member,
    read_range,
    write_bytes,
)
from ais_wds.writer import open_writer
from tests.support.http_log import http_log

MiB = 1 << 20


def _pattern(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture(scope="module")
def objects(client, module_bucket):
    data = os.urandom(3 * MiB + 123)
    write_bytes(f"ais://{module_bucket}/blob.bin", data, client)
    write_bytes(f"ais://{module_bucket}/empty", b"", client)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, payload in [("a/0001.jpg", b"jpeg-bytes"), ("a/0001.cls", b"7")]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    write_bytes(f"ais://{module_bucket}/shard.tar", buf.getvalue(), client)
    return module_bucket, data


def test_stream_returns_the_exact_bytes_through_read_readinto_and_small_reads(client, objects):
    bucket, data = objects
    with open_object(f"ais://{bucket}/blob.bin", client) as f:
        head = f.read(10)
        buf = bytearray(MiB)
        n = f.readinto(buf)
        rest = f.read()
    assert head + bytes(buf[:n]) + rest == data
    assert f.closed


def test_close_is_idempotent_and_eof_releases_the_connection(client, objects):
    bucket, data = objects
    f = open_object(f"ais://{bucket}/blob.bin", client)
    assert f.read() == data
    assert f.raw._resp is None  # released to the pool at EOF
    f.close()
    f.close()


def test_empty_object_reads_as_empty(client, objects):
    bucket, _ = objects
    assert read_bytes(f"ais://{bucket}/empty", client) == b""


@pytest.mark.parametrize("start,end", [(0, 1), (0, 100), (MiB - 1, MiB + 1), (3 * MiB, 3 * MiB + 123), (5, 5)])
def test_range_reads_return_exactly_that_range(client, objects, start, end):
    bucket, data = objects
    assert read_range(f"ais://{bucket}/blob.bin", start, end, client) == data[start:end]


def test_open_object_with_start_streams_from_that_offset(client, objects):
    bucket, data = objects
    with open_object(f"ais://{bucket}/blob.bin", client, start=MiB) as f:
        assert f.read() == data[MiB:]


def test_a_range_past_the_end_is_a_read_error_naming_the_url(client, objects):
    bucket, data = objects
    with pytest.raises(ReadError, match="blob.bin"):
        read_range(f"ais://{bucket}/blob.bin", len(data) - 10, len(data) + 10, client)


def test_archpath_reads_one_member_of_a_shard(client, objects):
    bucket, _ = objects
    assert read_member(f"ais://{bucket}/shard.tar", "a/0001.jpg", client) == b"jpeg-bytes"
    assert read_member(f"ais://{bucket}/shard.tar", "a/0001.cls", client) == b"7"
    with pytest.raises(ObjectNotFoundError):
        read_member(f"ais://{bucket}/shard.tar", "a/missing.jpg", client)


def test_a_missing_object_is_an_object_not_found_error_naming_the_url(client, objects):
    bucket, _ = objects
    with pytest.raises(ObjectNotFoundError) as info:
        read_bytes(f"ais://{bucket}/nope/missing.bin", client)
    assert f"ais://{bucket}/nope/missing.bin" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_an_unreachable_endpoint_fails_within_seconds_naming_it():
    # counted, not timed: a few refused connections (the cluster-map fetch, the SDK's own attempts, none
    # waited for), no request answered, no retry loop of ours
    with http_log() as log:
        with pytest.raises(ConnectError, match="127.0.0.1:9"):
            read_bytes("ais://b/x", Client("http://127.0.0.1:9"))
    assert not log.retries and not log.requests and 1 <= len(log.connections) <= 6, log.summary()


STREAM_RSS_SCRIPT = r"""
import hashlib, resource, sys
from ais_wds import open_object
h = hashlib.sha256()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open_object(sys.argv[1]) as f:
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        n = f.readinto(buf)
        if not n:
            break
        h.update(view[:n])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(h.hexdigest(), base, peak)
"""


def test_streaming_256_mib_keeps_memory_bounded(client, bucket, ais_endpoint):
    size = 256 * MiB
    digest = hashlib.sha256()
    with open_writer(f"ais://{bucket}/big.bin", client) as w:
        for i in range(size // (8 * MiB)):
            chunk = _pattern(8 * MiB, i)
            digest.update(chunk)
            w.write(chunk)
    proc = subprocess.run([sys.executable, "-c", STREAM_RSS_SCRIPT, f"ais://{bucket}/big.bin"],
                          capture_output=True, text=True, env={**os.environ, "AIS_ENDPOINT": ais_endpoint},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    got, base_kib, peak_kib = proc.stdout.split()
    assert got == digest.hexdigest()
    growth_mib = (int(peak_kib) - int(base_kib)) / 1024
    print(f"peak RSS growth while streaming 256 MiB: {growth_mib:.1f} MiB")
    assert growth_mib < 32, f"RSS grew by {growth_mib:.1f} MiB streaming a 256 MiB object"


def test_stream_resumes_after_the_owning_target_is_killed_and_restarted(client, bucket, local_cluster):
    size = 96 * MiB
    url = f"ais://{bucket}/resume.bin"
    digest = hashlib.sha256()
    with open_writer(url, client) as w:
        for i in range(size // (8 * MiB)):
            chunk = _pattern(8 * MiB, 100 + i)
            digest.update(chunk)
            w.write(chunk)
    target = local_cluster.target_of(client, url)
    got = hashlib.sha256()
    received = 0
    with open_object(url, client, bufsize=256 * 1024) as f:
        got.update(f.read(8 * MiB))
        received += 8 * MiB
        local_cluster.kill_target(target)
        restarter = threading.Timer(2.0, local_cluster.start_target, args=(target,))
        restarter.start()
        try:
            while True:
                chunk = f.read(MiB)
                if not chunk:
                    break
                received += len(chunk)
                got.update(chunk)
        finally:
            restarter.join()
        resumes = f.raw.resumes
    assert received == size
    assert got.hexdigest() == digest.hexdigest()
    assert resumes >= 1


def test_errors_and_logs_never_carry_the_auth_token(ais_endpoint, objects, caplog):
    bucket, _ = objects
    client = Client(ais_endpoint, token="tok-0123456789-secret")
    caplog.set_level("DEBUG")
    errors = []
    for call in (lambda: read_bytes(f"ais://{bucket}/missing", client),
                 lambda: read_bytes("ais://no-such-bucket-ais-wds/x", client),
                 lambda: read_bytes("ais://b/x", Client("http://127.0.0.1:9", token="tok-0123456789-secret"))):
        with pytest.raises(Exception) as info:
            call()
        errors.append(f"{info.value!r} {info.value}")
    assert all("tok-0123456789-secret" not in e for e in errors)
    assert "tok-0123456789-secret" not in caplog.text
    assert "tok-0123456789-secret" not in repr(client)
