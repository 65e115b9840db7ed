"""Pictures of a benchmark run (matplotlib, a dev dependency): one PNG per section that ran.

* ``bench-stream.png``: section 1, MB/s per contender per sample size, the raw-GET limit marked;
* ``bench-pack-engines.png``: section 8, client vs cluster engine (MB/s, client CPU seconds);
* ``bench-loader.png``: section 9, samples/s at the main process by DataLoader worker count, and what
  the variants at 2 workers give.

:func:`draw` never raises: a section that did not run (or failed) is skipped, and a missing matplotlib
is reported, not fatal. Also runnable on a saved run: ``.venv/bin/python scripts/_bench_plots.py
bench-results/latest.json [DIR]``.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List

MIB = 1 << 20


def draw(results: Dict[str, Any], folder: Path, log: Callable[[str], None] = print) -> List[str]:
    """Write the PNGs of the sections in ``results`` into ``folder``; returns the paths written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("  pictures: matplotlib is not installed (pip install -e '.[dev]'); none drawn")
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    subtitle = _subtitle(results)
    for name, fn in (("bench-stream.png", _stream), ("bench-pack-engines.png", _pack_engines),
                     ("bench-loader.png", _loader)):
        try:
            fig = fn(plt, results)
        except Exception:  # noqa: BLE001 - a picture must never stop the benchmark
            log(f"  pictures: {name} failed: {traceback.format_exc(limit=3).strip().splitlines()[-1]}")
            continue
        if fig is None:
            continue
        fig.text(0.01, -0.04, subtitle, fontsize=7, color="0.4")
        path = folder / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(str(path))
    return written


def _subtitle(results: Dict[str, Any]) -> str:
    meta = results.get("meta", {})
    machine = meta.get("machine", {})
    load = meta.get("started", {}).get("load_1m")
    return (f"{meta.get('command', 'scripts/bench')} | {meta.get('started', {}).get('time', '')} | "
            f"{machine.get('nproc', '?')} cores, load {load if load is None else f'{load:.1f}'} at start | "
            f"AIS {meta.get('targets', '?')} targets on the same machine")


def _ok(section: Any) -> Dict[str, Any]:
    return section.get("result") or {} if isinstance(section, dict) and section.get("status") == "ok" else {}


def _stream(plt: Any, results: Dict[str, Any]) -> Any:
    stream = results.get("stream") or {}
    sets = [s for s in stream.get("sets", []) if s.get("role") == "main"]
    rows = [r for r in stream.get("rows", []) if r.get("status") == "ok" and r.get("group") != "limit"]
    if not sets or not rows:
        return None
    labels = list(dict.fromkeys(r["label"] for r in rows))
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / max(len(labels), 1)
    for k, label in enumerate(labels):
        xs, ys = [], []
        for i, s in enumerate(sets):
            r = next((r for r in rows if r["label"] == label and r["set"] == s["label"]), None)
            if r:
                xs.append(i - 0.4 + width * (k + 0.5))
                ys.append(r["mb_s"])
        ax.bar(xs, ys, width, label=label)
    for i, s in enumerate(sets):
        if s.get("limit_mb_s"):
            ax.hlines(s["limit_mb_s"], i - 0.45, i + 0.45, colors="black", linestyles="dashed",
                      label="raw-GET limit" if i == 0 else None)
    ax.set_xticks(range(len(sets)), [s["label"] for s in sets])
    ax.set_yscale("log")
    ax.set_ylabel("MB/s (log scale)")
    ax.set_title("Section 1: streaming tar shards from AIS, one process")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def _pack_engines(plt: Any, results: Dict[str, Any]) -> Any:
    engines = _ok(results.get("pack_engines")).get("engines") or {}
    if not engines:
        return None
    sizes = list(dict.fromkeys(k.split(",")[0] for k in engines))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, metric in zip(axes, ("MB/s", "client CPU s")):
        for k, engine in enumerate(("client", "cluster")):
            vals = [(engines.get(f"{size}, {engine} engine") or {}).get(metric) for size in sizes]
            xs = [i - 0.2 + 0.4 * k for i, v in enumerate(vals) if v is not None]
            ax.bar(xs, [v for v in vals if v is not None], 0.4, label=f"--engine {engine}")
        ax.set_xticks(range(len(sizes)), [f"{s} objects" for s in sizes])
        ax.set_title(metric)
    axes[0].legend(fontsize=8)
    fig.suptitle("Section 8: ais-wds pack, client engine vs cluster engine (AIS get-batch)")
    return fig


def _loader(plt: Any, results: Dict[str, Any]) -> Any:
    table = _ok(results.get("loader")).get("loader") or {}
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
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "bench-results/latest.json"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[1] / "docs"
    for p in draw(json.loads(src.read_text()), out):
        print(p)
