"""Section 23, AIS's own shard index vs ours: build time, per-sample read latency and throughput.

On section 22's shard sets (24 shards x 250 samples of 10 KiB or 100 KiB, ``.bin`` + ``.cls``):

* build: ``build_index`` (ours: msgpack offsets, from the archive listing or by streaming each shard) vs
  ``ais-wds index --ais`` (AIS's ``index-shard`` job, waited for);
* latency, one request at a time, ``samples`` random samples: a sample by byte range through our index
  (one range GET of both members with their headers) vs by name through AIS's index (``archpath`` GET of
  each of the two members); and ``archpath`` on a copy of 4 shards that AIS has not indexed (it scans);
* throughput, 16 threads: the same two ways, samples/s.

    AIS_ENDPOINT=... .venv/bin/python -m ais_wds_bench.sections.ais_index [--scale S]
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Tuple

import ais_wds
from ais_wds.objects.ais_index import index_shards
from ais_wds.reader import read_bytes, read_member, read_range
from ais_wds.shard_index import build_index
from ais_wds.writer import write_bytes

from ..data import ensure_bucket, ensure_shard_set, record_size, temp_buckets
from ..report import NOT_RUN, goal
from . import run_alone

NUMBER = 23
TITLE = "AIS's shard index (archpath) vs ours (byte ranges)"

BUCKET = "bench-ais-wds"
SHARDS, PER_SHARD = 24, 250


def _latency_ms(fn: Callable[[Any], Any], items: List[Any]) -> Dict[str, float]:
    times = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"median ms": statistics.median(times), "p90 ms": times[int(len(times) * 0.9)]}


def _throughput(fn: Callable[[Any], Any], items: List[Any], threads: int = 16) -> float:
    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, items))
    return len(items) / (time.perf_counter() - t)


def one_size(client: ais_wds.Client, sample_size: int, samples: int, scratch: str) -> Dict[str, Any]:
    shards = ensure_shard_set(client, BUCKET, sample_size, PER_SHARD * record_size(sample_size) + 1024, SHARDS,
                              log=lambda *a: print(*a, file=sys.stderr))
    prefix = f"ais://{BUCKET}/{shards.prefix}"
    t = time.perf_counter()
    index = build_index(prefix, client)
    ours_s = time.perf_counter() - t
    _, ais_s = index_shards(client, prefix)
    located: List[Tuple[str, int, int, str]] = [(shard.url, off, ln, key) for shard in index.shards
                                               for off, ln, key in zip(shard.offsets, shard.lengths, shard.keys)]
    rng = random.Random(sample_size)
    picks = rng.sample(located, samples)

    def by_range(item: Tuple[str, int, int, str]) -> int:
        url, off, ln, _ = item
        return len(read_range(url, off, off + ln, client))

    def by_archpath(item: Tuple[str, int, int, str]) -> int:
        url, _, _, key = item
        return len(read_member(url, f"{key}.bin", client)) + len(read_member(url, f"{key}.cls", client))

    # a copy of 4 shards that AIS has not indexed: archpath scans the shard
    copies = {}
    for url in shards.ais_urls()[:4]:
        copy = f"ais://{scratch}/{url.rsplit('/', 1)[1]}"
        write_bytes(copy, read_bytes(url, client), client)
        copies[url] = copy
    unindexed = [(copies[u], o, n, k) for u, o, n, k in picks if u in copies][: max(20, samples // 6)]
    assert by_range(picks[0]) > sample_size and by_archpath(picks[0]) > sample_size
    row: Dict[str, Any] = {"shards": SHARDS, "samples per shard": PER_SHARD, "build s, ours (24 shards)": ours_s,
                           "build s, AIS job (24 shards, maybe indexed before)": ais_s}
    for name, fn, items in (("byte range (our index)", by_range, picks),
                            ("archpath x2 (AIS index)", by_archpath, picks),
                            ("archpath x2 (no index: scan)", by_archpath, unindexed)):
        lat = _latency_ms(fn, items)
        row[f"{name}: median ms"] = lat["median ms"]
        row[f"{name}: p90 ms"] = lat["p90 ms"]
        row[f"{name}: samples/s, 16 threads"] = _throughput(fn, items)
    # build time on shards nobody indexed yet: the 4 copies (after the scan measurement above)
    prefix_copies = f"ais://{scratch}/shard-"
    t = time.perf_counter()
    build_index(prefix_copies, client)
    row["build s per shard, ours (4 fresh shards)"] = (time.perf_counter() - t) / len(copies)
    _, fresh_s = index_shards(client, prefix_copies)
    row["build s per shard, AIS job (4 fresh shards)"] = fresh_s / len(copies)
    for copy in copies.values():
        client.object(copy).delete()
    row["throughput ours / AIS index"] = (row["byte range (our index): samples/s, 16 threads"]
                                          / row["archpath x2 (AIS index): samples/s, 16 threads"])
    return row


def run(client: ais_wds.Client, scale: float = 1.0) -> Dict[str, Any]:
    ensure_bucket(client, BUCKET)
    samples = max(60, int(300 * min(scale, 1.0)))
    with temp_buckets(client, "aisidx") as (scratch,):
        return {"index": {"10 KiB": one_size(client, 10 << 10, samples, scratch),
                          "100 KiB": one_size(client, 100 << 10, samples, scratch)}}


def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows = (results.get("ais_index", NOT_RUN).get("result") or {}).get("index") or {}
    return [goal("shard index: byte ranges (ours) vs archpath (AIS's index), samples/s at 10 KiB",
                 (rows.get("10 KiB") or {}).get("throughput ours / AIS index"), 1.0,
                 detail="a comparison, not a promise: >= 1 means ours is faster")]


if __name__ == "__main__":
    sys.exit(run_alone(run, __doc__))
