"""Section 25, worker memory: unique (USS) and proportional (PSS) memory of the main process and of every
DataLoader worker after each epoch, for ais_wds.WebDataset (plain, with a shard index, with ``.shuffle(n)``,
``shuffle="samples"``, and with the heap bound of ``AIS_WDS_HEAP=workers``), the object datasets (AISIterDataset, AISDataset) and
the pipes (AISFileLoader + ais_wds.tar_samples), against plain webdataset's tar path over local copies of
the same shards; 4 persistent workers; the main process also with 0 and 8 workers.

The data is issue 25's: 6 shards x 400 samples of 100 KiB (``scale`` scales the samples per shard, at least
40), each sample decoded to a ``uint8`` tensor, ``.batched(32)``. Every case runs in a fresh process
(``python -m`` this module ``--child``), checks it saw every sample once per epoch with the right bytes
(a sum of the tensors), and prints one JSON line per epoch. Besides the figures after each epoch, a thread
samples every worker's private dirty pages (``/proc/<pid>/smaps_rollup``) every 50 ms during the epoch:
the peak, which is what a buffer or a read-ahead holds while it works (after the epoch it is freed, and only
what the allocator keeps shows).

    AIS_ENDPOINT=... .venv/bin/python -m ais_wds_bench.sections.memory [--scale S] [--cases a,b] [--epochs N]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence

from ..data import temp_buckets
from ..report import NOT_RUN, goal

NUMBER = 25
TITLE = "Worker memory"

SHARDS = 6
SAMPLES = 400
SAMPLE_BYTES = 100 << 10
BATCH = 32
EPOCHS = 6
SHUFFLE_BUFFER = 1000
MIB = 1 << 20

CASES = {
    # name: (what, workers, extra env)
    "webdataset_local": ("wds", 4, {}),
    "ais_wds": ("ais", 4, {}),
    "ais_wds_heap_bound": ("ais", 4, {"AIS_WDS_HEAP": "workers"}),
    "ais_wds_index": ("ais_index", 4, {}),
    "webdataset_local_shuffle": ("wds_shuffle", 4, {}),
    "ais_wds_shuffle": ("ais_shuffle", 4, {}),
    "ais_wds_samples": ("ais_samples", 4, {}),
    "ais_wds_samples_heap_bound": ("ais_samples", 4, {"AIS_WDS_HEAP": "workers"}),
    "ais_iter_dataset": ("iter", 4, {}),
    "ais_map_dataset": ("map", 4, {}),
    "ais_file_loader": ("pipes", 4, {}),
    "ais_wds_0_workers": ("ais", 0, {}),
    "ais_wds_8_workers": ("ais", 8, {}),
}
"""The cases, in the order they run (the baseline first)."""


def run(client: Any, scale: float = 1.0, cases: Optional[Sequence[str]] = None, epochs: int = EPOCHS
        ) -> Dict[str, Any]:
    """Build the data (a temporary bucket, local copies in a temporary folder), run every case in a fresh
    process, and summarise: per case the epochs' rows and the worst worker's USS, its growth after epoch 1,
    the main process's USS and its growth."""
    samples = max(40, int(SAMPLES * scale))
    names = list(cases or CASES)
    with temp_buckets(client, "memory") as (bucket,), tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        checksum = _build(client, bucket, tmp, samples,
                          objects="ais_iter_dataset" in names or "ais_map_dataset" in names)
        out: Dict[str, Any] = {"shards": SHARDS, "samples_per_shard": samples, "sample_kib": SAMPLE_BYTES >> 10,
                               "batch": BATCH, "epochs": epochs}
        for name in names:
            what, workers, env = CASES[name]
            rows = _child(client.endpoint, what, workers, env, bucket, tmp, samples, epochs, checksum)
            out[name] = summarise(rows, SHARDS * samples)
        base = out.get("webdataset_local", {}).get("worker_uss_max_mib")
        if base is not None:
            out["budget_mib"] = round(1.5 * base + 16, 1)
        return out


