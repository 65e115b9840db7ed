"""``ais_wds.monitor`` and ``ais_wds.metrics``: the numbers of a monitored epoch add up to what was
delivered and read (gathered from 2 forked or spawned DataLoader workers), data-wait rises when the
workers get slower, a target killed mid-shard shows up as a resumed stream, and the same numbers come out
of a real Prometheus scrape and a TensorBoard event file."""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.request
from typing import Dict, List

import pytest

import ais_wds
from ais_wds import write_bytes
from ais_wds.metrics import snapshot
from ais_wds.metrics.loop import samples_in
from tests.support.ports import free_port
from tests.support.tars import tar_bytes

torch_data = pytest.importorskip("torch.utils.data")
DataLoader = torch_data.DataLoader

SHARDS, PER_SHARD = 4, 25


@pytest.fixture(scope="module")
def shards(client, module_bucket) -> Dict[str, object]:
    """4 shards of 25 samples (bin of 0-3000 bytes, cls); their total size in bytes and every key."""
    rng = random.Random(5)
    total, keys = 0, set()
    for s in range(SHARDS):
        members = []
        for j in range(PER_SHARD):
            key = f"m{s}-{j:02d}"
            keys.add(key)
            members += [(f"{key}.bin", rng.randbytes(rng.randrange(3000))), (f"{key}.cls", str(j % 4).encode())]
        data = tar_bytes(members)
        total += len(data)
        write_bytes(f"ais://{module_bucket}/m/train-{s:06d}.tar", data, client)
    return {"prefix": f"ais://{module_bucket}/m/", "bytes": total, "keys": keys}


def _loader(shards, client, context="fork", stage=None, workers=2):
    ds = ais_wds.WebDataset(shards["prefix"], client=client, shuffle=False)
    if stage is not None:
        ds = ds.map(stage)
    return DataLoader(ds, batch_size=4, num_workers=workers, multiprocessing_context=context if workers else None,
                      collate_fn=list)


def _keys(batches) -> List[str]:
    return [s["__key__"] for b in batches for s in b]


def slow_stage(sample):
    time.sleep(0.05)
    return sample


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_two_worker_epoch_adds_up_to_what_was_delivered_and_read(shards, client, context):
    """The monitor's numbers start at its first iteration; the process-wide snapshot has everything."""
    ais_wds.read_bytes(f"{shards['prefix']}train-000000.tar", client)  # before: not the monitor's
    monitored = ais_wds.monitor(_loader(shards, client, context), log_every=0)
    batches = []
    for batch in monitored:
        batches.append(batch)
        if len(batches) == 3:  # readable at any time, from the training loop
            assert monitored.snapshot()["samples"] == sum(len(b) for b in batches)
    keys = _keys(batches)
    assert sorted(keys) == sorted(shards["keys"])
    snap = monitored.snapshot()
    assert snap["samples"] == len(keys) == SHARDS * PER_SHARD
    assert snap["batches"] == len(batches)
    assert snap["read_bytes"] == shards["bytes"]  # every shard read once, whole, by the workers
    assert set(snap["workers"]) == {0, 1}
    assert sum(w["read_bytes"] for w in snap["workers"].values()) == shards["bytes"]
    assert all(w["shards_opened"] == 2 for w in snap["workers"].values())
    assert snap["shards_opened"] == SHARDS and snap["shards_failed"] == 0
    assert snap["gets"] == snap["gets_direct"] + snap["gets_gateway"] == SHARDS
    assert snap["ttfb"]["count"] == SHARDS and snap["ttfb"]["p50"] is not None
    assert snap["data_wait"]["count"] == len(batches) + 1  # the wait for the end counts too
    assert snap["main"]["samples"] == len(keys) and snap["main"]["read_bytes"] == 0
    assert snapshot()["read_bytes"] >= shards["bytes"]  # the process-wide view includes this monitor's workers


def test_data_wait_rises_when_the_workers_decode_slowly(shards, client):
    fast = ais_wds.monitor(_loader(shards, client), log_every=0)
    slow = ais_wds.monitor(_loader(shards, client, stage=slow_stage), log_every=0)
    assert len(_keys(fast)) == len(_keys(slow)) == SHARDS * PER_SHARD
    fast_wait, slow_wait = fast.snapshot()["data_wait"], slow.snapshot()["data_wait"]
    # each worker sleeps 50 samples x 50 ms; the loop does nothing, so it waits at least that long
    asleep = PER_SHARD * SHARDS / 2 * 0.05
    assert slow_wait["sum"] >= 0.9 * asleep
    assert slow_wait["sum"] >= fast_wait["sum"] + 0.5 * asleep, (fast_wait, slow_wait)


def test_a_target_killed_mid_shard_shows_up_as_a_resumed_stream(client, bucket, local_cluster):
    url = f"ais://{bucket}/big-000000.tar"
    data = tar_bytes([(f"k{i:04d}.bin", bytes([i % 256]) * 65536) for i in range(500)])
    write_bytes(url, data, client)
    target = local_cluster.target_of(client, url)
    ds = ais_wds.WebDataset(url, client=client, shuffle=False)
    monitored = ais_wds.monitor(DataLoader(ds, batch_size=None, num_workers=1), log_every=0)
    got, restarter = 0, None
    try:
        for _ in monitored:
            got += 1
            if got == 40:
                local_cluster.kill_target(target)
                restarter = threading.Timer(2.0, local_cluster.start_target, args=(target,))
                restarter.start()
    finally:
        if restarter is not None:
            restarter.join()
    snap = monitored.snapshot()
    assert got == snap["samples"] == 500
    assert snap["resumed_streams"] >= 1 and snap["retries"] >= 1, snap
    assert snap["workers"][0]["resumed_streams"] == snap["resumed_streams"]
    assert snap["shards_opened"] == 1 and snap["shards_failed"] == 0
    # a resume continues at the offset reached (no byte twice); the tar walk stops at the end-of-archive
    # blocks, so only the buffered part of the trailing zeros is read
    members_end = 500 * (512 + 65536)
    assert members_end < snap["read_bytes"] <= len(data)
    assert snap["gets"] == 1 + snap["resumed_streams"]


