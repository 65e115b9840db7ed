#!/usr/bin/env python3
"""Benchmark section "scale": listings of millions of objects on one machine.

* a synthetic listing of ``10M x scale`` objects (URLs ``ais://bench-scale/train/nNNNN/img-NNNNNNNNNN.jpg``,
  names of 40 characters): build rate, bytes/object held and at peak (tracemalloc), save and load
  time, load peak, file size; ``epoch_order`` + ``partition`` for rank 0 of 8 (peak bytes/object);
  a pack plan of ``1M x scale`` of those objects (bytes/object held by the plan);
* a real listing in the local cluster of ``100k x scale`` objects (created once, kept for later
  runs): objects/s and bytes/object.

Also runnable alone: ``.venv/bin/python scripts/bench_scale.py [--scale 1] [--real 0]``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Tuple

from ais_wds.listing import Listing, list_objects
from ais_wds.pack.plan import PackOptions, make_plan, source_objects
from ais_wds.partition import Part, epoch_order, partition


def _measured(fn: Callable[[], Any]) -> Tuple[Any, float, int, int]:
    """``(result, seconds, bytes still held, peak bytes)`` of ``fn()`` under tracemalloc."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, held - base, peak - base


def _url(i: int) -> str:
    return f"ais://bench-scale/train/n{i % 1000:04d}/img-{i:010d}.jpg"


def synthetic(n: int, plan_n: int) -> Dict[str, Any]:
    def build() -> Listing:
        out = Listing()
        for i in range(n):
            out.append(_url(i), 100 << 10)
        return out

    listing, build_s, held, peak = _measured(build)
    row: Dict[str, Any] = {"objects": n, "name_chars": len(_url(0)) - len("ais://bench-scale/"),
                           "build_objects_per_s": n / build_s, "held_bytes_per_object": held / n,
                           "peak_bytes_per_object": peak / n}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "listing.msgpack")
        _, save_s, _, _ = _measured(functools.partial(listing.save, path))
        row.update(save_s=save_s, file_bytes_per_object=os.path.getsize(path) / n)
        del listing
        loaded, load_s, _, load_peak = _measured(lambda: Listing.load(path))
        row.update(load_s=load_s, load_objects_per_s=n / load_s, load_peak_bytes_per_object=load_peak / n)

    def share() -> int:
        return len(partition(epoch_order(n, seed=0), Part(0, 8)))

    _, part_s, _, part_peak = _measured(share)
    row.update(partition_rank0_of_8_s=part_s, partition_peak_bytes_per_object=part_peak / n)
    sub = loaded.select(range(plan_n))
    del loaded
    objs = source_objects("ais://bench-scale/", sub.urls, sub.sizes)
    del sub
    plan, plan_s, plan_held, plan_peak = _measured(
        lambda: make_plan(objs, "ais://dst/train-%06d.tar", PackOptions(shard_size=256 << 20)))
    row.update(plan_objects=plan_n, plan_s=plan_s, plan_held_bytes_per_object=plan_held / plan_n,
               plan_peak_bytes_per_object=plan_peak / plan_n, plan_shards=len(plan.shards))
    return row


def real(client: Any, n: int) -> Dict[str, Any]:
    from ais_wds.writer import write_bytes

    bucket = f"bench-scale-{n}"
    client.sdk.bucket(bucket).create(exist_ok=True)
    have = len(list_objects(f"ais://{bucket}/", client, allow_empty=True))
    if have < n:
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda i: write_bytes(f"ais://{bucket}/train/img-{i:010d}.jpg", b"x", client),
                          range(have, n)))
    listing, seconds, held, peak = _measured(lambda: list_objects(f"ais://{bucket}/", client))
    return {"objects": len(listing), "list_s": seconds, "list_objects_per_s": len(listing) / seconds,
            "held_bytes_per_object": held / len(listing), "peak_bytes_per_object": peak / len(listing)}


def run(client: Any, scale: float = 1.0) -> Dict[str, Any]:
    n = max(100_000, int(10_000_000 * scale))
    out: Dict[str, Any] = {"synthetic": {"listing": synthetic(n, max(10_000, int(1_000_000 * scale)))}}
    if client is not None:
        out["real"] = {"listing": real(client, max(10_000, int(100_000 * scale)))}
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--real", type=int, default=0, help="also list this many real objects in the cluster")
    a = p.parse_args()
    result: Dict[str, Any] = {"synthetic": synthetic(max(100_000, int(10_000_000 * a.scale)),
                                                     max(10_000, int(1_000_000 * a.scale)))}
    if a.real:
        from ais_wds import Client

        result["real"] = real(Client(), a.real)
    print(json.dumps(result, indent=1))