def summarise(rows: List[Dict[str, Any]], expected: int) -> Dict[str, Any]:
    """The per-epoch rows of one case, with its worst numbers (MiB): ``worker_uss_max_mib`` (any worker,
    any epoch), ``worker_uss_growth_mib`` (the most any worker's USS rose from epoch 1 to the last),
    ``worker_peak_mib`` (the most private memory any worker held during an epoch, sampled),
    ``worker_peak_growth_mib`` (the most a worker's peak rose from epoch 1 to the last),
    ``main_uss_mib`` per epoch and ``main_uss_growth_mib`` (epoch 1 to the last); ``all_samples`` is False
    when an epoch saw a wrong count or wrong bytes."""
    if not rows:
        return {"error": "no rows"}
    workers = [r["workers"] for r in rows]
    uss = [[w["uss"] / MIB for w in epoch] for epoch in workers]
    growth = None
    if len(rows) > 1 and uss[1]:
        growth = max(max(e[i] for e in uss[1:]) - uss[1][i] for i in range(len(uss[1])))
    main = [r["main"]["uss"] / MIB for r in rows]
    peaks = [[p / MIB for p in r.get("peaks", [])] for r in rows]
    peak_growth = None
    if len(rows) > 1 and peaks[1]:
        peak_growth = max(max(e[i] for e in peaks[1:]) - peaks[1][i] for i in range(len(peaks[1])))
    anon = [[w["anon"] / MIB for w in epoch] for epoch in workers]
    anon_growth = None
    if len(rows) > 1 and anon[1]:
        anon_growth = max(max(e[i] for e in anon[1:]) - anon[1][i] for i in range(len(anon[1])))
    main_anon = [r["main"]["anon"] / MIB for r in rows]
    return {
        "all_samples": all(r["samples"] == expected and r["checksum_ok"] for r in rows),
        "worker_uss_max_mib": round(max((max(e) for e in uss if e), default=0.0), 1) if any(uss) else None,
        "worker_uss_median_mib": round(statistics.median(v for e in uss for v in e), 1) if any(uss) else None,
        "worker_pss_max_mib": round(max(w["pss"] / MIB for e in workers for w in e), 1) if any(uss) else None,
        "worker_uss_growth_mib": round(growth, 1) if growth is not None else None,
        "main_uss_mib": [round(m, 1) for m in main],
        "main_pss_mib": [round(r["main"]["pss"] / MIB, 1) for r in rows],
        "main_uss_growth_mib": round(main[-1] - main[min(1, len(main) - 1)], 1),
        "worker_anon_max_mib": round(max(v for e in anon for v in e), 1) if any(anon) else None,
        "worker_anon_growth_mib": round(anon_growth, 1) if anon_growth is not None else None,
        "main_anon_mib": [round(m, 1) for m in main_anon],
        "main_anon_growth_mib": round(max(main_anon[1:], default=main_anon[0]) - main_anon[min(1, len(main_anon) - 1)],
                                      1),
        "per_epoch_worker_uss_mib": [[round(v, 1) for v in e] for e in uss],
        "worker_peak_mib": round(max(v for e in peaks for v in e), 1) if any(peaks) else None,
        "worker_peak_growth_mib": round(peak_growth, 1) if peak_growth is not None else None,
        "per_epoch_worker_peak_mib": [[round(v, 1) for v in e] for e in peaks],
    }


