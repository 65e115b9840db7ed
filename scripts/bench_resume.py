"""Benchmark section "resume": what exact resume costs.

* State tracking: ``ais_wds.WebDataset`` (which counts every sample for its resume state) against the
  same reader and tar stage without any tracking (``open_object`` + ``tar_samples`` over the shards),
  at 1 KiB and 100 KiB samples, interleaved rounds, medians.
* Time to resume mid-shard: from ``load_state_dict`` to the first sample, 90% into one shard of 1 KiB
  samples, with a shard index (one range GET from the next sample's offset) and without (the shard is
  streamed again from its start and the consumed samples are parsed and skipped).

    AIS_ENDPOINT=... .venv/bin/python scripts/bench_resume.py [--scale S]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ais_wds
from ais_wds import Client, open_object, write_bytes
from ais_wds.shard_index.index import build_index
from ais_wds.streaming.stages import tar_samples


def _shard(sample_size: int, total: int, tag: int) -> bytes:
    buf = io.BytesIO()
    body = bytes(sample_size)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for j in range(max(1, total // (sample_size + 512))):
            info = tarfile.TarInfo(f"k{tag:02d}-{j:08d}.bin")
            info.size = sample_size
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _make(client: Client, bucket: str, prefix: str, sample_size: int, shard_bytes: int, shards: int) -> List[str]:
    urls = [f"ais://{bucket}/{prefix}/s-{i:04d}.tar" for i in range(shards)]
    for i, url in enumerate(urls):
        write_bytes(url, _shard(sample_size, shard_bytes, i), client)
    return urls


def _plain(urls: List[str], client: Client) -> int:
    n = 0
    for _ in tar_samples({"url": u, "stream": open_object(u, client, bufsize=256 << 10)} for u in urls):
        n += 1
    return n


def _tracked(urls: List[str], client: Client) -> int:
    n = 0
    ds = ais_wds.WebDataset(urls, client=client, shuffle=False)  # (no listing: the URLs are given)
    for _ in ds:
        n += 1
    return n


def run(client: Any, scale: float = 1.0, rounds: int = 5) -> Dict[str, Any]:
    client = Client.of(client)
    bucket = f"bench-resume-{uuid.uuid4().hex[:8]}"
    client.sdk.bucket(bucket).create(exist_ok=True)
    shard_bytes = max(1 << 20, int((64 << 20) * scale))
    try:
        tracking: Dict[str, Dict[str, Any]] = {}
        for label, size in (("1 KiB samples", 1024), ("100 KiB samples", 100 * 1024)):
            urls = _make(client, bucket, f"t{size}", size, shard_bytes, 2)
            _plain(urls, client)  # warm
            times: Dict[str, List[float]] = {"untracked": [], "tracked": []}
            n = 0
            for _ in range(rounds):
                for name, fn in (("untracked", _plain), ("tracked", _tracked)):
                    t = time.perf_counter()
                    n = fn(urls, client)
                    times[name].append(time.perf_counter() - t)
            plain, tracked = statistics.median(times["untracked"]), statistics.median(times["tracked"])
            tracking[label] = {"samples": n, "untracked samples/s": round(n / plain),
                               "ais_wds.WebDataset samples/s": round(n / tracked),
                               "cost %": round(100 * (tracked - plain) / plain, 1),
                               "spread % (max-min/median, untracked)":
                                   round(100 * (max(times["untracked"]) - min(times["untracked"])) / plain, 1)}
        resume: Dict[str, Dict[str, Any]] = {}
        urls = _make(client, bucket, "resume", 1024, int((64 << 20) * max(scale, 0.25)), 1)
        index = build_index(urls, client)
        n = len(index)
        for label, idx in (("with index (range GET)", index), ("without index (re-stream, skip)", None)):
            ds = ais_wds.WebDataset(urls, client=client, shuffle=False, index=idx)
            it = iter(ds)
            for _ in range(int(n * 0.9)):
                next(it)
            state = ds.state_dict()
            secs = []
            for _ in range(rounds):
                again = ais_wds.WebDataset(urls, client=client, shuffle=False, index=idx)
                t = time.perf_counter()
                again.load_state_dict(state)
                next(iter(again))
                secs.append(time.perf_counter() - t)
            resume[label] = {"samples in shard": n, "resumed at sample": int(n * 0.9),
                             "seconds to first sample": round(statistics.median(secs), 4)}
        return {"state_tracking": tracking, "resume_mid_shard": resume, "shard_bytes": shard_bytes}
    finally:
        try:
            client.sdk.bucket(bucket).delete(missing_ok=True)
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    import json

    print(json.dumps(run(Client(), a.scale, a.rounds), indent=1))
