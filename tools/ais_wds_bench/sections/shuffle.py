"""Section 19, shuffle quality and cost: plain webdataset's recipe against each ais_wds shuffle and a uniform
permutation computed in memory (the ideal), over one data set of 100 shards.

    AIS_ENDPOINT=... .venv/bin/python -m ais_wds_bench.sections.shuffle [--scale S]

Per mode, one epoch through a DataLoader with 2 workers and ``batch_size=64`` (each batch is made in one
worker, as in training):

* (a) ``shards_per_batch``: mean number of distinct shards among the 64 samples of a batch; and
  ``shards_per_64``: the same over 64 consecutive samples of the loader's sample stream (the two
  workers' samples alternating, as ``batch_size=None`` hands them out);
* (b) ``spearman``: rank correlation between a sample's position in the epoch and in storage order
  (0: no trace of the storage order; 1: storage order);
* (c) ``samples_per_s`` over 10 KiB and 100 KiB samples, every mode in a fresh process, modes interleaved
  (A, B, C, A, B, C), median with min-max, timed from the first batch to the last (the workers' start-up
  left out); ``vs_sequential``: over the ais_wds sequential stream of the same shards, same rounds;
* (d) ``rss_mb``: peak RSS of the main process and of the biggest worker.

Quality is measured at the issue's geometry (100 shards x 1,000 samples) with tiny samples (a 16-byte
payload) so that the epoch is quick; the throughput sets have 100 shards of ``200 * scale`` samples of
10 KiB and ``40 * scale`` of 100 KiB (scaled down from 1,000 for a 2-core machine; the ratios are what
matters). Modes: ``webdataset`` (``wds.WebDataset(urls, shardshuffle=100).shuffle(1000)``: the recipe),
``sequential`` (ais_wds, ``shuffle=False``), ``shards`` (ais_wds's shard-order shuffle, the default),
``shards+buffer`` (``.shuffle(1000)``), ``k_shards`` (``.shuffle(1000, open_shards="auto")``), ``samples``
(``shuffle="samples"`` with the index: byte ranges by pipelined range GETs to the targets),
``samples_getbatch`` (the same read by GetBatch requests; throughput only) and ``uniform`` (quality only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from ..data import record_size, temp_buckets
from ..report import NOT_RUN, goal
from . import run_alone

NUMBER = 19
TITLE = "Shuffle quality and cost"

SHARDS = 100
QUALITY_SAMPLES = 1000
BATCH = 64
BUFFER = 1000
MODES = ["webdataset", "sequential", "shards", "shards+buffer", "k_shards", "samples"]
THROUGHPUT_MODES = MODES + ["samples_getbatch"]
"""Throughput also of the global shuffle read by GetBatch requests instead of pipelined range GETs."""


def _upload(client: Any, bucket: str, prefix: str, sample_size: int, per_shard: int) -> Dict[str, str]:
    """``SHARDS`` shards of ``per_shard`` samples (``<key>.bin`` + ``<key>.cls``, keys ``sSSSS_JJJJJJJ``) and
    their index; uploaded by threads."""
    from concurrent.futures import ThreadPoolExecutor

    import ais_wds
    from ais_wds.shard_index.index import build_index, save_index

    from ..data import build_shard

    pool = os.urandom((4 << 20) + sample_size)

    def one(i: int) -> None:
        data = build_shard(i, sample_size, per_shard, pool)
        assert len(data) == per_shard * record_size(sample_size) + 1024
        ais_wds.write_bytes(f"ais://{bucket}/{prefix}/shard-{i:04d}.tar", data, client)

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(SHARDS)))
    index = f"ais://{bucket}/{prefix}.index.msgpack"
    save_index(build_index(f"ais://{bucket}/{prefix}/", client), index, client)
    return {"prefix": f"ais://{bucket}/{prefix}/", "index": index}


# -- one cell, in a fresh process --------------------------------------------------------------------------
def _worker_keys(batch: List[Dict[str, Any]]) -> Any:
    import torch

    info = torch.utils.data.get_worker_info()
    return (info.id if info is not None else 0), [s["__key__"] for s in batch]


def _dataset(mode: str, data: Dict[str, str], endpoint: str) -> Any:
    import ais_wds

    if mode == "webdataset":
        import webdataset as wds

        urls = [u for u, _ in ais_wds.list_objects(data["prefix"], ais_wds.Client(endpoint))]
        return wds.WebDataset(urls, shardshuffle=100, seed=0, empty_check=False).shuffle(BUFFER)
    kw: Dict[str, Any] = {"client": endpoint, "seed": 0}
    if mode == "sequential":
        return ais_wds.WebDataset(data["prefix"], shuffle=False, **kw)
    if mode == "shards":
        return ais_wds.WebDataset(data["prefix"], **kw)
    if mode == "shards+buffer":
        return ais_wds.WebDataset(data["prefix"], **kw).shuffle(BUFFER)
    if mode == "k_shards":
        return ais_wds.WebDataset(data["prefix"], **kw).shuffle(BUFFER, open_shards="auto")
    if mode in ("samples", "samples_getbatch"):
        from ais_wds.streaming import sample_reads

        sample_reads.TRANSPORT = "getbatch" if mode == "samples_getbatch" else "auto"  # the forked workers inherit it
        return ais_wds.WebDataset(data["prefix"], index=data["index"], shuffle="samples", **kw)
    raise ValueError(mode)


def cell(mode: str, data: Dict[str, str], endpoint: str) -> Dict[str, Any]:
    """One epoch of ``mode`` through a DataLoader (2 workers, batches of 64): keys per worker, time, RSS."""
    import torch

    import ais_wds  # noqa: F401 - registers the ais:// opener for plain webdataset

    ds = _dataset(mode, data, endpoint)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=2, collate_fn=_worker_keys,
                                         prefetch_factor=4)
    batches = []
    it = iter(loader)
    batches.append(next(it))
    t = time.perf_counter()  # from the first batch on: the workers' start-up is not the shuffle's rate
    batches.extend(it)
    seconds = time.perf_counter() - t
    del it, loader
    return {"seconds": seconds, "timed": sum(len(b) for _, b in batches[1:]), "batches": batches,
            "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def _again(fn: Any, *args: Any, tries: int = 3) -> Any:
    """``fn(*args)``, tried again (after 10 s) when it fails: the shared local cluster's targets are restarted
    by other people's fault tests now and then; a failed try is reported on stderr, never hidden."""
    for attempt in range(tries):
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001
            if attempt == tries - 1:
                raise
            print(f"shuffle section: {fn.__name__} failed ({type(e).__name__}: ...{str(e)[-600:]}), again in 10 s",
                  file=sys.stderr)
            time.sleep(10)


