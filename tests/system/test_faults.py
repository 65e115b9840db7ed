"""The fault catalogue: connection cuts, stalls, a gateway restart and a target kill, each proving that
every sample arrives exactly once with its exact bytes (nothing lost, duplicated or altered).

Cuts and stalls come from :class:`tests.support.faultproxy.FaultProxy` between the client and the nodes of the
session cluster (nothing of that cluster is disturbed). Kills and restarts go to a private cluster
(``scripts/ais-local`` with its own ``AIS_LOCAL_STATE_DIR``), started once for this module and wiped
afterwards. ``CUTS`` sets the number of cuts per scenario (``make soak`` runs 200; ``make test`` 20).
The table in docs/reliability.md lists these tests.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

import ais_wds
from ais_wds import Client, write_bytes
from ais_wds.pack import PackReport, pack
from ais_wds.shard_index.index import load_index
from ais_wds.tar.reader import iter_members
from tests.support.cluster_guard import refuse_in_unit_run
from tests.support.faultproxy import FaultProxy

REPO = Path(__file__).resolve().parents[2]
CUTS = int(os.environ.get("AIS_WDS_FAULT_CUTS", "20"))
"""Connection cuts injected per scenario."""

SCALE = max(1, CUTS // 20)
# a planned cut can fall past the end of a (resumed) stream and not happen, more often on a loaded machine:
# every scenario must have suffered at least half of its budget for the exactly-once check to count
MIN_CUTS = max(1, CUTS // 2)
"""Data grows with the number of cuts, so each cut still lands inside a body."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _upstream(client: Client) -> str:
    return client.endpoint.split("://", 1)[1]


def _faulty_client(proxy: FaultProxy) -> Client:
    # short read timeout: a stall longer than it is a timeout, then a resume
    return Client(proxy.endpoint, read_timeout=2.0, retry_seconds=60)


def _shards(client: Client, bucket: str, n_shards: int, per_shard: int, size: int, prefix: str = "train"
            ) -> Tuple[List[str], Dict[str, str]]:
    """Write ``n_shards`` tar shards of random samples; return their URLs and {key: sha of data}."""
    import io
    import tarfile

    urls, expected = [], {}
    for s in range(n_shards):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(per_shard):
                key = f"s{s:03d}-{i:05d}"
                data = os.urandom(size + (i * 37) % 1024)
                info = tarfile.TarInfo(f"{key}.bin")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                expected[key] = _sha(data)
        url = f"ais://{bucket}/{prefix}-{s:06d}.tar"
        write_bytes(url, buf.getvalue(), client)
        urls.append(url)
    return urls, expected


def _epoch(dataset: object, workers: int = 2) -> Counter:
    from torch.utils.data import DataLoader

    got: Counter = Counter()
    for sample in DataLoader(dataset, batch_size=None, num_workers=workers):
        got[(sample["__key__"], _sha(sample["bin"]))] += 1
    return got


# --------------------------------------------------------------------------------------------
# connection cuts between the client and the session cluster


def test_cuts_during_a_webdataset_epoch_with_2_workers_lose_and_duplicate_nothing(client, module_bucket):
    # enough shards that the budget is always spent: a resumed range is shorter than a shard, so a fault
    # planned on it may fall past its end and not happen
    urls, expected = _shards(client, module_bucket, 16 * SCALE, 40, 16 << 10, "wds")
    with FaultProxy(_upstream(client), cuts=CUTS, stalls=2, stall_seconds=3.0, rate=1.0,
                    max_offset=640 << 10, seed=1) as proxy:
        got = _epoch(ais_wds.WebDataset(urls, client=_faulty_client(proxy), shuffle=False))
    assert got == Counter({(k, h): 1 for k, h in expected.items()})
    assert proxy.cuts >= MIN_CUTS, proxy.fault_log
    # the streams went straight to the targets (through their relays), not through gateway redirects
    assert proxy.cluster_maps >= 2 and proxy.target_connections > proxy.redirects + MIN_CUTS, vars(proxy)


