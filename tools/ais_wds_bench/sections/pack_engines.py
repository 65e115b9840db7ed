"""Section 8, pack engines: ``pack --engine client`` against ``--engine cluster`` on the same buckets.

Sources: ``20k x scale`` objects of 10 KiB and ``2k x scale`` objects of 1 MiB (flat names, jpg+cls
pairs of equal size), created once and kept. Each engine packs each source into 64 MiB shards under
a fresh prefix; reported: MB/s and samples/s of the whole call (plan included), client CPU seconds
(user + system of this process) of the whole call and of the build alone (from the moment the shards
start to be built, index included; listing and planning, the same for both engines, excluded), and how the cluster engine built its shards: AIS archive jobs (members
and shard on one target), AIS get-batch streamed into the upload, and archive-job shards that came back
in another member order (see docs/pack.md). Each run's output is deleted after it is measured.
``cluster CPU / client CPU``: the cluster engine's client CPU as a share of the client engine's (the goal: at
most 10% at 20,000 x 10 KiB); with ``--rounds N`` the engines alternate N times and the medians count.

    AIS_ENDPOINT=... .venv/bin/python -m ais_wds_bench.sections.pack_engines [--scale S] [--sizes 10KiB] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict

from ais_wds.listing import list_objects
from ais_wds.pack import PackOptions, pack, plan_pack
from ais_wds.writer import delete_object, write_bytes

from ..plots import ok

NUMBER = 8
TITLE = "Pack engines: client vs cluster (AIS get-batch / archive jobs)"


def _source(client: Any, count: int, size: int) -> str:
    bucket = f"bench-engines-{count}x{size}"
    client.sdk.bucket(bucket).create(exist_ok=True)
    prefix = f"ais://{bucket}/"
    if len(list_objects(prefix, client, allow_empty=True)) < count:
        payload = b"\x5a" * size
        names = [f"s{i // 2:07d}.{'jpg' if i % 2 == 0 else 'cls'}" for i in range(count)]
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda n: write_bytes(prefix + n, payload, client), names))
    return prefix


def _remove(prefix: str, client: Any) -> None:
    """Delete this run's shards, index and marker (2+ GB per run at full scale would fill the disk)."""
    listing = list_objects(prefix, client, allow_empty=True)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda url: delete_object(url, client), listing.urls))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_into(marks: list) -> Any:
    return lambda _shards: marks.append(_cpu())


SIZES = {"10 KiB": (20_000, 10 << 10), "1 MiB": (2_000, 1 << 20)}


def run(client: Any, scale: float = 1.0, sizes: Any = None, rounds: int = 1) -> Dict[str, Any]:
    rows: Dict[str, Dict[str, Any]] = {}
    for label in sizes or SIZES:
        count, size = SIZES[label]
        count = int(count * scale)
        count = max(200, count - count % 2)
        prefix = _source(client, count, size)
        options = PackOptions(shard_size="64MiB")
        plan = plan_pack(prefix, "ais://bench-engines-dst/x-%06d.tar", client, options=options)
        client.sdk.bucket("bench-engines-dst").create(exist_ok=True)
        runs: Dict[str, list] = {"client": [], "cluster": []}
        for _ in range(max(1, rounds)):
            for engine in ("client", "cluster"):
                dst = f"ais://bench-engines-dst/{uuid.uuid4().hex[:8]}/train-%06d.tar"
                cpu, t = _cpu(), time.perf_counter()
                started: list = []
                report = pack(prefix, dst, client, options, engine=engine, on_start=_cpu_into(started))
                seconds, build_cpu, cpu = time.perf_counter() - t, _cpu() - started[0], _cpu() - cpu
                runs[engine].append({
                    "objects": count, "shards": len(plan.shards), "MB/s": report.bytes / seconds / 1e6,
                    "samples/s": report.samples / seconds, "client CPU s": cpu, "client CPU s, build": build_cpu,
                    "seconds": seconds, "engine used": report.engine, "archive jobs": len(report.archived),
                    "get-batch": len(report.batched), "misordered": len(report.rebuilt)})
                _remove(dst[:dst.rindex("/") + 1], client)
                print(f"  {label}, {engine}: {json.dumps(runs[engine][-1])}", file=sys.stderr, flush=True)
        for engine, measured in runs.items():
            row = dict(measured[-1])
            for key in ("MB/s", "samples/s", "client CPU s", "client CPU s, build", "seconds"):
                row[key] = statistics.median(m[key] for m in measured)
            row["rounds"] = len(measured)
            rows[f"{label}, {engine} engine"] = row
        shares = [cl["client CPU s"] / cc["client CPU s"] for cc, cl in zip(runs["client"], runs["cluster"])]
        rows[f"{label}, {engine} engine"]["cluster CPU / client CPU"] = statistics.median(shares)
        rows[f"{label}, {engine} engine"]["cluster CPU / client CPU, each round"] = shares
    return {"engines": rows}


def plot(plt: Any, results: Dict[str, Any]) -> Any:
    """MB/s and client CPU seconds of each engine, per object size."""
    engines = ok(results.get("pack_engines")).get("engines") or {}
    if not engines:
        return None
    sizes = list(dict.fromkeys(k.split(",")[0] for k in engines))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, metric in zip(axes, ("MB/s", "client CPU s")):
        for k, engine in enumerate(("client", "cluster")):
            vals = [(engines.get(f"{size}, {engine} engine") or {}).get(metric) for size in sizes]
            xs = [i - 0.2 + 0.4 * k for i, v in enumerate(vals) if v is not None]
            ax.bar(xs, [v for v in vals if v is not None], 0.4, label=f"--engine {engine}")
        ax.set_xticks(range(len(sizes)), [f"{s} objects" for s in sizes])
        ax.set_title(metric)
    axes[0].legend(fontsize=8)
    fig.suptitle("Section 8: ais-wds pack, client engine vs cluster engine (AIS get-batch)")
    return fig


if __name__ == "__main__":
    from ais_wds import Client

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--sizes", default="", help=f"comma-separated, of {', '.join(SIZES)} (default: both)")
    p.add_argument("--rounds", type=int, default=1, help="alternate the engines this many times (medians)")
    p.add_argument("--endpoint", default=None)
    a = p.parse_args()
    by_key = {k.replace(" ", "").lower(): k for k in SIZES}
    chosen = [by_key[s.replace(" ", "").lower()] for s in a.sizes.split(",")] if a.sizes else None
    json.dump(run(Client(a.endpoint), a.scale, chosen, a.rounds), sys.stdout, indent=1)
    print()