def _run_cell(mode: str, data: Dict[str, str], endpoint: str) -> Dict[str, Any]:
    return _again(_cell_process, mode, data, endpoint)


def _cell_process(mode: str, data: Dict[str, str], endpoint: str) -> Dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", __spec__.name if __spec__ else "ais_wds_bench.sections.shuffle",
                           "--cell", mode, "--data", json.dumps(data), "--endpoint", endpoint],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"cell {mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- quality -------------------------------------------------------------------------------------------
def _shard_sample(key: str) -> tuple:
    shard, sample = key[1:].split("_")
    return int(shard), int(sample)


def quality(batches: Sequence[Any], per_shard: int) -> Dict[str, Any]:
    """(a) per batch and per 64 consecutive samples of the interleaved stream, (b) Spearman; checks that
    the epoch holds every sample once."""
    import numpy as np

    keys = [k for _, b in batches for k in b]
    pairs = [_shard_sample(k) for k in keys]
    storage = np.array([s * per_shard + j for s, j in pairs], dtype=np.int64)
    n = len(storage)
    once = len(set(storage.tolist())) == n == SHARDS * per_shard
    per_batch = [len({_shard_sample(k)[0] for k in b}) for _, b in batches if len(b) == BATCH]
    streams: Dict[int, List[int]] = {}
    for worker, b in batches:
        streams.setdefault(worker, []).extend(_shard_sample(k)[0] for k in b)
    merged: List[int] = []
    for i in range(max(len(s) for s in streams.values())):
        merged.extend(s[i] for s in streams.values() if i < len(s))
    per_64 = [len(set(merged[i:i + BATCH])) for i in range(0, len(merged) - BATCH + 1, BATCH)]
    return {"shards_per_batch": round(statistics.mean(per_batch), 2), "shards_per_64": round(statistics.mean(per_64), 2),
            "spearman": round(_spearman(storage), 4), "every_sample_once": once}


def _spearman(storage: Any) -> float:
    """Rank correlation of epoch position with storage position (both are ranks already when every
    sample comes once; ranks are taken otherwise)."""
    import numpy as np

    n = len(storage)
    ranks = np.empty(n, dtype=np.float64)
    ranks[np.argsort(storage, kind="stable")] = np.arange(n)
    pos = np.arange(n, dtype=np.float64)
    return float(np.corrcoef(pos, ranks)[0, 1])