def test_cuts_during_aisiterdataset_batch_gets_lose_and_duplicate_nothing(client, module_bucket):
    prefix = f"ais://{module_bucket}/objs/"
    expected = {}
    for i in range(1000 * SCALE):
        data = os.urandom(4 << 10)
        write_bytes(f"{prefix}o{i:05d}.bin", data, client)
        expected[f"{prefix}o{i:05d}.bin"] = _sha(data)
    # cuts land on batch replies and on the direct GETs that fetch what a broken reply left out (and on
    # every GET while three failed batches in a row have turned batch GET off): the proxy relays both
    with FaultProxy(_upstream(client), cuts=CUTS, rate=0.5, max_offset=70 << 10, seed=2) as proxy:
        ds = ais_wds.AISIterDataset(_faulty_client(proxy), prefix, fetch="batch", batch_size=16)
        got = Counter((url, _sha(data)) for url, data in ds)
    assert got == Counter({(u, h): 1 for u, h in expected.items()})
    assert proxy.cuts >= MIN_CUTS, proxy.fault_log


@pytest.fixture(scope="module")
def loose(client, module_bucket) -> Tuple[str, Dict[str, str]]:
    """Loose source objects (2 files per sample): their prefix URL and {member name: sha of data}."""
    src = f"ais://{module_bucket}/loose/"
    expected: Dict[str, str] = {}
    for i in range(200 * SCALE):
        for ext, size in (("jpg", 24 << 10), ("cls", 16)):
            data = os.urandom(size)
            write_bytes(f"{src}k{i:05d}.{ext}", data, client)
            expected[f"k{i:05d}.{ext}"] = _sha(data)
    return src, expected


def _pack_with_cuts(client: Client, src: str, dst: str, engine: str, seed: int) -> Tuple[PackReport, int]:
    with FaultProxy(_upstream(client), cuts=CUTS, rate=1.0, max_offset=100 << 10, seed=seed) as proxy:
        report = pack(src, dst, _faulty_client(proxy), shard_size="128KiB", workers=4, engine=engine)
    return report, proxy.cuts


@pytest.fixture(scope="module")
def packed(client, module_bucket, loose) -> Tuple[str, Dict[str, str], Counter]:
    """The loose objects packed by the client engine through a fault proxy that cuts GETs and uploads."""
    src, expected = loose
    report, cuts = _pack_with_cuts(client, src, f"ais://{module_bucket}/packed/train-%06d.tar", "client", 3)
    assert report.index_url
    return report.index_url, expected, Counter({"cuts": cuts})


def _members_once(client: Client, index_url: str) -> Counter:
    """{(member name, sha of its data): times found} over every shard of the index."""
    got: Counter = Counter()
    for shard in load_index(index_url, client).shards:
        with ais_wds.open_object(shard.url, client) as f:
            for name, data in iter_members(f, url=shard.url):
                got[(name.rsplit("/", 1)[-1], _sha(data))] += 1
    return got


def test_cuts_during_a_pack_leave_every_sample_once_with_its_bytes(client, packed):
    index_url, expected, faults = packed
    assert _members_once(client, index_url) == Counter({(n, h): 1 for n, h in expected.items()})
    assert faults["cuts"] >= MIN_CUTS


def test_cuts_during_a_cluster_engine_pack_leave_every_sample_once_with_its_bytes(client, module_bucket, loose,
                                                                                  caplog):
    """The cluster engine under cuts: nearly every get-batch reply (longer than the cut offsets) breaks, so
    a shard whose relay broke 3 times is built by the client engine (per-object GETs that resume), with a
    warning; the pack finishes. (Before the fallback, under 200 cuts every get-batch attempt of a shard
    broke, 34 in all, and the pack ended in PackJobError.)"""
    src, expected = loose
    with caplog.at_level("WARNING", logger="ais_wds.pack.engines.cluster"):
        r, cuts = _pack_with_cuts(client, src, f"ais://{module_bucket}/packed-cl/train-%06d.tar", "cluster", 5)
    print(f"cluster engine under {cuts} cuts: {len(r.batched)} shard(s) by get-batch, {len(r.by_client)} by the "
          f"client engine, {len(r.archived)} by archive jobs, of {len(r.written)}")
    assert r.engine == "cluster" and r.index_url
    assert _members_once(client, r.index_url) == Counter({(n, h): 1 for n, h in expected.items()})
    assert cuts >= MIN_CUTS
    assert sorted(r.batched + r.by_client + r.archived) == sorted(r.written)
    assert r.by_client, "no get-batch relay broke often enough to fall back"
    assert any("building this shard with the client engine" in x.getMessage() and r.by_client[0] in x.getMessage()
               for x in caplog.records)


