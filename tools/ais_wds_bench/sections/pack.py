"""Section 4, packing: MB/s of ``ais_wds.pack.pack`` against a raw copy (GET + PUT of every source object,
same thread count, same direct-to-target GET path), for small objects and for large ones.

    AIS_ENDPOINT=http://127.0.0.1:PORT .venv/bin/python -m ais_wds_bench.sections.pack [--scale 1.0]

``run(client, scale)`` creates its own buckets and deletes them afterwards; it returns a dict of numbers
(printed as JSON when run alone).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

from ais_wds.client import Client
from ais_wds.objects.fetch import DirectGetter
from ais_wds.pack import pack
from ais_wds.writer import write_bytes

from ..data import THREADS, rate, temp_buckets
from ..report import NOT_RUN, detail, goal
from . import run_alone

NUMBER = 4
TITLE = "Packing"


def _upload(client: Client, bucket: str, objects: Dict[str, bytes]) -> None:
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda kv: write_bytes(f"ais://{bucket}/{kv[0]}", kv[1], client), objects.items()))


def _samples(n: int, image_size: int, seed: int = 0) -> Dict[str, bytes]:
    """``n`` samples of three files: an image-like blob, a class label and a small json."""
    rnd = random.Random(seed)
    blob = os.urandom(image_size * 2)
    out = {}
    for i in range(n):
        size = rnd.randint(image_size // 2, image_size * 3 // 2)
        start = rnd.randint(0, image_size // 2)
        out[f"train/{i:07d}.jpg"] = blob[start:start + size]
        out[f"train/{i:07d}.cls"] = str(i % 1000).encode()
        out[f"train/{i:07d}.json"] = json.dumps({"id": i, "w": 224, "h": 224}).encode()
    return out


def _pack_vs_copy(client: Client, objects: Dict[str, bytes], shard_size: str) -> Dict[str, Any]:
    with temp_buckets(client, "pk-src", "pk-dst", "pk-copy") as (src, dst, copy):
        _upload(client, src, objects)
        total = sum(len(v) for v in objects.values())

        getter = DirectGetter(client)  # the same GET path pack uses

        def raw_copy(name: str) -> None:
            data = getter.get(f"ais://{src}/{name}")
            assert isinstance(data, bytes), data
            write_bytes(f"ais://{copy}/{name}", data, client)

        t = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(raw_copy, objects))
        copy_s = time.perf_counter() - t

        t = time.perf_counter()
        report = pack(f"ais://{src}/train/", f"ais://{dst}/shard-%05d.tar", client, shard_size=shard_size,
                      workers=THREADS)
        pack_s = time.perf_counter() - t
        return {
            "objects": len(objects), "bytes": total, "shards": len(report.written),
            "raw_copy_MB_per_s": round(total / copy_s / 1e6, 1),
            "pack_MB_per_s": round(total / pack_s / 1e6, 1),
            "pack_objects_per_s": rate(len(objects), pack_s),
            "pack_vs_raw_copy": round(copy_s / pack_s, 2),
        }


def run(client: Client, scale: float = 1.0) -> Dict[str, Any]:
    """MB/s of pack vs a raw GET+PUT copy of the same objects (same thread count), for small objects
    (samples of a ~30 KB blob + two tiny files) and large ones (1-2 MiB). The top-level figures are
    those of the regime where pack compares worst."""
    small = _pack_vs_copy(client, _samples(max(200, int(3000 * scale)), 30_000, seed=2), "16MiB")
    blob = os.urandom(4 << 20)
    rnd = random.Random(3)
    large_objects = {f"train/{i:06d}.bin": blob[i % 1024: i % 1024 + rnd.randint(1 << 20, 2 << 20)]
                     for i in range(max(20, int(150 * scale)))}
    large = _pack_vs_copy(client, large_objects, "64MiB")
    worst_name, worst = min((("small_objects", small), ("large_objects", large)), key=lambda kv: kv[1]["pack_vs_raw_copy"])
    return {"small_objects": small, "large_objects": large, "worst_regime": worst_name,
            **{k: worst[k] for k in ("pack_vs_raw_copy", "pack_MB_per_s", "raw_copy_MB_per_s")}}



def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    section = results.get("pack", NOT_RUN)
    res = section.get("result") or {}
    return [goal("packing: >= 0.5x a raw GET+PUT copy", res.get("pack_vs_raw_copy"), 0.5,
                 detail(res, ("pack_MB_per_s", "raw_copy_MB_per_s")) or section.get("reason", ""))]


if __name__ == "__main__":
    sys.exit(run_alone(run, __doc__))
