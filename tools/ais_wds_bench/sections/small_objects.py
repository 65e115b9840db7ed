"""Small objects: ais_wds's AISDataset / AISIterDataset against aistore.pytorch's AISMapDataset / AISIterDataset.

    AIS_ENDPOINT=http://127.0.0.1:PORT .venv/bin/python -m ais_wds_bench.sections.small_objects [--scale S] [--workers 0,2]

The data is ``20000 x scale`` (at least 4096) objects of 10 KiB under ``ais://bench-ais-wds/small-v1/n<N>-s<SIZE>/``
(uploaded on the first run, reused after). Every measure is one full epoch through a torch DataLoader
at the same ``num_workers`` and batch size, timed from building the dataset (listing included) to the
last batch, and checked: every object exactly once with its full size. ``speedup_*`` is ais_wds's
default configuration over the peer's samples/s in the same access order; ``alt_*`` rows are other
ais_wds settings (the other fetch method, read-ahead off).

``run(client, scale, ...) -> dict`` is what ``scripts/bench`` calls (section 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence

import ais_wds
from ais_wds.datasets.iterable import AISIterDataset
from ais_wds.datasets.map import AISDataset
from ais_wds.writer import write_bytes

from ..report import NOT_RUN, flatten, goal, num

NUMBER = 2
TITLE = "Small objects"

BUCKET = "bench-ais-wds"
OBJECTS = 20_000
MIN_OBJECTS = 4096  # 16 batches: below that, the first (not read-ahead) batches and start-up dominate
SIZE = 10 << 10
BATCH = 256


def ensure_objects(client: ais_wds.Client, n: int, size: int, threads: int = 16) -> str:
    """The prefix URL of ``n`` objects of ``size`` bytes; uploads what is missing. Returns the prefix."""
    prefix = f"small-v1/n{n}-s{size}/"
    client.sdk.bucket(BUCKET).create(exist_ok=True)
    url = f"ais://{BUCKET}/{prefix}"
    have = {}
    try:
        listing = ais_wds.list_objects(url, client)
        have = dict(zip(listing.urls, listing.sizes))
    except ais_wds.EmptyListingError:
        pass
    names = [f"{url}obj-{i:06d}.bin" for i in range(n)]
    missing = [u for u in names if have.get(u) != size]
    if missing:
        payload = os.urandom(size)
        print(f"uploading {len(missing)} objects of {size} bytes to {url}", file=sys.stderr)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda u: write_bytes(u, payload, client), missing))
    return prefix


def _epoch(make: Callable[[], Any], num_workers: int, batch_size: int, mp_context: str, expect: int,
           size: int, sampler_of: Optional[Callable[[Any], Any]] = None) -> Dict[str, Any]:
    from torch.utils.data import DataLoader

    t0 = time.perf_counter()
    dataset = make()
    t1 = time.perf_counter()
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler_of(dataset) if sampler_of else None,
                        num_workers=num_workers,
                        collate_fn=list,  # keep (url, bytes) pairs; picklable under spawn
                        multiprocessing_context=mp_context if num_workers else None)
    names, nbytes = set(), 0
    count = 0
    for batch in loader:
        for name, data in batch:
            names.add(name.rsplit("/", 1)[-1])
            nbytes += len(data)
            count += 1
    t2 = time.perf_counter()
    ok = count == expect and len(names) == expect and nbytes == expect * size
    return {"samples_per_s": round(expect / (t2 - t0), 1), "epoch_samples_per_s": round(expect / (t2 - t1), 1),
            "build_s": round(t1 - t0, 2), "seconds": round(t2 - t0, 2), "checked": ok,
            **({} if ok else {"got": count, "distinct": len(names), "bytes": nbytes})}


def _sequential(dataset: Any) -> Any:
    return range(len(dataset))


def _peer_shuffled(dataset: Any) -> Any:
    from torch.utils.data import RandomSampler

    return RandomSampler(dataset, generator=torch_generator(0))


def torch_generator(seed: int) -> Any:
    import torch

    return torch.Generator().manual_seed(seed)


def _interleaved(cases: Dict[str, Any]) -> List[str]:
    """Each ais_wds case right before the peer case it is compared with, then the alternatives."""
    order = []
    for kind in ("map", "map_shuffled", "iter"):
        order += [n for n in (f"ais_wds_{kind}", f"aistore_pytorch_{kind}") if n in cases]
    return order + [n for n in cases if n not in order]


def _median_run(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The run with the median samples/s (the lower middle one for an even count), with every round's
    samples/s alongside."""
    ranked = sorted(runs, key=lambda r: r["samples_per_s"])
    best = dict(ranked[(len(ranked) - 1) // 2])
    if len(runs) > 1:
        best["rounds_samples_per_s"] = [r["samples_per_s"] for r in runs]
        best["checked"] = all(r["checked"] for r in runs)
    return best


def run(client: Any = None, scale: float = 1.0, *, workers: Sequence[int] = (0, 2), batch_size: int = BATCH,
        size: int = SIZE, mp_context: str = "fork", peers: bool = True, alternatives: bool = True,
        rounds: int = 1) -> Dict[str, Any]:
    """Samples/s of ais_wds and aistore.pytorch on ``20000 x scale`` (at least 4096) objects of ``size`` bytes.

    Cases (each one epoch through a DataLoader with ``batch_size`` and ``num_workers`` in ``workers``):
    map-style in sequential order (both), map-style shuffled (ours: ``ds.sampler(shuffle=True)``; the
    peer: ``RandomSampler``), iterable (both); ``alt_*``: ours with the other fetch method.

    Cases run interleaved (each ais_wds case next to its peer case), ``rounds`` times; each row is the
    median round.

    Returns:
        ``{"setup": {...}, "nw<k>": {"<case>": {samples_per_s, ...}, ...}, "speedup_<kind>_nw<k>": x, ...}``.
    """
    client = ais_wds.Client.of(client)
    n = max(MIN_OBJECTS, int(OBJECTS * scale))
    prefix = ensure_objects(client, n, size)
    url = f"ais://{BUCKET}/{prefix}"
    sdk_bucket = client.sdk.bucket(BUCKET)
    setup = {"objects": n, "object_size": size, "batch_size": batch_size, "start_method": mp_context,
             "cpus": os.cpu_count(), "source": url, "rounds": rounds, "load_avg_before": os.getloadavg()[0]}
    out: Dict[str, Any] = {"setup": setup}
    if peers:
        from aistore.pytorch import AISIterDataset as PeerIter
        from aistore.pytorch import AISMapDataset as PeerMap
    for nw in workers:
        def epoch(make: Callable[[], Any], sampler_of: Optional[Callable[[Any], Any]] = None,
                  nw: int = nw) -> Dict[str, Any]:
            return _epoch(make, nw, batch_size, mp_context, n, size, sampler_of)

        cases: Dict[str, Callable[[], Dict[str, Any]]] = {
            "ais_wds_map": lambda: epoch(lambda: AISDataset(client, url), _sequential),
            "ais_wds_map_shuffled": lambda: epoch(lambda: AISDataset(client, url),
                                                  lambda ds: ds.sampler(shuffle=True, seed=0)),
            "ais_wds_iter": lambda: epoch(lambda: AISIterDataset(client, url)),
        }
        if alternatives:
            cases["alt_ais_wds_map_no_read_ahead"] = lambda: epoch(lambda: AISDataset(client, url, read_ahead=0),
                                                                   _sequential)
            cases["alt_ais_wds_map_batch_get_no_read_ahead"] = lambda: epoch(
                lambda: AISDataset(client, url, fetch="batch", read_ahead=0), _sequential)
            cases["alt_ais_wds_iter_direct_get"] = lambda: epoch(
                lambda: AISIterDataset(client, url, fetch="get", threads=8))
        if peers:
            cases["aistore_pytorch_map"] = lambda: epoch(
                lambda: PeerMap(sdk_bucket, prefix_map={sdk_bucket: prefix}), _sequential)
            cases["aistore_pytorch_map_shuffled"] = lambda: epoch(
                lambda: PeerMap(sdk_bucket, prefix_map={sdk_bucket: prefix}), _peer_shuffled)
            cases["aistore_pytorch_iter"] = lambda: epoch(
                lambda: PeerIter(sdk_bucket, prefix_map={sdk_bucket: prefix}))
        runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in cases}
        for _ in range(rounds):  # interleaved, so that load from elsewhere hits every case alike
            for name in _interleaved(cases):
                runs[name].append(cases[name]())
                print(f"nw={nw} {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
        rows = {name: _median_run(r) for name, r in runs.items()}
        out[f"nw{nw}"] = rows
        if peers:
            for kind in ("map", "map_shuffled", "iter"):
                mine, peer = rows[f"ais_wds_{kind}"], rows[f"aistore_pytorch_{kind}"]
                out[f"speedup_{kind}_nw{nw}"] = round(mine["samples_per_s"] / peer["samples_per_s"], 2)
    return out



def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    """small objects: >= 5x aistore.pytorch at equal workers. The result is searched for ``speedup*``
    numbers (one goal per key) so that its exact layout may evolve."""
    section = results.get("small_objects", NOT_RUN)
    res = section.get("result") or {}
    flat = dict(flatten(res))
    speedups = {k: v for k, v in flat.items() if "speedup" in k.lower() and isinstance(v, (int, float))}
    if not speedups:
        return [goal("small objects: >= 5x aistore.pytorch at equal workers", None, 5.0,
                     section.get("reason") or "no speedup figure in the result")]
    return [goal(f"small objects: >= 5x aistore.pytorch ({k})", float(v), 5.0, _small_detail(res, k))
            for k, v in speedups.items()]


def _small_detail(res: Dict[str, Any], key: str) -> str:
    """'ais_wds_map 2,718/s vs aistore_pytorch_map 370/s' for ``speedup_map_nw0`` (if the layout matches)."""
    parts = key.split("_")
    if len(parts) != 3 or not parts[2].startswith("nw"):
        return ""
    rows = res.get(parts[2]) or {}
    mine, peer = rows.get(f"ais_wds_{parts[1]}") or {}, rows.get(f"aistore_pytorch_{parts[1]}") or {}
    if "samples_per_s" not in mine or "samples_per_s" not in peer:
        return ""
    return (f"num_workers={parts[2][2:]}: ais_wds_{parts[1]} {num(mine['samples_per_s'])}/s vs "
            f"aistore_pytorch_{parts[1]} {num(peer['samples_per_s'])}/s")


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="objects = 20000 x scale (default 1)")
    p.add_argument("--workers", default="0,2", help="DataLoader num_workers values (default 0,2)")
    p.add_argument("--batch-size", type=int, default=BATCH)
    p.add_argument("--start-method", default="fork", choices=("fork", "spawn", "forkserver"))
    p.add_argument("--no-peers", action="store_true", help="measure ais_wds only")
    p.add_argument("--no-alternatives", action="store_true", help="measure the default fetch methods only")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds; rows are the median (default 1)")
    args = p.parse_args(argv)
    result = run(None, args.scale, workers=[int(w) for w in args.workers.split(",")], batch_size=args.batch_size,
                 mp_context=args.start_method, peers=not args.no_peers, alternatives=not args.no_alternatives,
                 rounds=args.rounds)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
