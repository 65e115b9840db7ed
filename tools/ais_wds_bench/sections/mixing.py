"""Section 10, mixing: what ``ais_wds.Mix`` costs over reading the same samples from one source.

Two cases, small and larger samples (``CASES``: 4 KiB x 1,000 and 64 KiB x 200 samples per shard; 40 MB
and 128 MB in all). Each has ten indexed tar shards (``<key>.bin`` + ``<key>.cls``) under three
prefixes sized like the weights: ``a/`` 5 shards, ``b/`` 3, ``c/`` 2. Per round, in this process (no
DataLoader, so only the mixing itself is added), back to back in alternating order:

* ``one_source``: ``ais_wds.WebDataset`` over all ten shards (one index): every sample once;
* ``mix_3``: ``ais_wds.Mix`` of three ``ais_wds.WebDataset`` (one per prefix, the same index),
  weights 0.5 / 0.3 / 0.2, ``stop="all_exhausted"``: every sample once too, so both read the same
  samples and open the same shards (a GET is ~1-3 ms of CPU: at this data size, one more shard opened
  would weigh several percent);
* ``plain_3``: the floor of any mix of three pipelines: the same three WebDatasets read in the order of
  draws computed beforehand, with no Python frame per sample of its own (``map(next, ...)``);

Then ``one_source`` and ``mix_3`` through ``DataLoader(num_workers=2, batch_size=64)``, timed from the
first batch to the last.
Samples/s (wall) is the median over the rounds, ``x_one_source`` the median of the per-round ratios;
``samples_per_cpu_s`` / ``x_one_source_cpu`` the same per CPU second of this process (less sensitive to
other load on the machine). Also the state: bytes of ``Mix.state_dict()`` mid-epoch as JSON and through
``torch.save``, and of a ``StatefulDataLoader(num_workers=2)`` state over the mix (``torch.save``).

    AIS_ENDPOINT=... .venv/bin/python -m ais_wds_bench.sections.mixing [--scale S] [--rounds R]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List, Tuple

import ais_wds
from ais_wds import Client

from ..data import temp_buckets
from ..report import goal

NUMBER = 10
TITLE = "Mixing: a 3-source ais_wds.Mix vs the same samples from one source"

CASES = {"4 KiB samples": (4 << 10, 1000), "64 KiB samples": (64 << 10, 200)}
"""Sample size and samples per shard of each case (at scale 1)."""
LAYOUT = {"a": 5, "b": 3, "c": 2}
WEIGHTS = [0.5, 0.3, 0.2]
NAMES = ("one_source", "mix_3", "plain_3")


def _shard(prefix: str, s: int, n: int, size: int) -> bytes:
    from ais_wds.tar.writer import END_OF_ARCHIVE, member_header, padding

    out = bytearray()
    for j in range(n):
        body = (f"{prefix}{s}:{j}:".encode() * (size // 8 + 1))[:size]
        for name, data in ((f"{prefix}{s:02d}-{j:05d}.bin", body), (f"{prefix}{s:02d}-{j:05d}.cls", b"1")):
            out += member_header(name, len(data)) + data + bytes(padding(len(data)))
    return bytes(out + END_OF_ARCHIVE)


def _make(client: Client, base: str, per_shard: int, size: int) -> Any:
    """Writes the ten shards under ``base`` (``ais://bucket/case``) and returns their index."""
    from ais_wds.shard_index.index import build_index, save_index

    jobs = [(f"{base}/{p}/{p}-{s:06d}.tar", p, s) for p, n in LAYOUT.items() for s in range(n)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda j: ais_wds.write_bytes(j[0], _shard(j[1], j[2], per_shard, size), client), jobs))
    index = build_index([f"{base}/{p}/" for p in LAYOUT], client)
    save_index(index, f"{base}/all.index.msgpack", client)
    return index


def _mix(client: Client, base: str, index: Any, stop: Any = "all_exhausted") -> Any:
    sources = [ais_wds.WebDataset(f"{base}/{p}/", client=client, index=index, seed=i) for i, p in enumerate(LAYOUT)]
    return ais_wds.Mix(sources, WEIGHTS, seed=1, stop=stop)