def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    res = results.get("memory", NOT_RUN).get("result") or {}
    ais = res.get("ais_wds") or {}
    base = (res.get("webdataset_local") or {}).get("worker_uss_max_mib")
    ratio = None
    if base and ais.get("worker_uss_max_mib") is not None:
        ratio = round(ais["worker_uss_max_mib"] / (1.5 * base + 16), 2)
    cases = {k: c for k, c in res.items() if isinstance(c, dict) and k.startswith("ais")}
    growth = [c["worker_anon_growth_mib"] for c in cases.values() if c.get("worker_anon_growth_mib") is not None]
    mains = [c["main_anon_growth_mib"] for c in cases.values() if c.get("main_anon_growth_mib") is not None]
    worst = max(cases, key=lambda k: cases[k].get("worker_anon_growth_mib") or 0) if cases else ""
    return [
        goal("memory: ais_wds worker USS / (1.5 x webdataset's local tar path + 16 MiB)", ratio, 1.0,
             f"{ais.get('worker_uss_max_mib')} MiB vs webdataset {base} MiB", higher_is_better=False),
        goal("memory: worst ais_wds worker growth after epoch 1 (MiB, USS less clean file pages)",
             max(growth) if growth else None, 8.0, worst, unit="MiB", higher_is_better=False),
        goal("memory: worst ais_wds main-process growth after epoch 1 (MiB, USS less clean file pages)",
             max(mains) if mains else None, 8.0, unit="MiB", higher_is_better=False),
    ]


def markdown(results: Dict[str, Any]) -> List[str]:
    res = results.get("memory", NOT_RUN).get("result") or {}
    lines = ["", f"## {NUMBER}. {TITLE}", ""]
    if not res:
        return lines + ["not run", ""]
    lines += [f"{res['shards']} shards x {res['samples_per_shard']} samples of {res['sample_kib']} KiB, uint8 tensors, "
              f".batched({res['batch']}), {res['epochs']} epochs, persistent workers; MiB after each epoch "
              f"(budget per worker: 1.5 x webdataset + 16 = {res.get('budget_mib')} MiB). *anon*: USS less the clean "
              "pages of mapped files (a library's pages count in USS once no other process maps them)", "",
              "| case | all samples | worker USS max (median) | worker anon max | worker PSS max | worker growth "
              "after epoch 1: anon (USS) | worker peak in an epoch (its growth) | main USS per epoch | "
              "main anon growth |", "|---|---|---|---|---|---|---|---|---|"]
    for name in CASES:
        c = res.get(name)
        if not isinstance(c, dict):
            continue
        lines.append(f"| {name} | {c.get('all_samples')} | {c.get('worker_uss_max_mib')} "
                     f"({c.get('worker_uss_median_mib')}) | {c.get('worker_anon_max_mib')} | "
                     f"{c.get('worker_pss_max_mib')} | {c.get('worker_anon_growth_mib')} "
                     f"({c.get('worker_uss_growth_mib')}) | {c.get('worker_peak_mib')} "
                     f"({c.get('worker_peak_growth_mib')}) | {c.get('main_uss_mib')} | {c.get('main_anon_growth_mib')} |")
    return lines + [""]


# -- data ------------------------------------------------------------------------------------------------------
def _sample(shard: int, i: int) -> bytes:
    import numpy as np

    return np.random.default_rng(shard * 100_003 + i).integers(0, 256, SAMPLE_BYTES, np.uint8).tobytes()


def _build(client: Any, bucket: str, folder: str, samples: int, objects: bool) -> int:
    """Write the shards (AIS and local copies) and, with ``objects``, every sample as an object too;
    returns the sum of all sample bytes (the check each epoch's tensors must add up to)."""
    import io
    import tarfile

    import numpy as np

    b = client.sdk.bucket(bucket)
    checksum = 0
    for s in range(SHARDS):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(samples):
                body = _sample(s, i)
                checksum += int(np.frombuffer(body, np.uint8).sum(dtype=np.int64))
                info = tarfile.TarInfo(f"s{s:02d}-{i:05d}.bin")
                info.size, info.mtime = len(body), 1_700_000_000
                tar.addfile(info, io.BytesIO(body))
                if objects:
                    b.object(f"objs/s{s:02d}-{i:05d}.bin").get_writer().put_content(body)
        data = buf.getvalue()
        with open(os.path.join(folder, f"shard-{s:06d}.tar"), "wb") as f:
            f.write(data)
        b.object(f"shards/shard-{s:06d}.tar").get_writer().put_content(data)
    return checksum


