"""Section 7, scale: listings of millions of objects on one machine.

* a synthetic listing of ``10M x scale`` objects (URLs ``ais://bench-scale/train/nNNNN/img-NNNNNNNNNN.jpg``,
  names of 40 characters): build rate, bytes/object held and at peak (tracemalloc), save and load
  time, load peak, file size; ``epoch_order`` + ``partition`` for rank 0 of 8 (peak bytes/object; wall and
  CPU seconds without tracemalloc; ``random.shuffle`` vs ``epoch_order`` CPU seconds on up to 1M entries);
  a pack plan of ``1M x scale`` of those objects (bytes/object held by the plan and at the planning peak,
  from a prebuilt SourceObject list and from the listing as ``ais-wds pack`` plans; the allocation sites
  that hold the plan); ``--plan 10000000`` plans that many alone (peak RSS growth above 2M objects);
* a real listing in the local cluster of ``100k x scale`` objects (created once, kept for later
  runs; more than 50k new objects are made by one AIS promote job from /var/lib/ais/promote):
  objects/s and bytes/object (``--real 1000000`` for the 1M-object figure).

Also runnable alone: ``.venv/bin/python -m ais_wds_bench.sections.scale [--scale 1] [--real 0] [--plan N]``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import random
import shutil
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Optional, Tuple

from ais_wds.listing import Listing, list_objects
from ais_wds.pack.plan import PackOptions, iter_source_objects, make_plan, source_objects
from ais_wds.partition import Part, epoch_order, partition

NUMBER = 7
TITLE = "Scale: 10M-object listings, partition and plan memory"


def _measured(fn: Callable[[], Any], sites: Optional[list] = None) -> Tuple[Any, float, int, int]:
    """``(result, seconds, bytes still held, peak bytes)`` of ``fn()`` under tracemalloc; with ``sites`` (a
    list), also the six ais_wds allocation sites (file:line, bytes) that hold the most of the result."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    held, peak = tracemalloc.get_traced_memory()
    if sites is not None:
        stats = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*ais_wds*")]).statistics("lineno")
        sites += [(f"{os.path.relpath(x.traceback[0].filename)}:{x.traceback[0].lineno}", x.size) for x in stats[:6]]
    tracemalloc.stop()
    return out, seconds, held - base, peak - base


