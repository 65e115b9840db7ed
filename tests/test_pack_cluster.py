"""pack --engine cluster against the live AIS cluster (archive jobs build the shards).

On a multi-target cluster AIS v1.5.0 archives members in another order than requested; the engine must
still deliver the plan's layout (prove each shard, rebuild the others), every sample exactly once,
byte-identical, and survive a SIGKILL of the client with --resume.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ais_wds.listing import list_objects
from ais_wds.pack import pack
from ais_wds.pack.cluster import proven
from ais_wds.reader import read_bytes
from ais_wds.shard_index import load_index
from ais_wds.writer import write_bytes

REPO = Path(__file__).resolve().parents[1]
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
