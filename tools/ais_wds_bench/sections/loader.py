"""Section 9, the loader: samples reaching the training loop through ``DataLoader(num_workers=N)``.

Every configuration reads the same shards of 100 KiB samples (``<key>.bin`` + ``<key>.cls``), decodes
each sample into a ``uint8`` tensor and an int label, batches 32 samples and hands the batches to the
main process of a ``torch.utils.data.DataLoader`` (persistent workers, ``pin_memory=False``, fork):

* ``ais_wds``: ``ais_wds.WebDataset(urls)`` from the cluster;
* ``tar_local``: ais_wds's tar walk (``tarfile_to_samples``) over the same shards copied to a temp dir;
* ``wds_local``: plain ``wds.WebDataset`` over that local copy;
* ``raw_get``: the raw-GET limit (one process reading every shard with ``open_object`` readinto),
  as samples/s of the same shards;

each at 1, 2 and 4 workers, and at 2 workers what a user can change (``variant``):

* ``tensor`` (the baseline): per-sample tensors, DataLoader's ``batch_size=32`` collates in the worker
  and the batch crosses to the main process as a tensor in shared memory (file descriptors);
* ``bytes``: per-sample ``bytes`` instead of tensors: the batch is pickled through the worker's pipe;
* ``batched``: ``.batched(32)`` inside the pipeline and ``batch_size=None`` (webdataset's collation);
* ``file_system``: the tensor baseline with ``torch.multiprocessing.set_sharing_strategy("file_system")``;
* ``numpy``: per-sample numpy arrays stacked in the worker (``collate_fn``) and pickled by value;
* ``sdk_in_main`` (ais_wds only): ``import aistore.sdk`` in the main process before the workers fork, so
  that each worker does not import it on its first shard (time to first batch);
* ``switch``: the tensor baseline with ``sys.setswitchinterval(0.0002)`` in each worker (``worker_init_fn``):
  the main process receives each tensor's file descriptor from a helper thread of the worker
  (multiprocessing's resource sharer), which waits for the worker's GIL (5 ms switch interval by default).

Each configuration runs in a fresh interpreter: time to first batch is the first epoch's (worker start-up
included), samples/s is over the following epochs (workers warm; as many as take ``--min-timed-s``, at most
20), with the CPU seconds per sample of the main process and of the workers over those epochs; the
configurations compared with each other run back to back in alternating order (ABBA over rounds), each with
the load average before and after it, and ratios are also given per round. Peak RSS is VmHWM of the
main process (reset after imports) and of each worker at the end (a forked worker's VmHWM includes
pages it shares with the main process). One extra, untimed run of ``ais_wds`` at 2 workers is profiled
with pyinstrument in the main process; the report goes to ``bench-results/profile-loader-*.txt``.

    AIS_ENDPOINT=... .venv/bin/python -m ais_wds_bench.sections.loader [--scale S] [--rounds R] [--goal-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

from .. import REPO
from ..plots import ok
from ..report import NOT_RUN, goal
from ..report import x as times

NUMBER = 9
TITLE = "Loader end to end: DataLoader(num_workers=N) into the main process"

KIB, MIB = 1 << 10, 1 << 20
SAMPLE = 100 * KIB
BATCH = 32
SHARDS = 8
WORKERS = (1, 2, 4)
SWITCH_INTERVAL_S = 0.0002
MIN_TIMED_S, MAX_EPOCHS = 1.5, 20  # timed epochs after the first: at least this long
VARIANTS = ("bytes", "batched", "file_system", "numpy")
CONTENDERS = {
    "ais_wds": "ais_wds.WebDataset (AIS)",
    "tar_local": "ais_wds tar walk, local files",
    "wds_local": "wds.WebDataset, local files",
    "raw_get": "raw GET limit (open_object, 1 process)",
}


# ------------------------------------------------------------------------------------------------
# one configuration, in a fresh interpreter (``--one JSON``)


def _vm_kb(pid: Any, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_s(pid: Any) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _decode_tensor(sample: Dict[str, Any]) -> Any:
    import torch

    return torch.frombuffer(sample["bin"], dtype=torch.uint8), int(sample["cls"])


def _decode_bytes(sample: Dict[str, Any]) -> Any:
    return bytes(sample["bin"]), int(sample["cls"])


def _decode_numpy(sample: Dict[str, Any]) -> Any:
    import numpy as np

    return np.frombuffer(sample["bin"], dtype=np.uint8), int(sample["cls"])


def _collate_numpy(batch: List[Any]) -> Any:
    import numpy as np

    return np.stack([b[0] for b in batch]), np.array([b[1] for b in batch])


def _fast_gil_handoff(worker_id: int) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def _dataset(cfg: Dict[str, Any]) -> Any:
    import webdataset as wds

    decode = {"bytes": _decode_bytes, "numpy": _decode_numpy}.get(cfg["variant"], _decode_tensor)
    if cfg["contender"] == "ais_wds":
        import ais_wds

        ds = ais_wds.WebDataset(cfg["urls"], client=ais_wds.Client(cfg["endpoint"]), shuffle=False).map(decode)
    elif cfg["contender"] == "tar_local":
        from ais_wds.streaming.stages import tarfile_to_samples

        stages = [wds.SimpleShardList(cfg["paths"]), wds.split_by_worker, tarfile_to_samples(), wds.map(decode)]
        return wds.DataPipeline(*stages, *([wds.batched(BATCH)] if cfg["variant"] == "batched" else []))
    else:
        ds = wds.WebDataset(cfg["paths"], shardshuffle=False, nodesplitter=None).map(decode)
    return ds.batched(BATCH) if cfg["variant"] == "batched" else ds


def _raw_get(cfg: Dict[str, Any]) -> Dict[str, Any]:
    import ais_wds

    client = ais_wds.Client(cfg["endpoint"])
    buf = bytearray(MIB)
    out: Dict[str, Any] = {}
    epoch, timed_s, timed_bytes = 0, 0.0, 0
    cpu0 = time.process_time()
    while epoch == 0 or (epoch <= MAX_EPOCHS and timed_s < MIN_TIMED_S):
        t0, nbytes, first = time.perf_counter(), 0, None
        for url in cfg["urls"]:
            with ais_wds.open_object(url, client) as f:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    first = first if first is not None else time.perf_counter() - t0
                    nbytes += n
        if epoch == 0:
            out["ttfb_s"] = first
        else:
            timed_s, timed_bytes = timed_s + time.perf_counter() - t0, timed_bytes + nbytes
        epoch += 1
    out.update(epochs_timed=epoch - 1, seconds=timed_s, samples=cfg["total_samples"] * (epoch - 1),
               bytes=timed_bytes, samples_s=cfg["total_samples"] * (epoch - 1) / timed_s,
               mb_s=timed_bytes / timed_s / 1e6)
    out["main_cpu_us_per_sample"] = 1e6 * (time.process_time() - cpu0) / (cfg["total_samples"] * epoch)
    out["main_peak_rss_mib"] = _vm_kb("self", "VmHWM") / 1024
    out["worker_peak_rss_mib"] = []
    return out


def one(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Run one configuration for two epochs; returns its figures."""
    import warnings

    import torch
    from torch.utils.data import DataLoader

    import ais_wds  # noqa: F401  (imported before the peak is reset, as a training script would)

    warnings.filterwarnings("ignore", message=".*buffer is not writable.*")
    if cfg["contender"] == "raw_get":
        return _raw_get(cfg)
    if cfg["variant"] == "file_system":
        torch.multiprocessing.set_sharing_strategy("file_system")
    if cfg["variant"] == "sdk_in_main":
        import aistore.sdk  # noqa: F401  (forked workers inherit it instead of importing it each)
    ds = _dataset(cfg)
    batched = cfg["variant"] == "batched"
    loader = DataLoader(ds, batch_size=None if batched else BATCH, num_workers=cfg["workers"],
                        persistent_workers=True, pin_memory=False,
                        collate_fn=_collate_numpy if cfg["variant"] == "numpy" else None,
                        worker_init_fn=_fast_gil_handoff if cfg["variant"] == "switch" else None)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM from here on: the loader's own peak
    base_kb = _vm_kb("self", "VmRSS")
    out: Dict[str, Any] = {"main_base_rss_mib": base_kb / 1024}
    profiler = None
    cpu: Dict[str, float] = {}
    epoch, timed_n, timed_bytes, timed_s = 0, 0, 0, 0.0
    min_s, max_epochs = cfg.get("min_timed_s", MIN_TIMED_S), cfg.get("max_epochs", MAX_EPOCHS)
    while epoch == 0 or (epoch <= max_epochs and timed_s < min_s):  # epoch 0: start-up; then >= min_s
        if epoch == 1 and cfg.get("profile"):
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001)
            profiler.start()
        if epoch == 1:  # the workers exist from the first epoch on (persistent): CPU of the timed epochs
            pids = [w.pid for w in getattr(loader._iterator, "_workers", [])]
            cpu = {"main": time.process_time(), "workers": sum(_cpu_s(p) for p in pids)}
        t0, n, nbytes, first = time.perf_counter(), 0, 0, None
        for data, labels in loader:
            if first is None:
                first = time.perf_counter() - t0
            n += len(labels)
            nbytes += sum(len(d) for d in data) if isinstance(data, (list, tuple)) else data.nbytes
        seconds = time.perf_counter() - t0
        if n != cfg["total_samples"] or nbytes != cfg["total_samples"] * SAMPLE:
            raise RuntimeError(f"epoch {epoch}: {n} samples / {nbytes} bytes, expected {cfg['total_samples']}")
        if epoch == 0:
            out.update(ttfb_s=first, first_epoch_samples_s=n / seconds)
        else:
            timed_n, timed_bytes, timed_s = timed_n + n, timed_bytes + nbytes, timed_s + seconds
        epoch += 1
    if profiler is not None:
        profiler.stop()
        out["profile"] = profiler.output_text(unicode=False, color=False, show_all=False)
    if cpu:
        pids = [w.pid for w in getattr(loader._iterator, "_workers", [])]
        out["main_cpu_us_per_sample"] = 1e6 * (time.process_time() - cpu["main"]) / timed_n
        out["workers_cpu_us_per_sample"] = 1e6 * (sum(_cpu_s(p) for p in pids) - cpu["workers"]) / timed_n
    out.update(epochs_timed=epoch - 1, seconds=timed_s, samples=timed_n, bytes=timed_bytes,
               samples_s=timed_n / timed_s, mb_s=timed_bytes / timed_s / 1e6)
    workers = getattr(loader._iterator, "_workers", [])  # persistent: alive until the loader goes
    out["worker_peak_rss_mib"] = [_vm_kb(w.pid, "VmHWM") / 1024 for w in workers]
    out["main_peak_rss_mib"] = _vm_kb("self", "VmHWM") / 1024
    del loader
    return out