def _rss_peak(fn: Callable[[], Any]) -> Tuple[Any, float, int]:
    """``(result, wall seconds, growth of the process's peak RSS)`` of ``fn()``, no tracemalloc (Linux:
    the peak is reset through /proc/self/clear_refs first)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base, t = _vm_kb("VmRSS"), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t, (_vm_kb("VmHWM") - base) << 10


def _vm_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _timed(fn: Callable[[], Any]) -> Tuple[Any, float, float]:
    """``(result, wall seconds, CPU seconds of this process)`` of ``fn()``, no tracemalloc."""
    gc.collect()
    cpu, t = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - cpu


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
    _, plain_s, plain_cpu = _timed(share)  # without tracemalloc, which slows every allocation
    row.update(partition_rank0_of_8_s_plain=plain_s, partition_rank0_of_8_cpu_s=plain_cpu)
    ref_n = min(n, 1_000_000)  # random.shuffle itself (the order's definition), on at most 1M entries
    _, _, ref_cpu = _timed(lambda: random.Random("ais_wds:0:0").shuffle(list(range(ref_n))))
    _, _, fast_cpu = _timed(lambda: epoch_order(ref_n, seed=0))
    row.update(shuffle_reference_objects=ref_n, random_shuffle_cpu_s=ref_cpu, epoch_order_cpu_s=fast_cpu)
    sub = loaded.select(range(plan_n))
    del loaded
    row.update(plan(sub))
    return row


def plan(listing: Listing, rss_only: bool = False) -> Dict[str, Any]:
    """A pack plan of ``listing`` (256 MiB shards): bytes/object held by the plan and at the planning peak,
    from a prebuilt list of SourceObjects (tracemalloc; the list itself not counted) and from the listing
    through :func:`iter_source_objects` as ``ais-wds pack`` plans (tracemalloc, and peak RSS growth without
    it); the allocation sites that hold the finished plan; CPU seconds."""
    import numpy  # noqa: F401  (the planner's sort; loaded before any peak is taken, as pack has it loaded)

    n = len(listing)
    options = PackOptions(shard_size=256 << 20)

    def from_listing() -> Any:
        return make_plan(iter_source_objects("ais://bench-scale/", listing.urls, listing.sizes),
                         "ais://dst/train-%06d.tar", options)

    row: Dict[str, Any] = {"plan_objects": n}
    result, rss_s, rss_peak = _rss_peak(from_listing)
    row.update(plan_from_listing_s_plain=rss_s, plan_from_listing_rss_peak_bytes_per_object=rss_peak / n,
               plan_shards=len(result.shards))
    del result
    if rss_only:
        return row
    prebuilt = functools.partial(make_plan, source_objects("ais://bench-scale/", listing.urls, listing.sizes),
                                 "ais://dst/train-%06d.tar", options)
    result, plan_s, plan_held, plan_peak = _measured(prebuilt)
    row.update(plan_s=plan_s, plan_held_bytes_per_object=plan_held / n, plan_peak_bytes_per_object=plan_peak / n)
    del result
    _, plan_plain_s, plan_cpu = _timed(prebuilt)
    row.update(plan_s_plain=plan_plain_s, plan_cpu_s=plan_cpu)
    del prebuilt
    sites: list = []
    result, _, held, peak = _measured(from_listing, sites)
    row.update(plan_from_listing_held_bytes_per_object=held / n, plan_from_listing_peak_bytes_per_object=peak / n)
    row["plan_held_by"] = {site: round(size / n, 1) for site, size in sites}  # bytes/object per allocation site
    return row
    return row


PROMOTE_ROOT = "/var/lib/ais/promote"  # the only source tree AIS v1.5.0 promotes from
PROMOTE_OVER = 50_000  # more objects than this are made by a promote job (PUTs: ~200/s on a loaded 2-core VM)


def _populate(client: Any, bucket: str, have: set, n: int) -> str:
    """Create the objects ``train/img-NNNNNNNNNN.jpg`` (``train/dDDDD/img-...`` above ``PROMOTE_OVER``;
    1 byte each), ``0 <= N < n``, that are not in ``have``."""
    from ais_wds.writer import write_bytes

    def name(i: int) -> str:
        return f"train/d{i // 10_000:04d}/img-{i:010d}.jpg" if n > PROMOTE_OVER else f"train/img-{i:010d}.jpg"

    todo = [i for i in range(n) if name(i) not in have]
    if len(todo) <= PROMOTE_OVER:
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda i: write_bytes(f"ais://{bucket}/{name(i)}", b"x", client), todo))
        return "PUT"
    # a local cluster's targets share this filesystem: files under PROMOTE_ROOT become objects in one job
    root = os.path.join(PROMOTE_ROOT, bucket)
    shutil.rmtree(root, ignore_errors=True)
    made = set()
    for i in todo:
        path = os.path.join(root, name(i)[len("train/"):])
        if i // 10_000 not in made:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            made.add(i // 10_000)
        with open(path, "wb") as f:
            f.write(b"x")
    job = client.sdk.bucket(bucket).object("train/").promote(root, recursive=True, overwrite_dest=True,
                                                            delete_source=True)
    if job:
        client.sdk.job(job_id=job).wait(timeout=3600)
    # the job id's wait can return when the first target is done: each target deletes what it promoted
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline and any(files for _, _, files in os.walk(root)):
        time.sleep(5)
    shutil.rmtree(root, ignore_errors=True)
    return "promote"


def real(client: Any, n: int) -> Dict[str, Any]:
    """List ``n`` real objects of the local cluster (created on the first run, kept); objects/s, bytes/object.

    The held and peak figures are tracemalloc's (which slows the listing); ``list_s_plain`` is a second
    listing without it."""
    bucket = f"bench-scale-{n}"
    client.sdk.bucket(bucket).create(exist_ok=True)
    listed = list_objects(f"ais://{bucket}/", client, allow_empty=True)
    have = {url.split("/", 3)[3] for url in listed.urls}
    del listed
    made = _populate(client, bucket, have, n) if len(have) < n else "kept from an earlier run"
    del have
    listing, seconds, held, peak = _measured(lambda: list_objects(f"ais://{bucket}/", client))
    count = len(listing)
    del listing
    gc.collect()
    cpu, t = time.process_time(), time.perf_counter()
    list_objects(f"ais://{bucket}/", client)
    plain_s, plain_cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"objects": count, "created_by": made, "list_s": seconds, "list_objects_per_s": count / seconds,
            "list_s_plain": plain_s, "list_objects_per_s_plain": count / plain_s, "list_cpu_s_plain": plain_cpu,
            "held_bytes_per_object": held / count, "peak_bytes_per_object": peak / count}


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
    p.add_argument("--plan", type=int, default=0,
                   help="only plan this many synthetic objects (e.g. 10000000; peak RSS only above 2M)")
    a = p.parse_args()
    if a.plan:
        synth = Listing()
        for i in range(a.plan):
            synth.append(_url(i), 100 << 10)
        print(json.dumps(plan(synth, rss_only=a.plan > 2_000_000), indent=1))
        raise SystemExit(0)
    result: Dict[str, Any] = {"synthetic": synthetic(max(100_000, int(10_000_000 * a.scale)),
                                                     max(10_000, int(1_000_000 * a.scale)))}
    if a.real:
        from ais_wds import Client

        result["real"] = real(Client(), a.real)
    print(json.dumps(result, indent=1))