def test_cuts_during_aisshard_dataset_reads_lose_and_alter_nothing(client, packed):
    index_url, expected, _ = packed
    with FaultProxy(_upstream(client), cuts=CUTS, rate=1.0, max_offset=48 << 10, seed=4) as proxy:
        ds = ais_wds.AISShardDataset(index_url, _faulty_client(proxy), threads=4)
        got: Counter = Counter()
        for i in range(len(ds)):
            sample = ds[i]
            for ext in ("jpg", "cls"):
                got[(f"{sample['__key__'].rsplit('/', 1)[-1]}.{ext}", _sha(sample[ext]))] += 1
    assert proxy.cuts >= MIN_CUTS, proxy.fault_log  # as in the other cut scenarios
    assert got == Counter({(n, h): 1 for n, h in expected.items()})


# --------------------------------------------------------------------------------------------
# kills and restarts, on a private cluster


class PrivateCluster:
    """A cluster of our own (scripts/ais-local with its own state dir) for destructive tests."""

    def __init__(self, state: Path):
        refuse_in_unit_run("private_cluster (tests/system/test_faults.py)")
        self.env = {k: v for k, v in os.environ.items() if k not in ("AIS_ENDPOINT", "AIS_LOCAL_PORT",
                                                                     "AIS_LOCAL_PORT_BASE")}
        self.env["AIS_LOCAL_STATE_DIR"] = str(state)
        out = self.run("start", timeout=600)
        self.endpoint = [x for x in out.splitlines() if x.startswith("AIS_ENDPOINT=")][-1].split("=", 1)[1]

    def run(self, *args: str, timeout: float = 180) -> str:
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "ais-local"), *args], capture_output=True,
                              text=True, env=self.env, stdin=subprocess.DEVNULL, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"ais-local {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
        return proc.stdout


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(tmp_path_factory.mktemp("ais-faults"))
    try:
        yield cluster
    finally:
        try:
            cluster.run("stop", "--wipe")
        except Exception:  # noqa: BLE001 - best effort; the state dir is a tmp dir
            pass


OUTAGE_HANG_SECONDS = 120.0
"""A hang bound, not a speed bound: if the samples of the outage window have not come by then, the epoch is
waiting for the gateway; the gateway is started again so that the test ends, and fails."""


def _epoch_with_gateway_outage(cluster: PrivateCluster, samples: Iterator[Tuple[str, bytes]], total: int,
                               step: float = 0.0) -> Tuple[Counter, int, bool]:
    """Consume ``samples`` (key, data), ``step`` s each. A fifth of the way in, kill the gateway (the
    consumer waits for the kill: the readers are then a few samples ahead at most, so what follows is read
    while the gateway is down) and keep it down until another fifth of the samples has arrived, counted;
    then start it again (at once if the hang bound passes first). Counters, not clocks: returns the
    multiset of (key, sha), how many samples arrived while the gateway was down, and whether the hang
    bound restarted it."""
    hold = total // 5
    reached, finished = threading.Event(), threading.Event()
    down = {"now": False, "hung": False}

    def restart_when_held() -> None:
        down["hung"] = not reached.wait(OUTAGE_HANG_SECONDS) and not finished.is_set()
        down["now"] = False
        cluster.run("start-proxy")

    got: Counter = Counter()
    during = 0
    restarter = threading.Thread(target=restart_when_held)
    try:
        for n, (key, data) in enumerate(samples):
            got[(key, _sha(data))] += 1
            time.sleep(step)
            if down["now"]:
                during += 1
                if during == hold:
                    reached.set()
            if n == total // 5:  # streams are open, more will be opened
                cluster.run("kill-proxy")
                down["now"] = True
                restarter.start()
    finally:
        finished.set()
        if restarter.is_alive():
            reached.set()
            restarter.join()
    print(f"gateway down for {during} of {total} samples (held until {hold}); hang bound hit: {down['hung']}")
    return got, during, down["hung"]