def test_a_prometheus_scrape_reports_the_epoch(shards, client, monkeypatch):
    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    monkeypatch.setenv("AIS_WDS_METRICS_PORT", str(port))
    before = snapshot()
    batches = list(ais_wds.monitor(_loader(shards, client), log_every=0))
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert all(name.startswith("ais_wds_") for name in families), sorted(families)

    def total(name: str) -> float:
        return sum(s.value for s in families[name].samples if s.name == name + "_total")

    assert total("ais_wds_samples") - before["samples"] == SHARDS * PER_SHARD == len(_keys(batches))
    assert total("ais_wds_bytes") - before["read_bytes"] == shards["bytes"]
    workers = {s.labels["worker"] for s in families["ais_wds_bytes"].samples}
    assert {"main", "0", "1"} <= workers
    wait = [name for name in families if "wait" in name]
    assert wait == ["ais_wds_data_wait_seconds"]
    count = next(s.value for s in families[wait[0]].samples if s.name.endswith("_count"))
    assert count - before["data_wait"]["count"] == len(batches) + 1
    assert {"ais_wds_get_ttfb_seconds", "ais_wds_gets", "ais_wds_retries", "ais_wds_resumed_streams",
            "ais_wds_shards_opened", "ais_wds_shards_failed", "ais_wds_batch_get_fallbacks"} <= set(families)


def test_tensorboard_scalars_are_written_and_read_back(shards, client, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monitored = ais_wds.monitor(_loader(shards, client), log_every=0, tensorboard=str(tmp_path))
    batches = list(monitored)
    monitored.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"ais_wds/samples", "ais_wds/samples_per_s", "ais_wds/data_wait_fraction", "ais_wds/read_MB_per_s",
            "ais_wds/shards_opened"} <= tags
    last = events.Scalars("ais_wds/samples")[-1]
    assert last.value == SHARDS * PER_SHARD and last.step == len(batches)
    assert events.Scalars("ais_wds/shards_opened")[-1].value == SHARDS


def test_a_log_line_says_whether_the_loop_waits_for_data(shards, client, caplog):
    with caplog.at_level(logging.INFO, logger="ais_wds.metrics"):
        list(ais_wds.monitor(_loader(shards, client, workers=0), log_every=1e-9))
    lines = [r.getMessage() for r in caplog.records if "samples/s" in r.getMessage()]
    assert lines and "the loop waited for data" in lines[-1] and "GET time to first byte" in lines[-1]


def test_samples_in_counts_the_usual_batch_shapes():
    torch = pytest.importorskip("torch")
    assert samples_in(torch.zeros(8, 3)) == 8
    assert samples_in([{"__key__": "a"}, {"__key__": "b"}]) == 2  # collate_fn=list
    assert samples_in({"__key__": ["a", "b", "c"], "jpg": torch.zeros(3, 2)}) == 3  # default_collate of dicts
    assert samples_in([["a", "b"], torch.zeros(2, 4), torch.tensor([1, 2])]) == 2  # default_collate of tuples
    assert samples_in(("key", b"x", 3)) == 1  # one sample (batch_size=None)
    assert samples_in({"__key__": "a", "bin": b"x"}) == 1


def test_a_chrome_trace_has_every_workers_shard_opens_and_the_loops_waits(shards, client, tmp_path):
    import json
    import os

    path = tmp_path / "trace.json"
    monitored = ais_wds.monitor(_loader(shards, client), log_every=0, trace=str(path))
    batches = list(monitored)
    monitored.close()
    assert "AIS_WDS_TRACE_DIR" not in os.environ
    events = json.loads(path.read_text())["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M"}
    assert sorted(names.values()) == ["main", "worker 0", "worker 1"]
    opens = [e for e in events if e["name"] == "GET open"]
    assert sorted(e["args"]["url"] for e in opens) == [f"{shards['prefix']}train-{s:06d}.tar" for s in range(SHARDS)]
    assert {names[e["pid"]] for e in opens} == {"worker 0", "worker 1"}
    waits = [e for e in events if e["name"] == "wait for a batch"]
    assert len(waits) == len(batches) and {names[e["pid"]] for e in waits} == {"main"}
    assert all(e["ph"] == "X" and e["dur"] >= 0 for e in opens + waits)


def test_histogram_quantiles_fall_in_the_bucket_of_the_observations():
    from ais_wds.metrics import core

    slot = core.Slot()
    for seconds in [0.0012] * 90 + [0.3] * 9 + [20.0]:  # 90 at 1.2 ms, 9 at 300 ms, 1 above the last bound
        slot.observe("ttfb", seconds)
    got = core.summarize(slot.words)["ttfb"]
    assert got["count"] == 100 and abs(got["sum"] - (90 * 0.0012 + 9 * 0.3 + 20.0)) < 1e-3
    assert 0.001 <= got["p50"] <= 0.0025  # 1.2 ms lies in the (1 ms, 2.5 ms] bucket
    assert 0.25 <= got["p95"] <= 0.5 and got["p99"] >= 0.25
    assert got["buckets"][-1] == 1  # 20 s: the open last bucket
    assert core.quantile([0] * core.NBUCKETS, 0.5) is None