def uniform_quality(per_shard: int, seed: int = 0) -> Dict[str, Any]:
    """The ideal: a uniform permutation of the same samples, cut into batches of 64 (two 'workers' of
    contiguous halves, as the loader's)."""
    import numpy as np

    perm = np.random.default_rng(seed).permutation(SHARDS * per_shard)
    keys = [f"s{g // per_shard:04d}_{g % per_shard:07d}" for g in perm.tolist()]
    half = len(keys) // 2
    batches: List[Any] = []
    for w, part in enumerate((keys[:half], keys[half:])):
        batches.extend((w, part[i:i + BATCH]) for i in range(0, len(part), BATCH))
    # the loader's order: batches of the two workers alternate
    order = [b for pair in zip(batches[:len(batches) // 2], batches[len(batches) // 2:]) for b in pair]
    return quality(order, per_shard)


# -- the section ----------------------------------------------------------------------------------------
def run(client: Any, scale: float = 1.0, rounds: int = 2) -> Dict[str, Any]:
    """Quality at 100 x 1,000 tiny samples; samples/s and RSS at 10 KiB and 100 KiB (see the module)."""
    endpoint = client.endpoint
    out: Dict[str, Any] = {"geometry": {}, "quality": {}, "throughput": {}}
    with temp_buckets(client, "shuffle") as (bucket,):
        sets = {"quality": (16, QUALITY_SAMPLES),
                "10KiB": (10 << 10, max(20, int(200 * scale))),
                "100KiB": (100 << 10, max(8, int(40 * scale)))}
        data = {name: _again(_upload, client, bucket, name, size, n) for name, (size, n) in sets.items()}
        out["geometry"] = {name: f"{SHARDS} shards x {n} samples of {size} B" for name, (size, n) in sets.items()}
        out["quality"]["uniform"] = uniform_quality(QUALITY_SAMPLES)
        for mode in MODES:
            res = _run_cell(mode, data["quality"], endpoint)
            out["quality"][mode] = {**quality(res["batches"], QUALITY_SAMPLES),
                                    "rss_main_mb": round(res["rss_main_mb"]), "rss_worker_mb": round(res["rss_worker_mb"])}
        uni = out["quality"]["uniform"]
        for mode in MODES:
            q = out["quality"][mode]
            q["batch_vs_uniform"] = round(q["shards_per_batch"] / uni["shards_per_batch"], 3)
            q["stream_vs_uniform"] = round(q["shards_per_64"] / uni["shards_per_64"], 3)
        for name in ("10KiB", "100KiB"):
            per_shard = sets[name][1]
            times: Dict[str, List[float]] = {m: [] for m in THROUGHPUT_MODES}
            rss: Dict[str, Any] = {}
            for _ in range(rounds):
                for mode in THROUGHPUT_MODES:
                    res = _run_cell(mode, data[name], endpoint)
                    keys = [k for _, b in res["batches"] for k in b]
                    assert len(keys) == SHARDS * per_shard and len(set(keys)) == len(keys), (mode, len(keys))
                    times[mode].append(res["timed"] / res["seconds"])
                    rss[mode] = [round(res["rss_main_mb"]), round(res["rss_worker_mb"])]
            seq = statistics.median(times["sequential"])
            out["throughput"][name] = {
                mode: {"samples_per_s": round(statistics.median(v)), "min": round(min(v)), "max": round(max(v)),
                       "vs_sequential": round(statistics.median(v) / seq, 3), "rss_main_worker_mb": rss[mode]}
                for mode, v in times.items()}
    q, t = out["quality"], out["throughput"]
    out["samples_vs_uniform_batch"] = q["samples"]["batch_vs_uniform"]
    out["samples_spearman_gap"] = round(abs(q["samples"]["spearman"] - q["uniform"]["spearman"]), 4)
    out["k_shards_vs_uniform_batch"] = q["k_shards"]["batch_vs_uniform"]
    out["k_shards_vs_uniform_stream"] = q["k_shards"]["stream_vs_uniform"]
    out["samples_vs_sequential_10KiB"] = t["10KiB"]["samples"]["vs_sequential"]
    out["samples_vs_sequential_100KiB"] = t["100KiB"]["samples"]["vs_sequential"]
    return out


def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    res = results.get("shuffle", NOT_RUN).get("result") or {}
    return [
        goal("global shuffle: distinct shards per batch of 64 >= 0.98x uniform", res.get("samples_vs_uniform_batch"),
             0.98),
        goal("global shuffle: |Spearman - uniform's| <= 0.02", res.get("samples_spearman_gap"), 0.02, unit="",
             higher_is_better=False),
        goal("global shuffle: samples/s >= 0.7x sequential at 100 KiB", res.get("samples_vs_sequential_100KiB"), 0.7),
        goal("global shuffle: samples/s >= 0.5x sequential at 10 KiB", res.get("samples_vs_sequential_10KiB"), 0.5),
        goal("k-shard shuffle: distinct shards per batch of 64 >= 0.9x uniform", res.get("k_shards_vs_uniform_batch"),
             0.9),
    ]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--cell")
    parser.add_argument("--data")
    parser.add_argument("--endpoint")
    args, rest = parser.parse_known_args(argv)
    if args.cell:
        print(json.dumps(cell(args.cell, json.loads(args.data), args.endpoint)))
        return 0
    return run_alone(run, __doc__, rest + (["--endpoint", args.endpoint] if args.endpoint else []))


if __name__ == "__main__":
    sys.exit(main())