def test_a_gateway_killed_and_restarted_mid_epoch_loses_and_duplicates_nothing(private_cluster):
    """The gateway is killed a fifth of the way in and kept down while another fifth of the samples arrives
    (counted): streams go straight to the targets from the workers' cluster maps, so the epoch goes on
    without it. (Through the gateway, the epoch waited for it: 37 samples arrived while it was down, from
    the streams already open.)"""
    from torch.utils.data import DataLoader

    pc = Client(private_cluster.endpoint, retry_seconds=90)
    pc.sdk.bucket("gw-restart").create(exist_ok=True)
    urls, expected = _shards(pc, "gw-restart", 48, 100, 32 << 10)
    ds = ais_wds.WebDataset(urls, client=pc, shuffle=False)
    want = Counter({(k, h): 1 for k, h in expected.items()})
    assert _epoch(ds) == want  # warm: the page cache, the imports
    loader = ((s["__key__"], s["bin"]) for s in DataLoader(ds, batch_size=None, num_workers=2))
    got, during, hung = _epoch_with_gateway_outage(private_cluster, loader, len(expected))
    assert got == want
    assert during >= len(expected) // 5 and not hung, "the epoch waited for the gateway"


@pytest.fixture(scope="module")
def small_objects(private_cluster) -> Tuple[Client, str, Counter]:
    """1000 objects of 4 KiB in the private cluster: its client, their prefix, and {(url, sha): 1}."""
    from concurrent.futures import ThreadPoolExecutor

    pc = Client(private_cluster.endpoint, retry_seconds=90, read_timeout=5)
    pc.sdk.bucket("small").create(exist_ok=True)
    prefix = "ais://small/objs/"
    blobs = {f"{prefix}o{i:05d}.bin": os.urandom(4 << 10) for i in range(1000)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: write_bytes(*item, pc), blobs.items()))
    return pc, prefix, Counter({(u, _sha(d)): 1 for u, d in blobs.items()})


def test_a_gateway_killed_during_batch_gets_loses_and_duplicates_nothing(private_cluster, small_objects, caplog):
    """Batch GETs go through the gateway: the first refused one turns batch GET off for a while, and the
    objects come by per-object GETs straight from the targets (the getter fetched the cluster map before
    its first batch), a fifth of them while the gateway is down (counted). (Before, each failed batch
    first paid 1.4 s of the SDK's connection retries, and the per-object path had no map.)"""
    pc, prefix, want = small_objects
    ds = ais_wds.AISIterDataset(pc, prefix, fetch="batch", batch_size=64, threads=2)
    assert Counter((url, _sha(data)) for url, data in ds) == want  # warm
    with caplog.at_level("WARNING", logger="ais_wds"):
        got, during, hung = _epoch_with_gateway_outage(private_cluster, iter(ds), sum(want.values()), 0.002)
    assert got == want
    assert any("batch GET off" in r.getMessage() for r in caplog.records), "no batch GET met the outage"
    assert during >= sum(want.values()) // 5 and not hung, "the epoch waited for the gateway"


def _read_in_child(client: Client, url: str, out: object) -> None:
    from tests.support.http_log import http_log

    try:
        with http_log() as log:
            data = ais_wds.read_bytes(url, client)
        out.put((_sha(data), log.connections, [r[1] for r in log.requests], log.retries))  # type: ignore[attr-defined]
    except Exception as e:  # noqa: BLE001 - reported to the parent
        out.put((repr(e), [], [], []))  # type: ignore[attr-defined]


def test_a_process_forked_while_the_gateway_is_down_reads_with_its_parents_cluster_map(private_cluster,
                                                                                       small_objects):
    """A DataLoader worker forked during a gateway restart needs no gateway: it starts with the cluster
    map its parent fetched, and reads straight from the target. Counted, not timed (the child's urllib3
    log records): one answer, from a target; no retry; the gateway was only tried (refused at once: the
    cluster-map refresh), never waited for."""
    import multiprocessing

    pc, prefix, want = small_objects
    (url, sha), = [k for k in want if k[0].endswith("o00007.bin")]
    ais_wds.read_bytes(f"{prefix}o00001.bin", pc)  # the parent reads: it has a cluster map
    gateway = private_cluster.endpoint.split("://", 1)[1]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    private_cluster.run("kill-proxy")
    try:
        child = ctx.Process(target=_read_in_child, args=(pc, url, out))
        child.start()
        got, connections, answered_by, retries = out.get(timeout=60)  # a hang bound: without the map it waited
        child.join()
    finally:
        private_cluster.run("start-proxy")
    print(f"a child forked while the gateway was down: connections {connections}, answers from {answered_by}")
    assert got == sha
    assert len(answered_by) == 1 and answered_by[0] != gateway and not retries, (gateway, answered_by, retries)
    assert connections.count(gateway) <= 2, (gateway, connections)