# ------------------------------------------------------------------------------------------------
# the section


SMOKE_BELOW = 0.05  # at smaller scales (the test suite's smoke run) only ais_wds and tar_local at 2 workers


def _configs(scale: float = 1.0, goal_only: bool = False) -> List[Dict[str, Any]]:
    out = [{"contender": "raw_get", "workers": 0, "variant": "-"}]
    if scale < SMOKE_BELOW:
        return out + [{"contender": c, "workers": 2, "variant": "tensor"} for c in ("ais_wds", "tar_local")]
    if goal_only:  # the goal's pair, and both with the short GIL switch interval in the workers
        return out + [{"contender": c, "workers": 2, "variant": v} for v in ("tensor", "switch")
                      for c in ("ais_wds", "tar_local")]
    for workers in WORKERS:
        for contender in ("ais_wds", "tar_local", "wds_local"):
            out.append({"contender": contender, "workers": workers, "variant": "tensor"})
    for variant in VARIANTS + ("switch",):
        for contender in ("ais_wds", "tar_local"):
            out.append({"contender": contender, "workers": 2, "variant": variant})
    out.append({"contender": "ais_wds", "workers": 2, "variant": "sdk_in_main"})
    return out


def _spawn(cfg: Dict[str, Any], timeout: float = 600) -> Dict[str, Any]:
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", __spec__.name, "--one", json.dumps(cfg)], capture_output=True, text=True,
                              timeout=timeout, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:.0f}s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip() or proc.stdout.strip())[-800:]}
    out = json.loads(lines[-1])
    out["wall_s"] = time.perf_counter() - t
    return out


