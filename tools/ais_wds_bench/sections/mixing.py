"""Section 10, mixing: what ``ais_wds.Mix`` costs over reading the same samples from one source.

Ten indexed tar shards of ``SHARD_SAMPLES`` samples (``SAMPLE`` bytes each, ``<key>.bin`` + ``<key>.cls``)
under three prefixes, sized like the weights: ``a/`` 5 shards, ``b/`` 3, ``c/`` 2. Per round, in this
process (no DataLoader, so only the mix's own work is added), back to back in alternating order:

* ``one_source``: ``ais_wds.WebDataset`` over all ten shards (one index), the first ``N`` samples;
* ``mix_3``: ``ais_wds.Mix`` of three ``ais_wds.WebDataset`` (one per prefix, the same index),
  weights 0.5 / 0.3 / 0.2, ``stop=N`` (every sample of the mix comes from its source's first epoch);
* ``plain_3``: the floor of any mix of three pipelines: the same three WebDatasets and the same draws,
  read by a bare generator (no state, epochs or weight changes);

``N`` is 90% of the samples. Then the same two through ``DataLoader(num_workers=2, batch_size=64)`` (the
one source with ``.with_epoch(N / 2)``), from the first batch to the last. Samples/s (wall) is the median over the rounds; ``x_one_source`` the median
of the per-round ratios; ``samples_per_cpu_s`` / ``x_one_source_cpu`` the same per CPU second of this
process (less sensitive to other load on the machine). Also the state: bytes of ``Mix.state_dict()`` mid-epoch as JSON and through
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
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List, Tuple

import ais_wds
from ais_wds import Client

from ..report import goal

NUMBER = 10
TITLE = "Mixing: a 3-source ais_wds.Mix vs the same samples from one source"

SAMPLE = 4 << 10
SHARD_SAMPLES = 1000
LAYOUT = {"a": 5, "b": 3, "c": 2}
WEIGHTS = [0.5, 0.3, 0.2]


def _shard(prefix: str, s: int, n: int) -> bytes:
    from ais_wds.tar.writer import END_OF_ARCHIVE, member_header, padding

    out = bytearray()
    for j in range(n):
        body = (f"{prefix}{s}:{j}:".encode() * (SAMPLE // 8))[:SAMPLE]
        for name, data in ((f"{prefix}{s:02d}-{j:05d}.bin", body), (f"{prefix}{s:02d}-{j:05d}.cls", b"1")):
            out += member_header(name, len(data)) + data + bytes(padding(len(data)))
    return bytes(out + END_OF_ARCHIVE)


def _make(client: Client, bucket: str, per_shard: int) -> str:
    from ais_wds.shard_index.index import build_index, save_index

    jobs = [(f"ais://{bucket}/{p}/{p}-{s:06d}.tar", p, s) for p, n in LAYOUT.items() for s in range(n)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda j: ais_wds.write_bytes(j[0], _shard(j[1], j[2], per_shard), client), jobs))
    index = f"ais://{bucket}/all.index.msgpack"
    save_index(build_index([f"ais://{bucket}/{p}/" for p in LAYOUT], client), index, client)
    return index


def _mix(client: Client, bucket: str, index: Any, n: int) -> Any:
    sources = [ais_wds.WebDataset(f"ais://{bucket}/{p}/", client=client, index=index, seed=i)
               for i, p in enumerate(LAYOUT)]
    return ais_wds.Mix(sources, WEIGHTS, seed=1, stop=n)


def _plain(client: Client, bucket: str, index: Any, n: int) -> Iterator[Any]:
    """The floor of mixing three pipelines: the same three WebDatasets, each sample from the source the
    same seeded draws pick, by a bare generator (no state, no epochs, no weight changes)."""
    from ais_wds.mixing.draws import Draws

    its = [iter(ais_wds.WebDataset(f"ais://{bucket}/{p}/", client=client, index=index, seed=i))
           for i, p in enumerate(LAYOUT)]
    draws = Draws(1, 0, WEIGHTS)
    return (next(its[draws.source(p)]) for p in range(n))


def _timed(samples: Any, n: int) -> Tuple[float, float]:
    """(samples per wall second, samples per CPU second of this process) reading ``n`` samples."""
    start, cpu = time.perf_counter(), time.process_time()
    got = sum(1 for _ in itertools.islice(samples, n))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if got != n:
        raise RuntimeError(f"read {got} samples, expected {n}")
    return n / elapsed, n / cpu


def _loader_rate(name: str, client: Client, bucket: str, urls: List[str], index: Any, n: int) -> float:
    """Samples/s through ``DataLoader(num_workers=2, batch_size=64)`` (fork), from the first batch to the
    last (worker start-up left out): ``n`` samples, ``n / 2`` per worker."""
    import torch

    if name == "one_source":
        ds: Any = ais_wds.WebDataset(urls, client=client, index=index, seed=0).with_epoch(n // 2)
    else:
        ds = _mix(client, bucket, index, n)
    loader = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=2, collate_fn=len)
    it = iter(loader)
    got = next(it)
    start = time.perf_counter()
    got += sum(it)
    elapsed = time.perf_counter() - start
    if got != n:
        raise RuntimeError(f"{name}: read {got} samples through the loader, expected {n}")
    return (n - 64) / elapsed


def _saved_bytes(state: Any) -> int:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return len(buf.getvalue())


def run(client: Any, scale: float = 1.0, rounds: int = 0) -> Dict[str, Any]:
    """The section's result (see the module docstring)."""
    client = Client.of(client)
    rounds = rounds or max(3, int(7 * scale))
    per_shard = max(100, int(SHARD_SAMPLES * min(scale, 1.0)))
    total = per_shard * sum(LAYOUT.values())
    n = total * 9 // 10
    bucket = f"bench-mixing-{uuid.uuid4().hex[:8]}"
    client.sdk.bucket(bucket).create(exist_ok=True)
    try:
        index = ais_wds.load_index(_make(client, bucket, per_shard), client)
        one_urls = [f"ais://{bucket}/{p}/" for p in LAYOUT]
        rates: Dict[str, List[float]] = {"one_source": [], "mix_3": [], "plain_3": []}
        cpu_rates: Dict[str, List[float]] = {"one_source": [], "mix_3": [], "plain_3": []}
        ratios: List[float] = []
        cpu_ratios: List[float] = []
        plain_cpu_ratios: List[float] = []
        for r in range(rounds + 1):  # round 0 warms the connections and the page cache: not counted
            order = ("one_source", "mix_3", "plain_3") if r % 2 else ("plain_3", "mix_3", "one_source")
            got = {}
            for name in order:
                if name == "one_source":
                    samples = iter(ais_wds.WebDataset(one_urls, client=client, index=index, seed=0))
                elif name == "mix_3":
                    samples = iter(_mix(client, bucket, index, n))
                else:
                    samples = _plain(client, bucket, index, n)
                got[name] = _timed(samples, n)
            if r:
                for name, (wall, cpu) in got.items():
                    rates[name].append(wall)
                    cpu_rates[name].append(cpu)
                ratios.append(got["mix_3"][0] / got["one_source"][0])
                cpu_ratios.append(got["mix_3"][1] / got["one_source"][1])
                plain_cpu_ratios.append(got["plain_3"][1] / got["one_source"][1])
        loader_rates: Dict[str, List[float]] = {"one_source": [], "mix_3": []}
        loader_ratios: List[float] = []
        for r in range(max(3, rounds // 2)):
            order = ("one_source", "mix_3") if r % 2 else ("mix_3", "one_source")
            got_loader = {name: _loader_rate(name, client, bucket, one_urls, index, n) for name in order}
            for name, value in got_loader.items():
                loader_rates[name].append(value)
            loader_ratios.append(got_loader["mix_3"] / got_loader["one_source"])
        mix = _mix(client, bucket, index, n)
        it = iter(mix)
        list(itertools.islice(it, n * 4 // 10))
        state = mix.state_dict()
        from torchdata.stateful_dataloader import StatefulDataLoader

        loader = StatefulDataLoader(_mix(client, bucket, index, n), batch_size=32, num_workers=2, collate_fn=len)
        lit = iter(loader)
        for _ in range(n * 4 // 10 // 32):
            next(lit)
        loader_state = loader.state_dict()
        del lit
        return {
            "samples": n, "sample_bytes": SAMPLE, "rounds": rounds,
            "samples_per_s": {name: {"median": statistics.median(v), "min": min(v), "max": max(v)}
                              for name, v in rates.items()},
            "x_one_source": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
            "samples_per_cpu_s": {name: statistics.median(v) for name, v in cpu_rates.items()},
            "loader_2_workers_samples_per_s": {name: statistics.median(v) for name, v in loader_rates.items()},
            "x_one_source_loader_2_workers": {"median": statistics.median(loader_ratios), "min": min(loader_ratios),
                                              "max": max(loader_ratios)},
            "x_one_source_cpu": {"median": statistics.median(cpu_ratios), "min": min(cpu_ratios),
                                 "max": max(cpu_ratios)},
            "plain_3_x_one_source_cpu": statistics.median(plain_cpu_ratios),
            "state_bytes": {"mix_state_json": len(json.dumps(state)), "mix_state_torch_save": _saved_bytes(state),
                            "loader_state_2_workers_torch_save": _saved_bytes(loader_state)},
        }
    finally:
        try:
            client.sdk.bucket(bucket).delete(missing_ok=True)
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass


def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    res = (results.get("mixing") or {}).get("result") or {}
    x = (res.get("x_one_source") or {}).get("median")
    rates = res.get("samples_per_s") or {}
    detail = (f"{rates['mix_3']['median']:,.0f} vs {rates['one_source']['median']:,.0f} samples/s, "
              f"state {res['state_bytes']['mix_state_json']} B" if x is not None else "not run")
    return [goal("mixing: 3-source ais_wds.Mix >= 0.95x the same samples from one source", x, 0.95, detail)]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=0)
    a = p.parse_args()
    print(json.dumps(run(Client(), a.scale, a.rounds), indent=1))