def test_a_target_killed_during_batch_gets_loses_and_duplicates_nothing(private_cluster, small_objects, caplog):
    """Target 2 is killed a fifth of the way into an epoch of batch GETs and started again at once (as a
    supervisor would). Its objects are unreachable while it is down (nothing else holds them), so the
    epoch is a stand-in for training, 5 ms per object (~5 s), and the client uses the restarted target at
    once: the batch replies the kill breaks turn batch GET off for a while (a changing cluster serves
    batch replies short or stalled for seconds), and per-object GETs reach the target as soon as it
    listens. What the kill costs in time is the benchmark's to say (without a training step it cost
    0.4-2.2 s against a 0.9-1.5 s epoch); here, counted: every object once with its bytes, and the kill
    broke a batch GET."""
    pc, prefix, want = small_objects
    ds = ais_wds.AISIterDataset(pc, prefix, fetch="batch", batch_size=64, threads=2)

    def epoch(kill_at: int = -1) -> Tuple[Counter, float]:
        got: Counter = Counter()
        t0 = time.monotonic()
        for n, (url, data) in enumerate(ds):
            got[(url, _sha(data))] += 1
            time.sleep(0.005)  # the training step
            if n == kill_at:
                private_cluster.run("kill-target", "2")
                threading.Thread(target=private_cluster.run, args=("start-target", "2")).start()
        return got, time.monotonic() - t0

    assert epoch()[0] == want  # warm
    caplog.clear()
    with caplog.at_level("WARNING", logger="ais_wds"):
        got, disturbed = epoch(kill_at=sum(want.values()) // 5)
    print(f"target kill during batch GETs: {disturbed:.1f}s for {len(got)} objects")
    assert got == want
    assert any("batch GET" in r.getMessage() for r in caplog.records), "the kill broke no batch GET"


# --------------------------------------------------------------------------------------------
# the stated deadline of a call that keeps failing (docs/reliability.md, "Deadlines")


def test_a_read_and_an_upload_that_keep_failing_give_up_within_the_stated_deadline(client, module_bucket):
    from ais_wds.errors import ReadError, WriteError

    url = f"ais://{module_bucket}/deadline.bin"
    data = os.urandom(1 << 20)
    write_bytes(url, data, client)
    retry, connect, read = 3.0, 1.0, 2.0
    # + a direct connect that times out, then the gateway's attempt with the SDK's own connection retries
    # and 5xx back-off
    bound = retry + connect + connect + read + 6.0 + 3.5
    # a stated deadline is what this tests (docs/reliability.md): the one clock bound kept in this file
    with FaultProxy(_upstream(client), cuts=10 ** 6, rate=1.0, max_offset=1) as proxy:
        fc = Client(proxy.endpoint, retry_seconds=retry, connect_timeout=connect, read_timeout=read)
        for call, err in ((lambda: ais_wds.read_bytes(url, fc), ReadError),
                          (lambda: write_bytes(f"ais://{module_bucket}/deadline-w.bin", data, fc), WriteError)):
            t0 = time.monotonic()
            with pytest.raises(err) as info:
                call()
            elapsed = time.monotonic() - t0
            print(f"{err.__name__} after {elapsed:.1f}s (bound {bound}s): {info.value}")
            assert elapsed < bound and url.rsplit("/", 1)[0] in str(info.value)
        # the upload's connections were made and then reset: not "cannot connect", and what to do
        assert "broke mid-upload (ConnectionResetError" in str(info.value), str(info.value)
        assert "cannot connect" not in str(info.value) and "nothing was committed" in str(info.value)