def _plain(client: Client, base: str, index: Any, n: int) -> Iterator[Any]:
    """The floor of mixing three pipelines: the same three WebDatasets, the same draws (``all_exhausted``)
    computed beforehand (from the known sample counts), then read with no Python frame of its own
    (``map(next, ...)``): no state, no epochs, no weight changes, no exhaustion to discover."""
    from ais_wds.mixing.draws import Draws

    its = [iter(ais_wds.WebDataset(f"{base}/{p}/", client=client, index=index, seed=i))
           for i, p in enumerate(LAYOUT)]
    left = [n * shards // sum(LAYOUT.values()) for shards in LAYOUT.values()]
    active = [True] * len(left)
    draws, picks = Draws(1, 0, WEIGHTS), []
    for p in range(n):
        i = draws.source(p)
        picks.append(i)
        left[i] -= 1
        if not left[i] and any(left):
            active[i] = False
            draws.remap(WEIGHTS, active)
    return map(next, map(its.__getitem__, picks))


def _samples(name: str, client: Client, base: str, index: Any, n: int) -> Iterator[Any]:
    if name == "one_source":
        return iter(ais_wds.WebDataset([f"{base}/{p}/" for p in LAYOUT], client=client, index=index, seed=0))
    if name == "mix_3":
        return iter(_mix(client, base, index))
    return _plain(client, base, index, n)


def _timed(samples: Any, n: int) -> Tuple[float, float]:
    """(samples per wall second, samples per CPU second of this process) reading ``n`` samples."""
    start, cpu = time.perf_counter(), time.process_time()
    got = sum(1 for _ in itertools.islice(samples, n))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if got != n:
        raise RuntimeError(f"read {got} samples, expected {n}")
    return n / elapsed, n / cpu


def _loader_rate(name: str, client: Client, base: str, index: Any, n: int) -> float:
    """Samples/s through ``DataLoader(num_workers=2, batch_size=64)`` (fork), from the first batch to the
    last (worker start-up left out): all ``n`` samples."""
    import torch

    if name == "one_source":
        ds: Any = ais_wds.WebDataset([f"{base}/{p}/" for p in LAYOUT], client=client, index=index, seed=0)
    else:
        ds = _mix(client, base, index)
    it = iter(torch.utils.data.DataLoader(ds, batch_size=64, num_workers=2, collate_fn=len))
    got = next(it)
    start = time.perf_counter()
    got += sum(it)
    elapsed = time.perf_counter() - start
    if got != n:
        raise RuntimeError(f"{name}: read {got} samples through the loader, expected {n}")
    return (n - 64) / elapsed


def _spread(values: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _case(client: Client, base: str, size: int, per_shard: int, rounds: int) -> Dict[str, Any]:
    index = _make(client, base, per_shard, size)
    n = per_shard * sum(LAYOUT.values())
    wall: Dict[str, List[float]] = {name: [] for name in NAMES}
    cpu: Dict[str, List[float]] = {name: [] for name in NAMES}
    for r in range(rounds + 1):  # round 0 warms the connections and the page cache: not counted
        got = {name: _timed(_samples(name, client, base, index, n), n)
               for name in (NAMES if r % 2 else NAMES[::-1])}
        if r:
            for name, (w, c) in got.items():
                wall[name].append(w)
                cpu[name].append(c)
    loader: Dict[str, List[float]] = {"one_source": [], "mix_3": []}
    for r in range(max(3, rounds // 2)):
        for name in (("one_source", "mix_3") if r % 2 else ("mix_3", "one_source")):
            loader[name].append(_loader_rate(name, client, base, index, n))

    def ratios(rates: Dict[str, List[float]], name: str = "mix_3") -> Dict[str, float]:
        return _spread([a / b for a, b in zip(rates[name], rates["one_source"])])

    return {"samples": n, "sample_bytes": size, "rounds": rounds,
            "samples_per_s": {name: statistics.median(v) for name, v in wall.items()},
            "x_one_source": ratios(wall),
            "samples_per_cpu_s": {name: statistics.median(v) for name, v in cpu.items()},
            "x_one_source_cpu": ratios(cpu),
            "plain_3_x_one_source_cpu": ratios(cpu, "plain_3"),
            "loader_2_workers_samples_per_s": {name: statistics.median(v) for name, v in loader.items()},
            "x_one_source_loader_2_workers": ratios(loader)}


def _state_bytes(client: Client, base: str, index: Any, n: int) -> Dict[str, int]:
    import torch
    from torchdata.stateful_dataloader import StatefulDataLoader

    def saved(state: Any) -> int:
        buf = io.BytesIO()
        torch.save(state, buf)
        return len(buf.getvalue())

    it = iter(mix := _mix(client, base, index, n))  # stop=<count>: the usual choice
    list(itertools.islice(it, n * 4 // 10))
    state = mix.state_dict()
    loader = StatefulDataLoader(_mix(client, base, index, n), batch_size=32, num_workers=2, collate_fn=len)
    lit = iter(loader)
    for _ in range(n * 4 // 10 // 32):
        next(lit)
    return {"mix_state_json": len(json.dumps(state)), "mix_state_torch_save": saved(state),
            "loader_state_2_workers_torch_save": saved(loader.state_dict())}


def run(client: Any, scale: float = 1.0, rounds: int = 0) -> Dict[str, Any]:
    """The section's result (see the module docstring)."""
    client = Client.of(client)
    rounds = rounds or max(3, int(7 * scale))
    with temp_buckets(client, "mixing") as (bucket,):
        out: Dict[str, Any] = {}
        for i, (label, (size, per_shard)) in enumerate(CASES.items()):
            per_shard = max(50, int(per_shard * min(scale, 1.0)))
            out[label] = _case(client, f"ais://{bucket}/case{i}", size, per_shard, rounds)
        index = ais_wds.load_index(f"ais://{bucket}/case0/all.index.msgpack", client)
        out["state_bytes"] = _state_bytes(client, f"ais://{bucket}/case0", index, out["4 KiB samples"]["samples"])
        return out


def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    res = (results.get("mixing") or {}).get("result") or {}
    out = []
    for label in CASES:
        case = res.get(label) or {}
        x = (case.get("x_one_source_cpu") or {}).get("median")
        detail = (f"{case['samples_per_cpu_s']['mix_3']:,.0f} vs {case['samples_per_cpu_s']['one_source']:,.0f} "
                  f"samples per CPU second; wall {case['x_one_source']['median']:.2f}x, through "
                  f"DataLoader(2 workers) {case['x_one_source_loader_2_workers']['median']:.2f}x"
                  if x is not None else "not run")
        out.append(goal(f"mixing, {label}: 3-source ais_wds.Mix >= 0.95x the same samples from one source "
                        "(per CPU second, in one process)", x, 0.95, detail))
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=0)
    a = p.parse_args()
    print(json.dumps(run(Client(), a.scale, a.rounds), indent=1))
