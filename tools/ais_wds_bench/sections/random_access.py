"""Section 3, random access inside shards: samples/s of AISShardDataset (one range GET per sample; batched
``__getitems__``) against one AIS ``archpath`` GET per member and downloading the whole shard per access.

    AIS_ENDPOINT=http://127.0.0.1:PORT .venv/bin/python -m ais_wds_bench.sections.random_access [--scale 1.0]

``run(client, scale)`` creates its own bucket and deletes it afterwards; it returns a dict of numbers
(printed as JSON when run alone).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Tuple

from ais_wds import tarwrite
from ais_wds.client import Client
from ais_wds.reader import read_bytes, read_member
from ais_wds.shard_index import build_index
from ais_wds.shard_index.dataset import AISShardDataset, parse_sample
from ais_wds.writer import write_bytes

from ..data import THREADS, rate, temp_buckets
from ..report import NOT_RUN, detail, goal
from . import run_alone

NUMBER = 3
TITLE = "Random access inside shards"

SHARD_BYTES = 64 << 20
"""Random-access shards have this size at every scale: the archpath baseline's cost depends on it."""


def _shard_bytes(first: int, blob: bytes, rnd: random.Random) -> Tuple[bytes, int]:
    """A ~64 MiB tar of 3-file samples (~20 KB image-like blob, label, json), numbered from ``first``."""
    out = bytearray()
    i = first
    while len(out) < SHARD_BYTES - (64 << 10):
        size = rnd.randint(10_000, 30_000)
        start = rnd.randint(0, len(blob) - size)
        files = [(f"train/{i:07d}.jpg", blob[start:start + size]), (f"train/{i:07d}.cls", str(i % 1000).encode()),
                 (f"train/{i:07d}.json", json.dumps({"id": i, "w": 224, "h": 224}).encode())]
        for name, data in files:
            out += tarwrite.member_header(name, len(data)) + data + bytes(tarwrite.padding(len(data)))
        i += 1
    out += tarwrite.END_OF_ARCHIVE
    return bytes(out), i


def run(client: Client, scale: float = 1.0) -> Dict[str, Any]:
    """Samples/s for random access, by method.

    Shards are always 64 MiB (about 3,000 samples of 3 files); ``scale`` sets their number (at least 2)
    and the number of accesses. The index is built with ``build_index`` (listing + batched header check).
    """
    accesses = max(100, int(600 * scale))
    rnd = random.Random(1)
    blob = os.urandom(64 << 10)
    with temp_buckets(client, "ra") as (dst,):
        first = 0
        for k in range(max(2, round(4 * scale))):
            data, first = _shard_bytes(first, blob, rnd)
            write_bytes(f"ais://{dst}/shard-{k:05d}.tar", data, client)
        t = time.perf_counter()
        methods: Dict[str, int] = {}
        index = build_index(f"ais://{dst}/shard-", client,
                            on_shard=lambda url, how: methods.__setitem__(how, methods.get(how, 0) + 1))
        index_s = time.perf_counter() - t
        ds = AISShardDataset(index, client)
        spans = [(url, s) for url, s in index.samples()]
        rnd = random.Random(1)
        picks = [rnd.randrange(len(ds)) for _ in range(accesses)]

        ds[picks[0]]  # warm the connection pool
        t = time.perf_counter()
        for i in picks:
            ds[i]
        range_1t = rate(len(picks), time.perf_counter() - t)

        batch = 64
        t = time.perf_counter()
        for k in range(0, len(picks), batch):
            ds.__getitems__(picks[k:k + batch])
        range_batched = rate(len(picks), time.perf_counter() - t)

        def by_archpath(i: int) -> Dict[str, bytes]:
            url, sample = spans[i]
            return {name: read_member(url, name, client) for name, _, _ in sample.members}

        few = picks[: max(50, len(picks) // 4)]
        t = time.perf_counter()
        for i in few:
            by_archpath(i)
        archpath_1t = rate(len(few), time.perf_counter() - t)
        with ThreadPoolExecutor(THREADS) as pool:
            t = time.perf_counter()
            list(pool.map(by_archpath, few))
            archpath_threads = rate(len(few), time.perf_counter() - t)

        def by_whole_shard(i: int) -> Dict[str, Any]:
            url, sample = spans[i]
            data = read_bytes(url, client)
            return parse_sample(data[sample.offset: sample.offset + sample.length], url)

        fewer = picks[:10]
        t = time.perf_counter()
        for i in fewer:
            by_whole_shard(i)
        whole_1t = rate(len(fewer), time.perf_counter() - t)

        # correctness: every method returns the same sample
        i = picks[0]
        url, sample = spans[i]
        assert {k: v for k, v in ds[i].items() if not k.startswith("__")} == {
            name.rsplit("/", 1)[1].split(".", 1)[1]: data for name, data in by_archpath(i).items()}
        return {
            "samples": len(ds), "shards": len(ds.urls), "shard_MiB": SHARD_BYTES >> 20, "members_per_sample": 3,
            "accesses": len(picks), "build_index_s": round(index_s, 2), "build_index_shards_by_method": methods,
            "shard_dataset_samples_per_s": range_1t,
            "shard_dataset_batched_samples_per_s": range_batched,
            "archpath_per_member_samples_per_s": archpath_1t,
            f"archpath_per_member_{THREADS}_threads_samples_per_s": archpath_threads,
            "whole_shard_per_access_samples_per_s": whole_1t,
            "speedup_vs_archpath_single_thread": round(range_1t / archpath_1t, 1),
            f"speedup_batched_vs_archpath_{THREADS}_threads": round(range_batched / archpath_threads, 1),
        }



def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    section = results.get("random_access", NOT_RUN)
    res = section.get("result") or {}
    return [goal("random access: >= 10x archpath GET per member", res.get("speedup_vs_archpath_single_thread"), 10.0,
                 detail(res, ("shard_dataset_samples_per_s", "archpath_per_member_samples_per_s"))
                 or section.get("reason", ""))]


if __name__ == "__main__":
    sys.exit(run_alone(run, __doc__))
