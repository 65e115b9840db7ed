"""Section 6, resume: what exact resume costs.

* State tracking: ``ais_wds.WebDataset`` (which counts every sample for its resume state) against the
  same reader and tar stage without any tracking (``open_object`` + ``tar_samples`` over the shards),
  at 1 KiB and 100 KiB samples. One process; many short rounds, each round runs both (and the
  untracked path a second time, as an A/A control) in an order that alternates between rounds; per
  round the ratio of each to the untracked run next to it, then the median ratio and its spread
  (interquartile range) over the rounds, for wall time and for the client's CPU seconds per sample.
  The A/A ratio shows what the method reports when there is no difference. The tracked side also
  pays ais_wds.WebDataset's pipeline (its shard plan and one more generator per stage), so the figure
  is an upper bound on what counting costs.
* Time to resume mid-shard: from ``load_state_dict`` to the first sample, 90% into one shard of 1 KiB
  samples, with a shard index (one range GET from the next sample's offset) and without (the shard is
  streamed again from its start and the consumed samples are parsed and skipped).

    AIS_ENDPOINT=... .venv/bin/python -m ais_wds_bench.sections.resume [--scale S]
"""

from __future__ import annotations

import argparse
import functools
import io
import statistics
import tarfile
import time
import uuid
from typing import Any, Callable, Dict, Iterable, List, Tuple

import ais_wds
from ais_wds import Client, open_object, read_bytes, write_bytes
from ais_wds.shard_index.index import build_index
from ais_wds.streaming.pipeline import SHARD_BUFSIZE
from ais_wds.streaming.stages import tar_samples

NUMBER = 6
TITLE = "Resume: cost of state tracking, time to resume mid-shard"