def _label(cfg: Dict[str, Any]) -> str:
    return CONTENDERS[cfg["contender"]] + ("" if cfg["variant"] in ("tensor", "-") else f", {cfg['variant']}")


def _groups(configs: List[Dict[str, Any]]) -> List[List[int]]:
    """Indices of the configurations compared with each other (same workers and variant), in run order."""
    out: Dict[Any, List[int]] = {}
    for i, cfg in enumerate(configs):
        variant = "tensor" if cfg["variant"] == "switch" else cfg["variant"]  # one group: the goal's pair
        out.setdefault((cfg["workers"], variant), []).append(i)
    return list(out.values())


def _baseline(variant: str) -> str:
    """The variant of the local rows an ais_wds variant is compared with (the same one)."""
    return variant


def run(client: Any, scale: float = 1.0, rounds: int = 1, log: Any = None, goal_only: bool = False,
        min_timed_s: float = MIN_TIMED_S) -> Dict[str, Any]:
    """The section: every configuration ``rounds`` times (fresh interpreters), medians, ratios, a profile.

    The contenders compared with each other (same workers and variant) run back to back, in alternating
    order from round to round (ABBA), so a change of load hits both; each run records the 1-minute load
    average before and after it, and the CPU its main process and its workers used per sample (steadier
    than samples/s on a shared machine). Ratios are the median (and min, max) of the per-round ratios."""
    import ais_wds

    from .. import data

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    client = ais_wds.Client.of(client)
    data.ensure_bucket(client, "bench-ais-wds")
    shard_size = max(int(64 * MIB * scale), 4 * MIB)
    shard_set = data.ensure_shard_set(client, "bench-ais-wds", SAMPLE, shard_size, SHARDS, log=log)
    tmp = tempfile.mkdtemp(prefix="bench-loader-")
    try:
        paths = []
        for url in shard_set.ais_urls():
            path = os.path.join(tmp, url.rsplit("/", 1)[1])
            with open(path, "wb") as f:
                f.write(ais_wds.read_bytes(url, client))
            paths.append(path)
        base = {"endpoint": client.endpoint, "urls": shard_set.ais_urls(), "paths": paths,
                "total_samples": shard_set.total_samples}
        configs = _configs(scale, goal_only)
        runs: Dict[int, List[Dict[str, Any]]] = {i: [] for i in range(len(configs))}
        errors: Dict[int, str] = {}
        load = [os.getloadavg()[0]]
        for r in range(rounds):
            for group in _groups(configs):
                for i in group if r % 2 == 0 else group[::-1]:
                    cfg = configs[i]
                    before = os.getloadavg()[0]
                    res = _spawn({**base, **cfg, "min_timed_s": min_timed_s})
                    if "error" in res:
                        errors[i] = res["error"]
                        log(f"    {_label(cfg)} x{cfg['workers']}: {res['error'].splitlines()[-1]}")
                    else:
                        runs[i].append({**res, "round": r, "load_1m": (before, os.getloadavg()[0])})
            load.append(os.getloadavg()[0])
            log(f"    loader round {r + 1}/{rounds} done (load {load[-1]:.1f})")
        table: Dict[str, Dict[str, Any]] = {}
        for i, cfg in enumerate(configs):
            row: Dict[str, Any] = {"contender": cfg["contender"], "workers": cfg["workers"], "variant": cfg["variant"]}
            got = runs[i]
            if not got:
                row.update(status="error: " + errors.get(i, "no run").strip().splitlines()[-1][:200])
            else:
                med = statistics.median(x["samples_s"] for x in got)
                workers_kb = max((x["worker_peak_rss_mib"] for x in got), key=lambda w: max(w, default=0))
                row.update(status="ok", runs=len(got), samples_s=med, mb_s=med * SAMPLE / 1e6,
                           samples_s_min=min(x["samples_s"] for x in got),
                           samples_s_max=max(x["samples_s"] for x in got),
                           ttfb_ms=1000 * statistics.median(x["ttfb_s"] for x in got),
                           main_peak_rss_mib=max(x["main_peak_rss_mib"] for x in got),
                           main_rss_growth_mib=max(x["main_peak_rss_mib"] - x.get("main_base_rss_mib", 0) for x in got)
                           if cfg["contender"] != "raw_get" else None,
                           worker_peak_rss_mib=" / ".join(f"{w:.0f}" for w in workers_kb) or "-",
                           main_cpu_us_per_sample=_median(got, "main_cpu_us_per_sample"),
                           workers_cpu_us_per_sample=_median(got, "workers_cpu_us_per_sample"),
                           load_1m_min=min(min(x["load_1m"]) for x in got),
                           load_1m_max=max(max(x["load_1m"]) for x in got),
                           per_round={x["round"]: x["samples_s"] for x in got})
            table[f"{_label(cfg)}, {cfg['workers']} worker{'s' if cfg['workers'] != 1 else ''}"] = row
        profile = _spawn({**base, "contender": "ais_wds", "workers": 2, "variant": "tensor", "profile": True}) \
            if scale >= SMOKE_BELOW else {}
        out: Dict[str, Any] = {"shards": SHARDS, "shard_bytes": shard_set.shard_bytes,
                               "samples": shard_set.total_samples, "batch_size": BATCH, "rounds": rounds,
                               "load_1m": load, "loader": table, "ratios": _ratios(table),
                               "paired_ratios": _paired_ratios(table)}
        if profile.get("profile"):
            path = REPO / "bench-results" / "profile-loader-ais_wds-2workers.txt"
            path.parent.mkdir(exist_ok=True)
            path.write_text(profile["profile"])
            out["profile_file"] = str(path.relative_to(REPO))
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _median(runs: List[Dict[str, Any]], key: str) -> Any:
    values = [x[key] for x in runs if x.get(key) is not None]
    return statistics.median(values) if values else None


