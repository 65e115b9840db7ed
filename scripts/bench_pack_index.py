#!/usr/bin/env python3
"""Measure the packer and random access to samples inside shards, against the alternatives.

    AIS_ENDPOINT=http://127.0.0.1:PORT .venv/bin/python scripts/bench_pack_index.py [--scale 1.0] [--only pack|access]

``run_random_access(client, scale)``: samples/s of AISShardDataset (one range GET per sample; batched
``__getitems__``) vs one AIS ``archpath`` GET per member vs downloading the whole shard per access.
``run_pack(client, scale)``: MB/s of ``ais_wds.pack.pack`` vs a raw copy (GET + PUT of every source
object, same thread count, same direct-to-target GET path). Both create their own buckets and delete them afterwards; both return a
dict of numbers (printed as JSON by ``__main__``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ais_wds import tarwrite  # noqa: E402
from ais_wds.client import Client  # noqa: E402
from ais_wds.objects.fetch import DirectGetter  # noqa: E402
from ais_wds.pack import pack  # noqa: E402
from ais_wds.reader import read_bytes, read_member  # noqa: E402
from ais_wds.shard_index import build_index  # noqa: E402
from ais_wds.shard_index.dataset import AISShardDataset, parse_sample  # noqa: E402
from ais_wds.writer import write_bytes  # noqa: E402

THREADS = 16


@contextmanager
def _buckets(client: Client, *names: str) -> Iterator[List[str]]:
    made = [f"bench-{n}-{uuid.uuid4().hex[:8]}" for n in names]
    for name in made:
        client.sdk.bucket(name).create(exist_ok=True)
    try:
        yield made
    finally:
        for name in made:
            try:
                client.sdk.bucket(name).delete(missing_ok=True)
            except Exception:  # noqa: BLE001 - cleanup is best effort
                pass


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


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


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


def run_random_access(client: Client, scale: float = 1.0) -> Dict[str, Any]:
    """Samples/s for random access, by method.

    Shards are always 64 MiB (about 3,000 samples of 3 files); ``scale`` sets their number (at least 2)
    and the number of accesses. The index is built with ``build_index`` (listing + batched header check).
    """
    accesses = max(100, int(600 * scale))
    rnd = random.Random(1)
    blob = os.urandom(64 << 10)
    with _buckets(client, "ra") as (dst,):
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
        range_1t = _rate(len(picks), time.perf_counter() - t)

        batch = 64
        t = time.perf_counter()
        for k in range(0, len(picks), batch):
            ds.__getitems__(picks[k:k + batch])
        range_batched = _rate(len(picks), time.perf_counter() - t)

        def by_archpath(i: int) -> Dict[str, bytes]:
            url, sample = spans[i]
            return {name: read_member(url, name, client) for name, _, _ in sample.members}

        few = picks[: max(50, len(picks) // 4)]
        t = time.perf_counter()
        for i in few:
            by_archpath(i)
        archpath_1t = _rate(len(few), time.perf_counter() - t)
        with ThreadPoolExecutor(THREADS) as pool:
            t = time.perf_counter()
            list(pool.map(by_archpath, few))
            archpath_threads = _rate(len(few), time.perf_counter() - t)

        def by_whole_shard(i: int) -> Dict[str, Any]:
            url, sample = spans[i]
            data = read_bytes(url, client)
            return parse_sample(data[sample.offset: sample.offset + sample.length], url)

        fewer = picks[:10]
        t = time.perf_counter()
        for i in fewer:
            by_whole_shard(i)
        whole_1t = _rate(len(fewer), time.perf_counter() - t)

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


def _pack_vs_copy(client: Client, objects: Dict[str, bytes], shard_size: str) -> Dict[str, Any]:
    with _buckets(client, "pk-src", "pk-dst", "pk-copy") as (src, dst, copy):
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
            "pack_objects_per_s": _rate(len(objects), pack_s),
            "pack_vs_raw_copy": round(copy_s / pack_s, 2),
        }


def run_pack(client: Client, scale: float = 1.0) -> Dict[str, Any]:
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


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", choices=["pack", "access"])
    parser.add_argument("--endpoint")
    args = parser.parse_args(argv)
    client = Client(args.endpoint)
    out: Dict[str, Any] = {}
    if args.only in (None, "access"):
        out["random_access"] = run_random_access(client, args.scale)
    if args.only in (None, "pack"):
        out["pack"] = run_pack(client, args.scale)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