def _child(endpoint: str, what: str, workers: int, env: Dict[str, str], bucket: str, folder: str, samples: int,
           epochs: int, checksum: int) -> List[Dict[str, Any]]:
    cmd = [sys.executable, "-m", __spec__.name if __spec__ else "ais_wds_bench.sections.memory", "--child", what,
           "--workers", str(workers), "--bucket", bucket, "--folder", folder, "--samples", str(samples),
           "--epochs", str(epochs), "--checksum", str(checksum)]
    proc = subprocess.run(cmd, env={**os.environ, "AIS_ENDPOINT": endpoint, **env}, capture_output=True, text=True,
                          timeout=900)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or len(rows) != epochs:
        raise RuntimeError(f"memory case {what} ({workers} workers) failed (rc {proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    return rows


# -- the child: one case in a fresh process ---------------------------------------------------------------------
def _tensor(data: bytes) -> Any:
    import numpy as np
    import torch

    return torch.from_numpy(np.frombuffer(data, np.uint8).copy())


def _from_sample(sample: Dict[str, Any]) -> Any:
    return (_tensor(sample["bin"]),)


def _from_object(item: Any) -> Any:
    return _tensor(item[1] if isinstance(item, tuple) else item)


def _pipe_samples(loader: Any) -> Any:
    from ais_wds import tar_samples

    return tar_samples({"url": url, "stream": stream} for url, stream in loader)


class _PipeSamples:
    """AISFileLoader's ``(url, stream)`` -> samples -> tensors -> batches, as an IterableDataset."""

    def __init__(self, loader: Any):
        self.loader = loader

    def __iter__(self) -> Any:
        batch: List[Any] = []
        for sample in _pipe_samples(self.loader):
            batch.append(_tensor(sample["bin"]))
            if len(batch) == BATCH:
                yield (_stack(batch),)
                batch = []
        if batch:
            yield (_stack(batch),)


def _stack(batch: List[Any]) -> Any:
    import torch

    return torch.stack(batch)


def _dataset(what: str, bucket: str, folder: str) -> Any:
    """``(dataset, DataLoader batch_size)``: the case's dataset."""
    import webdataset as wds

    import ais_wds

    local = [os.path.join(folder, f"shard-{s:06d}.tar") for s in range(SHARDS)]
    prefix = f"ais://{bucket}/shards/"
    if what.startswith("wds"):
        ds = wds.WebDataset(local, shardshuffle=False, nodesplitter=wds.split_by_node)
        if what == "wds_shuffle":
            ds = ds.shuffle(SHUFFLE_BUFFER)
        return ds.map(_from_sample).batched(BATCH), None
    if what.startswith("ais"):
        kw: Dict[str, Any] = {}
        if what in ("ais_index", "ais_samples"):
            kw["index"] = ais_wds.build_index(prefix)
        if what == "ais_samples":
            kw["shuffle"] = "samples"
        ds = ais_wds.WebDataset(prefix, **kw)
        if what == "ais_shuffle":
            ds = ds.shuffle(SHUFFLE_BUFFER)
        return ds.map(_from_sample).batched(BATCH), None
    if what == "iter":
        return ais_wds.AISIterDataset(None, f"ais://{bucket}/objs/", transform=_from_object), BATCH
    if what == "map":
        return ais_wds.AISDataset(None, f"ais://{bucket}/objs/", transform=_from_object), BATCH
    if what == "pipes":
        from torch.utils.data import IterableDataset

        class Pipe(_PipeSamples, IterableDataset):
            pass

        return Pipe(ais_wds.AISFileLoader(None, [f"{prefix}shard-{s:06d}.tar" for s in range(SHARDS)])), None
    raise ValueError(what)


def memory_of(pid: int) -> Dict[str, int]:
    """USS, PSS and RSS of a process (psutil), and ``anon``: its USS without clean pages of mapped files
    (bytes)."""
    import psutil

    m = psutil.Process(pid).memory_full_info()
    return {"uss": m.uss, "pss": m.pss, "rss": m.rss, "anon": anon_uss(pid)}


def anon_uss(pid: int) -> int:
    """The private memory a process made itself (bytes): its USS less the clean pages of mapped files.

    USS counts a page of a shared library as the process's own whenever no other process maps it, so it
    rises by the size of libtorch's pages in use (40-300 MiB, measured) the moment the last other
    process on the machine that had torch loaded exits. This count is what the heap, buffers and copied
    pages hold: private pages of anonymous mappings, and dirty (copied) pages of file mappings."""
    total = 0
    file_backed = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            key, _, rest = line.partition(" ")
            if not key.endswith(":"):  # a mapping's first line: "start-end perms offset dev inode [path]"
                fields = rest.split()
                path = fields[4] if len(fields) > 4 else ""
                file_backed = path.startswith("/") and not path.startswith("/dev/shm") \
                    and not path.startswith("/memfd:")
            elif key == "Private_Dirty:" or (key == "Private_Clean:" and not file_backed):
                total += int(rest.split()[0]) << 10
    return total


def private_dirty(pid: int) -> int:
    """A process's private dirty pages (bytes), from ``/proc/<pid>/smaps_rollup`` (cheap enough to sample)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return sum(int(line.split()[1]) << 10 for line in f if line.startswith("Private_Dirty:"))


class _PeakSampler:
    """A daemon thread sampling the private dirty pages of the loader's workers every ``interval`` seconds;
    :meth:`take` returns each worker's peak since the last call and starts over."""

    def __init__(self, loader: Any, interval: float = 0.05):
        import threading

        self.loader, self.interval = loader, interval
        self.peaks: Dict[int, int] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True, name="memory-peaks").start()

    def _run(self) -> None:
        import time

        while True:
            for w in getattr(getattr(self.loader, "_iterator", None), "_workers", []):
                try:
                    value = private_dirty(w.pid)
                except OSError:  # not started yet, or gone
                    continue
                with self.lock:
                    self.peaks[w.pid] = max(self.peaks.get(w.pid, 0), value)
            time.sleep(self.interval)

    def take(self, pids: List[int]) -> List[int]:
        with self.lock:
            out = [max(self.peaks.get(p, 0), private_dirty(p)) for p in pids]
            self.peaks = {}
        return out