def _shard(sample_size: int, total: int, tag: int) -> bytes:
    buf = io.BytesIO()
    body = bytes(sample_size)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for j in range(max(1, total // (sample_size + 512))):
            info = tarfile.TarInfo(f"k{tag:02d}-{j:08d}.bin")
            info.size = sample_size
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _make(client: Client, bucket: str, prefix: str, sample_size: int, shard_bytes: int, shards: int) -> List[str]:
    urls = [f"ais://{bucket}/{prefix}/s-{i:04d}.tar" for i in range(shards)]
    for i, url in enumerate(urls):
        write_bytes(url, _shard(sample_size, shard_bytes, i), client)
    return urls


def _count(samples: Iterable[Any]) -> int:
    n = 0
    for _ in samples:
        n += 1
    return n


def _quartiles(values: List[float]) -> Tuple[float, float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def _memory_opener(shards: Dict[str, bytes]) -> Callable[..., Any]:
    def opener(url: str, client: Any = None, **_: Any) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(shards[url]), SHARD_BUFSIZE)  # type: ignore[arg-type]
    return opener


def tracking_cost(urls: List[str], client: Client, rounds: int, memory: bool = False) -> Dict[str, Any]:
    """Interleaved rounds of untracked / tracked / untracked-again reads of ``urls``; paired ratios.
    ``memory``: both read the shards from memory instead of AIS (the client's own cost, no server)."""
    import ais_wds.streaming.pipeline as pipeline

    real_open = pipeline.open_object
    opener: Callable[..., Any] = _memory_opener({u: read_bytes(u, client) for u in urls}) if memory else \
        functools.partial(open_object, bufsize=SHARD_BUFSIZE)
    pipeline.open_object = opener  # type: ignore[assignment]  # the tracked side opens through it too
    try:
        return _interleaved(urls, client, rounds, opener)
    finally:
        pipeline.open_object = real_open  # type: ignore[assignment]


def _interleaved(urls: List[str], client: Client, rounds: int, opener: Callable[..., Any]) -> Dict[str, Any]:
    ds = ais_wds.WebDataset(urls, client=client, shuffle=False)  # (no listing: the URLs are given)

    def untracked() -> int:
        return _count(tar_samples({"url": u, "stream": opener(u, client)} for u in urls))

    def tracked() -> int:
        return _count(ds)  # each pass is an epoch of the same (unshuffled) order

    runs = {"untracked": untracked, "tracked": tracked, "untracked again": untracked}
    untracked()  # warm: connections, page cache of the targets
    tracked()
    wall: Dict[str, List[float]] = {k: [] for k in runs}
    cpu: Dict[str, List[float]] = {k: [] for k in runs}
    n = 0
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            t, c = time.perf_counter(), time.process_time()
            n = runs[name]()
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - t)
    out: Dict[str, Any] = {"samples per run": n, "rounds": rounds}
    for measure, values in (("wall", wall), ("cpu", cpu)):
        for name in ("untracked", "tracked"):
            lo, med, hi = _quartiles(values[name])
            out[f"{name} {measure} us/sample (IQR)"] = f"{1e6 * med / n:.2f} ({1e6 * lo / n:.2f}-{1e6 * hi / n:.2f})"
        for name, label in (("tracked", "cost"), ("untracked again", "A/A control")):
            ratios = [100 * (x / y - 1) for x, y in zip(values[name], values["untracked"])]
            lo, med, hi = _quartiles(ratios)
            out[f"{label} {measure} % (IQR)"] = f"{med:+.1f} ({lo:+.1f} to {hi:+.1f})"
            out[f"{label} {measure} %"] = round(med, 2)
            # best of the rounds (as timeit): the least disturbed run of each, for CPU-bound code
            out[f"{label} {measure} %, best of rounds"] = round(100 * (min(values[name]) / min(values["untracked"]) - 1), 2)
    return out


def resume_mid_shard(client: Client, bucket: str, scale: float, rounds: int) -> Dict[str, Dict[str, Any]]:
    """Seconds from ``load_state_dict`` to the first sample, 90% into one shard, with and without an index."""
    resume: Dict[str, Dict[str, Any]] = {}
    urls = _make(client, bucket, "resume", 1024, int((64 << 20) * max(scale, 0.25)), 1)
    index = build_index(urls, client)
    n = len(index)
    for label, idx in (("with index (range GET)", index), ("without index (re-stream, skip)", None)):
        ds = ais_wds.WebDataset(urls, client=client, shuffle=False, index=idx)
        it = iter(ds)
        for _ in range(int(n * 0.9)):
            next(it)
        state = ds.state_dict()
        secs = []
        for _ in range(rounds):
            again = ais_wds.WebDataset(urls, client=client, shuffle=False, index=idx)
            t = time.perf_counter()
            again.load_state_dict(state)
            next(iter(again))
            secs.append(time.perf_counter() - t)
        resume[label] = {"samples in shard": n, "resumed at sample": int(n * 0.9),
                         "seconds to first sample": round(statistics.median(secs), 4)}
    return resume


TRACKING_SHARDS = {"1 KiB samples": (1024, 8 << 20), "100 KiB samples": (100 * 1024, 32 << 20)}
"""Sample size and shard size per case: two shards per run, a run of about a tenth of a second here,
whatever the scale (a shorter run would weigh the per-pass set-up, ~50 us, against too few samples;
the scale sets the number of rounds)."""


def run(client: Any, scale: float = 1.0, rounds: int = 5, tracking_rounds: int = 0, resume: bool = True
        ) -> Dict[str, Any]:
    """Both measurements; ``tracking_rounds`` (default ``max(10, 40 * scale)``) rounds of the tracking cost."""
    client = Client.of(client)
    bucket = f"bench-resume-{uuid.uuid4().hex[:8]}"
    client.sdk.bucket(bucket).create(exist_ok=True)
    tracking_rounds = tracking_rounds or max(10, int(40 * scale))
    try:
        tracking: Dict[str, Dict[str, Any]] = {}
        for label, (size, shard_bytes) in TRACKING_SHARDS.items():
            urls = _make(client, bucket, f"t{size}", size, shard_bytes, 2)  # runs of one size at any scale
            tracking[label] = tracking_cost(urls, client, tracking_rounds)
            tracking[f"{label}, from memory"] = tracking_cost(urls, client, tracking_rounds, memory=True)
        out: Dict[str, Any] = {"state_tracking": tracking}
        if resume:
            out["resume_mid_shard"] = resume_mid_shard(client, bucket, scale, rounds)
        return out
    finally:
        try:
            client.sdk.bucket(bucket).delete(missing_ok=True)
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=5, help="rounds of the mid-shard resume timing")
    p.add_argument("--tracking-rounds", type=int, default=0, help="rounds of the tracking cost (default 40 x scale)")
    p.add_argument("--only-tracking", action="store_true", help="skip the mid-shard resume timing")
    a = p.parse_args()
    import json

    print(json.dumps(run(Client(), a.scale, a.rounds, a.tracking_rounds, not a.only_tracking), indent=1))