def _ratios(table: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """``ais_wds`` over ``tar_local`` / ``wds_local`` at each worker count and variant: ratios of the medians."""
    def row(contender: str, workers: int, variant: str) -> Any:
        return next((r for r in table.values() if r["contender"] == contender and r["workers"] == workers
                     and r["variant"] == variant and r.get("samples_s")), None)

    out: Dict[str, Any] = {}
    for w, variant in sorted({(r["workers"], r["variant"]) for r in table.values() if r["contender"] == "ais_wds"}):
        a = row("ais_wds", w, variant)
        for other, name in (("tar_local", "tar_local"), ("wds_local", "wds_local")):
            b = row(other, w, _baseline(variant))
            if not (a and b):
                continue
            key = f"ais_wds_vs_{name}_{w}w" + ("" if variant == "tensor" else f"_{variant}")
            out[key] = a["samples_s"] / b["samples_s"]
    return out


def _paired_ratios(table: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """For each ratio of :func:`_ratios`: the median, min and max of the ratios of runs of the same round."""
    rows = {(r["contender"], r["workers"], r["variant"]): r for r in table.values() if r.get("per_round")}
    out: Dict[str, Any] = {}
    for (contender, w, variant), a in rows.items():
        if contender != "ais_wds":
            continue
        for other in ("tar_local", "wds_local"):
            b = rows.get((other, w, _baseline(variant)))
            if b is None:
                continue
            paired = [a["per_round"][k] / b["per_round"][k] for k in a["per_round"] if k in b["per_round"]]
            if paired:
                key = f"ais_wds_vs_{other}_{w}w" + ("" if variant == "tensor" else f"_{variant}")
                out[key] = {"median": statistics.median(paired), "min": min(paired), "max": max(paired),
                            "rounds": len(paired)}
    return out



def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    section = results.get("loader", NOT_RUN)
    ld = section.get("result") or {}
    ratio2 = (ld.get("ratios") or {}).get("ais_wds_vs_tar_local_2w")
    return [goal("loader: ais_wds.WebDataset >= 0.8x the same tar path over local files, 2 workers", ratio2, 0.8,
                 ", ".join(f"{k} {times(v)}" for k, v in (ld.get("ratios") or {}).items()) or section.get("reason", ""))]


def plot(plt: Any, results: Dict[str, Any]) -> Any:
    """samples/s at the main process by worker count, and the variants at 2 workers."""
    table = ok(results.get("loader")).get("loader") or {}
    rows = [r for r in table.values() if r.get("status") == "ok"]
    if not rows:
        return None
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    names = {"ais_wds": "ais_wds.WebDataset (AIS)", "tar_local": "ais_wds tar walk, local files",
             "wds_local": "wds.WebDataset, local files"}
    for contender, label in names.items():
        pts = sorted((r["workers"], r["samples_s"]) for r in rows
                     if r["contender"] == contender and r["variant"] == "tensor")
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    raw = next((r for r in rows if r["contender"] == "raw_get"), None)
    if raw:
        ax.axhline(raw["samples_s"], color="black", linestyle="dashed", label="raw-GET limit (1 process)")
    ax.set_xticks([1, 2, 4])
    ax.set_xlabel("DataLoader num_workers")
    ax.set_ylabel("samples/s at the main process")
    ax.set_title("100 KiB samples -> uint8 tensors, batches of 32")
    ax.set_ylim(0, 1.25 * max([r["samples_s"] for r in rows if r["workers"] in (0, 1, 2, 4)], default=1))
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    variants = [r for r in rows if r["workers"] == 2 and r["contender"] in ("ais_wds", "tar_local")]
    order = ["tensor", "bytes", "batched", "file_system", "numpy", "sdk_in_main"]
    present = [v for v in order if any(r["variant"] == v for r in variants)]
    for k, contender in enumerate(("ais_wds", "tar_local")):
        vals = [next((r["samples_s"] for r in variants if r["contender"] == contender and r["variant"] == v), 0)
                for v in present]
        bx.bar([i - 0.2 + 0.4 * k for i in range(len(present))], vals, 0.4, label=names[contender])
    bx.set_xticks(range(len(present)), present, fontsize=8, rotation=30)
    bx.set_title("2 workers: what a user can change")
    bx.set_ylim(0, 1.3 * max((r["samples_s"] for r in variants), default=1))
    bx.legend(fontsize=7, loc="upper left")
    fig.suptitle("Section 9: the loader end to end, DataLoader(num_workers=N, persistent_workers=True)")
    return fig

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--goal-only", action="store_true", help="only ais_wds and tar_local at 2 workers (and raw GET)")
    p.add_argument("--min-timed-s", type=float, default=MIN_TIMED_S, help="timed epochs per run: at least this long")
    p.add_argument("--out", help="also write the result here (JSON)")
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(json.loads(a.one))))
    else:
        from ais_wds import Client

        result = run(Client(), a.scale, a.rounds, goal_only=a.goal_only, min_timed_s=a.min_timed_s)
        if a.out:
            Path(a.out).write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
