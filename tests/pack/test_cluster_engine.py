"""pack --engine cluster against the live AIS cluster (AIS assembles the shards).

On a multi-target cluster AIS v1.5.0's archive job archives members in another order than requested, so
the engine has AIS's get-batch assemble shards whose members span targets (in request order) and checks
every header before it commits a shard. Every sample exactly once, byte-identical, in the plan's layout;
a SIGKILL of the client and a target killed mid-run end in a clean --resume (or a named error), never a
partial shard; a cold s3:// source is prefetched by AIS and assembled, and `auto` leaves it to the client
engine, saying why.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ais_wds import Client
from ais_wds.cli import main as cli_main
from ais_wds.errors import PackJobError
from ais_wds.listing import list_objects
from ais_wds.pack import pack
from ais_wds.pack.engines.cluster import proven
from ais_wds.reader import read_bytes
from ais_wds.shard_index import load_index
from ais_wds.writer import write_bytes

REPO = Path(__file__).resolve().parents[2]
SAMPLES = 1500


@pytest.fixture(scope="module")
def source(client, module_bucket):
    """3,000 flat objects: 1,500 samples of jpg (1-3 KiB) + cls."""
    objects = {}
    for i in range(SAMPLES):
        objects[f"src/s{i:05d}.jpg"] = bytes([i % 251]) * (1024 + (i * 37) % 2048)
        objects[f"src/s{i:05d}.cls"] = str(i % 10).encode()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: write_bytes(f"ais://{module_bucket}/{kv[0]}", kv[1], client), objects.items()))
    return f"ais://{module_bucket}/src/", objects


def _read_back(client, prefix: str) -> dict:
    members: dict = {}
    for url, _ in list_objects(prefix, client):
        if not url.endswith(".tar"):
            continue
        with tarfile.open(fileobj=io.BytesIO(read_bytes(url, client))) as tf:
            names = tf.getnames()
            for name in names:
                assert name not in members, f"{name} packed twice"
                members[name] = tf.extractfile(name).read()  # type: ignore[union-attr]
            stems = [n.rsplit(".", 1)[0] for n in names]
            assert stems[::2] == stems[1::2], f"{url}: a sample's members are not adjacent"
    return members


def test_cluster_engine_packs_every_sample_once_byte_identical_in_plan_layout(client, module_bucket, source):
    prefix, objects = source
    dst = f"ais://{module_bucket}/cl/train-%04d.tar"
    report = pack(prefix, dst, client, engine="cluster", samples_per_shard=200, exts=["jpg", "cls"])
    assert report.engine == "cluster" and report.engine_note is None
    assert len(report.written) == 8 and report.samples == SAMPLES
    assert sorted(report.archived + report.batched) == sorted(report.written)
    members = _read_back(client, f"ais://{module_bucket}/cl/")
    assert members == objects
    index = load_index(report.index_url, client)  # type: ignore[arg-type]
    assert len(index) == SAMPLES
    for shard in report.plan.shards:
        assert proven(shard, client)


def test_cluster_engine_falls_back_to_client_when_members_are_renamed(client, module_bucket, source):
    prefix, objects = source
    report = pack(prefix, f"ais://{module_bucket}/renamed/t-%04d.tar", client, engine="cluster",
                  samples_per_shard=500, strip_prefix=True)
    assert report.engine == "client"
    assert "not named like its object" in (report.engine_note or "")
    members = _read_back(client, f"ais://{module_bucket}/renamed/")
    assert members == {name[len("src/"):]: data for name, data in objects.items()}


def test_cluster_engine_resume_after_sigkill_completes_with_every_sample_once(client, module_bucket, source):
    prefix, objects = source
    dst = f"ais://{module_bucket}/killed/train-%04d.tar"
    cmd = [sys.executable, "-m", "ais_wds.cli", "--endpoint", client.endpoint, "pack", prefix, dst, "--engine",
           "cluster", "--samples-per-shard", "50", "--parallel-shards", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not any(u.endswith(".tar") for u, _ in list_objects(f"ais://{module_bucket}/killed/", client,
                                                                   allow_empty=True)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    done_before = [u for u, _ in list_objects(f"ais://{module_bucket}/killed/", client) if u.endswith(".tar")]
    assert 0 < len(done_before) < 30
    report = pack(prefix, dst, client, engine="cluster", samples_per_shard=50, resume=True)
    assert len(report.written) + len(report.skipped) == 30
    assert _read_back(client, f"ais://{module_bucket}/killed/") == objects
    for shard in report.plan.shards:
        assert proven(shard, client)


def test_the_default_engine_is_the_cluster_engine_for_ais_buckets_of_one_cluster(client, module_bucket, source):
    prefix, objects = source
    report = pack(prefix, f"ais://{module_bucket}/default/t-%04d.tar", client, samples_per_shard=300)
    assert (report.engine, report.engine_note) == ("cluster", None)
    assert len(report.batched) + len(report.archived) == 5
    assert _read_back(client, f"ais://{module_bucket}/default/") == objects


def test_the_default_engine_is_the_client_engine_for_members_over_128_kib(client, bucket):
    objects = {f"big/b{i}.{ext}": bytes([i]) * (200 << 10) for i in range(4) for ext in ("cls", "jpg")}
    for name, data in objects.items():
        write_bytes(f"ais://{bucket}/{name}", data, client)
    report = pack(f"ais://{bucket}/big/", f"ais://{bucket}/out/t-%04d.tar", client, samples_per_shard=2)
    assert report.engine == "client" and "members average 200 KiB" in (report.engine_note or "")
    assert _read_back(client, f"ais://{bucket}/out/") == objects


def _write_source(client: Client, bucket: str, samples: int, size: int) -> dict:
    objects = {}
    for i in range(samples):
        objects[f"s{i:05d}.jpg"] = bytes([i % 251]) * (size + i % 512)
        objects[f"s{i:05d}.cls"] = str(i % 10).encode()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: write_bytes(f"{bucket}/{kv[0]}", kv[1], client), objects.items()))
    return objects


def _target_owning(cluster, client: Client, url: str) -> int:
    node = client.sdk.cluster().get_info().get_target_for_object(client.object(url).uname)
    return next(n for n in (1, 2) if cluster.target_port(n) == int(node.public_net.daemon_port))


def test_a_target_killed_during_the_jobs_ends_in_a_named_error_or_a_clean_resume(clouds_cluster):
    """A target is killed (and restarted 2 s later) once the first shard is done; the run either
    finishes or raises PackJobError naming a shard and the cause. No partial or misordered shard is
    ever visible, and --resume then delivers every sample exactly once."""
    cluster = clouds_cluster
    pc = Client(cluster.endpoint, retry_seconds=60)
    name = f"kill-{uuid.uuid4().hex[:8]}"
    pc.sdk.bucket(name).create()
    objects = _write_source(pc, f"ais://{name}/src", 400, 24 << 10)
    objects = {f"src/{k}": v for k, v in objects.items()}
    dst = f"ais://{name}/out/train-%04d.tar"
    killed: list = []
    restarter: list = []

    def kill_once(samples: int, nbytes: int) -> None:
        if not killed:
            n = _target_owning(cluster, pc, f"ais://{name}/out/train-0005.tar")
            killed.append(n)
            cluster.run("kill-target", str(n))
            restarter.append(threading.Timer(2.0, cluster.run, args=("start-target", str(n))))
            restarter[0].start()

    error = None
    try:
        first = pack(f"ais://{name}/src/", dst, pc, engine="cluster", samples_per_shard=25, parallel_shards=2,
                     progress=kill_once)
        assert first.engine == "cluster"
    except PackJobError as e:
        error = e
        assert "ais://" + name + "/out/train-" in str(e) and e.message
    finally:
        for t in restarter:
            t.join()
    assert killed, "the first run ended before any shard was done"
    deadline = time.monotonic() + 120
    while not pc.sdk.cluster().is_ready() or len(pc.sdk.cluster().get_info().tmap) < 2:
        assert time.monotonic() < deadline
        time.sleep(1)
    plan = pack(f"ais://{name}/src/", dst, pc, engine="cluster", samples_per_shard=25, dry_run=True).plan
    visible = [u for u, _ in list_objects(f"ais://{name}/out/", pc, allow_empty=True) if u.endswith(".tar")]
    by_url = {s.url: s for s in plan.shards}
    assert all(proven(by_url[u], pc) for u in visible), "a partial or misordered shard is visible"
    report = pack(f"ais://{name}/src/", dst, pc, engine="cluster", samples_per_shard=25, resume=True)
    assert len(report.written) + len(report.skipped) == 16
    assert error is None or report.written, "the failed run left nothing to resume"
    assert _read_back(pc, f"ais://{name}/out/") == objects


def test_cloud_sources_are_fetched_by_ais_with_the_cluster_engine_and_left_to_the_client_engine_by_auto(
        clouds_cluster, capsys):
    cluster = clouds_cluster
    pc = Client(cluster.endpoint, retry_seconds=60)
    name = f"raw-{uuid.uuid4().hex[:8]}"
    cluster.run("cloud-bucket", f"s3://{name}")
    objects = _write_source(pc, f"s3://{name}", 30, 2000)
    pc.bucket(f"s3://{name}").evict(keep_md=True)  # cold: only the emulator has them
    dst = f"shards-{uuid.uuid4().hex[:8]}"
    pc.sdk.bucket(dst).create()
    rc = cli_main(["--endpoint", cluster.endpoint, "pack", f"s3://{name}/", f"ais://{dst}/a-%04d.tar",
                   "--engine", "cluster", "--samples-per-shard", "10", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "cluster engine: 0 shard(s) by AIS archive jobs, 3 by AIS get-batch" in out
    assert _read_back(pc, f"ais://{dst}/") == objects
    pc.bucket(f"s3://{name}").evict(keep_md=True)
    rc = cli_main(["--endpoint", cluster.endpoint, "pack", f"s3://{name}/", f"ais://{dst}/b-%04d.tar",
                   "--samples-per-shard", "10", "--no-progress"])  # the default: auto
    out = capsys.readouterr().out
    assert rc == 0
    assert "client engine" in out and "cluster engine not used: s3:// sources: auto uses the client engine" in out
    assert len([u for u, _ in list_objects(f"ais://{dst}/b-", pc)]) == 3


def test_shards_of_several_upload_parts_are_the_client_engines_bytes(client, bucket):
    """Shards larger than the relay's buffer (one upload part, sent as it is): the cluster engine's shards have
    the client engine's layout and bytes (every member's data at the planned offset; the headers differ only in
    the fields AIS fills from the objects: mtime, mode, owner, checksum)."""
    from ais_wds.pack.engines.cluster import RELAY_CHUNK, shard_spans

    objects = {f"big/s{i:03d}.{ext}": bytes([i % 251]) * ((1400 << 10) + i * 4099 if ext == "bin" else 50)
               for i in range(60) for ext in ("bin", "cls")}  # 60 samples of ~1.5 MiB: 3 shards of 36 MiB or less
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: write_bytes(f"ais://{bucket}/{kv[0]}", kv[1], client), objects.items()))
    by_client = pack(f"ais://{bucket}/big/", f"ais://{bucket}/a/x-%02d.tar", client, engine="client",
                     shard_size="36MiB")
    by_cluster = pack(f"ais://{bucket}/big/", f"ais://{bucket}/b/x-%02d.tar", client, engine="cluster",
                      shard_size="36MiB")
    assert by_cluster.engine == "cluster" and len(by_cluster.batched) == len(by_cluster.written) == 3
    sizes = [s.size for s in by_cluster.plan.shards]
    assert sizes[0] > 2 * RELAY_CHUNK and sizes[-1] % RELAY_CHUNK
    for shard, a, b in zip(by_cluster.plan.shards, sorted(by_client.written), sorted(by_cluster.written)):
        mine, theirs = read_bytes(b, client), read_bytes(a, client)
        assert b == shard.url and len(mine) == len(theirs) == shard.size
        for name, header, data, size in shard_spans(shard):
            assert mine[data:data + size] == theirs[data:data + size] == objects[name]
            assert mine[header:header + 100] == theirs[header:header + 100]  # the name field
            assert mine[header + 124:header + 136] == theirs[header + 124:header + 136]  # the size field
    assert _read_back(client, f"ais://{bucket}/b/") == objects
