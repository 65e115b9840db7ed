"""Section 22, random access in batches: ``AISShardDataset`` (byte ranges by pipelined range GETs to the
targets, its default, and by GetBatch requests, ``fetch="getbatch"``; read-ahead of its own shuffled
sampler) against ``ais_wds.WebDataset`` streaming the same shards, samples/s.

24 shards x 250 samples (``.bin`` of 10 KiB or 100 KiB + ``.cls``; section 1's shard layout, kept in
``ais://bench-ais-wds``); ``DataLoader(num_workers=2, batch_size=64)``: the stream in shard order, the
datasets with ``sampler=ds.sampler(shuffle=True)`` (a new order every round). Also, once per size, the
dataset's range-GET mode (``fetch="range"``: one GET per sample through the gateway, neighbours merged).
Stream and datasets run interleaved, ``rounds`` times; medians (min-max); every sample's payload length
checked.

    AIS_ENDPOINT=... .venv/bin/python -m ais_wds_bench.sections.random_batched [--scale S]
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Dict, List

from torch.utils.data import DataLoader

import ais_wds
from ais_wds.shard_index import build_index
from ais_wds.shard_index.dataset import AISShardDataset

from ..data import ensure_bucket, ensure_shard_set, record_size
from ..report import NOT_RUN, goal
from . import run_alone

NUMBER = 22
TITLE = "Random access in batches (pipelined range GETs, GetBatch byte ranges) vs sequential streaming"

BUCKET = "bench-ais-wds"
SHARDS, PER_SHARD = 24, 250


def _collate(batch: Any) -> Any:
    return batch


def _timed(loader: DataLoader, sample_size: int) -> float:
    t = time.perf_counter()
    n = 0
    for batch in loader:
        for s in batch:
            assert len(s["bin"]) == sample_size
        n += len(batch)
    assert n == SHARDS * PER_SHARD, n
    return n / (time.perf_counter() - t)


def one_size(client: ais_wds.Client, sample_size: int, rounds: int) -> Dict[str, Any]:
    shards = ensure_shard_set(client, BUCKET, sample_size, PER_SHARD * record_size(sample_size) + 1024, SHARDS,
                              log=lambda *a: print(*a, file=sys.stderr))
    assert shards.samples_per_shard == PER_SHARD
    index = build_index(f"ais://{BUCKET}/{shards.prefix}", client)
    stream = DataLoader(ais_wds.WebDataset(shards.ais_urls(), client=client), batch_size=64, num_workers=2,
                        collate_fn=_collate)
    ds = AISShardDataset(index, client)
    batched = DataLoader(ds, batch_size=64, sampler=ds.sampler(shuffle=True), num_workers=2, collate_fn=_collate)
    gb_ds = AISShardDataset(index, client, fetch="getbatch")
    getbatch = DataLoader(gb_ds, batch_size=64, sampler=gb_ds.sampler(shuffle=True), num_workers=2,
                          collate_fn=_collate)
    ranged_ds = AISShardDataset(index, client, fetch="range")
    ranged = DataLoader(ranged_ds, batch_size=64, sampler=ranged_ds.sampler(shuffle=True), num_workers=2,
                        collate_fn=_collate)
    _timed(stream, sample_size)  # warm: the shards in the targets' page cache
    rates: Dict[str, List[float]] = {"stream": [], "pipelined": [], "GetBatch": []}
    for _ in range(rounds):
        rates["stream"].append(_timed(stream, sample_size))
        rates["pipelined"].append(_timed(batched, sample_size))
        rates["GetBatch"].append(_timed(getbatch, sample_size))
    range_rate = _timed(ranged, sample_size)
    med = {k: statistics.median(v) for k, v in rates.items()}
    out: Dict[str, Any] = {"samples": SHARDS * PER_SHARD, "rounds": rounds}
    for k, v in rates.items():
        out[f"{k} samples/s"] = med[k]
        out[f"{k} min-max"] = f"{min(v):,.0f}-{max(v):,.0f}"
    out["range GETs samples/s (once)"] = range_rate
    out["pipelined / stream"] = med["pipelined"] / med["stream"]
    out["GetBatch / stream"] = med["GetBatch"] / med["stream"]
    out["range GETs / stream"] = range_rate / med["stream"]
    return out


def run(client: ais_wds.Client, scale: float = 1.0) -> Dict[str, Any]:
    ensure_bucket(client, BUCKET)
    rounds = 5 if scale >= 1 else 3
    return {"random access": {"10 KiB": one_size(client, 10 << 10, rounds),
                              "100 KiB": one_size(client, 100 << 10, rounds)}}


def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows = (results.get("random_batched", NOT_RUN).get("result") or {}).get("random access") or {}
    return [goal("random access (AISShardDataset) >= 0.5x streaming at 10 KiB",
                 (rows.get("10 KiB") or {}).get("pipelined / stream"), 0.5),
            goal("random access (AISShardDataset) >= 0.7x streaming at 100 KiB",
                 (rows.get("100 KiB") or {}).get("pipelined / stream"), 0.7)]


if __name__ == "__main__":
    sys.exit(run_alone(run, __doc__))