def _sum(batch: Any) -> int:
    """The sum of a batch's bytes (numpy's buffered reduction: no temporary the size of the batch, which
    torch's ``sum(dtype=int64)`` makes, in threads whose malloc arenas would then show in the main's USS)."""
    import numpy as np

    t = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(t.numpy().sum(dtype=np.uint64))


def _child_main(what: str, workers: int, bucket: str, folder: str, epochs: int, expected_sum: int) -> int:
    from torch.utils.data import DataLoader

    ds, batch_size = _dataset(what, bucket, folder)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0)
    sampler = _PeakSampler(loader)
    for epoch in range(epochs):
        n = total = 0
        for batch in loader:
            t = batch[0] if isinstance(batch, (tuple, list)) else batch
            n += len(t)
            total += _sum(batch)
        pids = [w.pid for w in loader._iterator._workers] if workers else []  # type: ignore[union-attr]
        print(json.dumps({"epoch": epoch, "samples": n, "checksum_ok": total == expected_sum,
                          "main": memory_of(os.getpid()), "workers": [memory_of(p) for p in pids],
                          "peaks": sampler.take(pids)}), flush=True)
    return 0


def _main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--endpoint", help="AIS gateway (default $AIS_ENDPOINT)")
    parser.add_argument("--cases", help="comma-separated, of: " + ", ".join(CASES))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, default=SAMPLES, help=argparse.SUPPRESS)
    parser.add_argument("--checksum", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child_main(args.child, args.workers, args.bucket, args.folder, args.epochs, args.checksum)
    from ais_wds import Client

    cases = args.cases.split(",") if args.cases else None
    print(json.dumps(run(Client(args.endpoint), args.scale, cases, args.epochs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
