"""Section 1, shard streaming: raw GET (http.client, urllib3, ais_wds.open_object, curl) against
ais_wds.WebDataset, wds.WebDataset + ais_wds gopen, wds.WebDataset on http URLs (curl pipe), wds.WebDataset
with ``pipe:ais get`` and aistore.pytorch.AISShardReader, per sample size; plus peak RSS at two shard sizes.

Unlike the other sections it is configured by the CLI's own flags (``--sizes``, ``--shards``, ``--rounds``,
``--contenders``, ``--bucket``, ``--profile``, ``--prepare-only``, ``--ais-cli``, ``--build-cli``): the CLI
calls :func:`run_stream` with its arguments. The contenders and the processes that time them are in
:mod:`ais_wds_bench.stream_cells`; the shard sets in :mod:`ais_wds_bench.data`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .. import REPO, ais_cli, data, stream_cells
from ..report import MIB, cpu, goal, num, x

NUMBER = 1
TITLE = "Shard streaming"

FULL_SHARD = 64 * MIB
RSS_SUBSET = ("raw_open_object", "ais_wds_webdataset", "wds_ais_gopen", "ais_shard_reader")
AIS_WDS_ROWS = ("ais_wds_webdataset", "wds_ais_gopen")
# The raw-GET limit of the issue: the fastest of these. raw_http_client (no copy at all) is stricter
# still; it gets a goal row of its own so that nobody mistakes one for the other.
LIMIT_ROWS = ("raw_urllib3", "raw_open_object", "raw_curl")
FLOOR_ROW = "raw_http_client"


# ------------------------------------------------------------------------------------------------
# the run


def _find_ais_cli(args: argparse.Namespace, log: Callable[[str], None]) -> Dict[str, Any]:
    found = ais_cli.find_ais_cli(args.ais_cli)
    if found:
        return {"path": found}
    if args.build_cli == "no" or (args.build_cli == "auto" and args.quick):
        return {"path": None, "reason": "no ais CLI found (build it: scripts/bench --build-cli yes)"}
    try:
        return {"path": ais_cli.build_ais_cli(log=log)}
    except Exception as e:  # noqa: BLE001 - the row becomes "not available" with this reason
        log(f"  ais CLI: {e}")
        return {"path": None, "reason": f"ais CLI build failed: {e}"[:300]}


def run_stream(client, args: argparse.Namespace, log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Section 1 and the RSS check; returns ``{"stream": {"sets", "rows", ...}, "rss": {...}}``."""
    data.ensure_bucket(client, args.bucket)
    sets = []
    for size in args.sizes:
        shard = max(int(FULL_SHARD * args.scale), 4 * data.record_size(size))
        sets.append(("main", data.ensure_shard_set(client, args.bucket, size, shard, args.shards, log=log)))
    large = next((s for role, s in sets if s.sample_size == MIB), None)
    if large:
        small_shard = max(large.shard_size // 4, 2 * data.record_size(MIB))
        sets.append(("rss", data.ensure_shard_set(client, args.bucket, MIB, small_shard, args.shards, log=log)))

    if args.prepare_only:
        return {"stream": {"sets": [{**s.to_json(), "role": role} for role, s in sets], "rows": []}}
    cli = _find_ais_cli(args, log)
    missing = stream_cells.availability(cli["path"])
    if "wds_ais_cli" in missing and cli.get("reason"):
        missing["wds_ais_cli"] = cli["reason"]
    out: Dict[str, Any] = {"sets": [], "rows": [], "ais_cli": cli}
    for role, shard_set in sets:
        names = [c for c in args.contenders if role == "main" or c in RSS_SUBSET]
        runnable = [c for c in names if c not in missing]
        log(f"section 1: {shard_set.label} x {shard_set.n_shards}: {len(runnable)} contenders, {args.rounds} rounds")
        rows = stream_cells.measure_set(shard_set, runnable, endpoint=client.endpoint, rounds=args.rounds,
                                        ais_cli=cli["path"], profile=args.profile, log=log)
        for r in rows:
            if r.get("profile"):
                path = REPO / "bench-results" / f"profile-{Path(shard_set.prefix).name}-{r['contender']}.txt"
                path.parent.mkdir(exist_ok=True)
                path.write_text(r.pop("profile"))
                r["profile_file"] = str(path.relative_to(REPO))
                log(f"    profile of {r['contender']}: {r['profile_file']}")
        by_name = {r["contender"]: r for r in rows}
        for name in names:
            c = stream_cells.CONTENDERS[name]
            out["rows"].append(by_name.get(name) or {
                "contender": name, "label": c.label, "group": c.group, "set": shard_set.label,
                "status": "not available", "reason": missing.get(name, "")})
        out["sets"].append({**shard_set.to_json(), "role": role})
    add_ratios(out)
    if not large:
        return {"stream": out, "rss": {"rows": [], "reason": "no 1 MiB sample set (--sizes)"}}
    rss = {"small_shard_mib": sets[-1][1].shard_bytes / MIB, "large_shard_mib": large.shard_bytes / MIB,
           "rows": rss_table(out, sets[-1][1].label, large.label)}
    return {"stream": out, "rss": rss}


# ------------------------------------------------------------------------------------------------
# derived numbers


def _ok_rows(rows) -> Dict[str, Dict[str, Any]]:
    return {r["contender"]: r for r in rows if r.get("status") == "ok"}


def add_ratios(stream: Dict[str, Any]) -> None:
    """Per set: the raw-GET limit (fastest of LIMIT_ROWS) and each row's ratio to the limit, to the
    http.client floor, to webdataset+curl and to AISShardReader."""
    for s in stream["sets"]:
        rows = [r for r in stream["rows"] if r["set"] == s["label"]]
        ok = _ok_rows(rows)
        limits = {name: ok[name]["mb_s"] for name in LIMIT_ROWS if name in ok}
        s["limit_mb_s"] = max(limits.values()) if limits else None
        s["limit_row"] = max(limits, key=limits.get) if limits else None
        for r in rows:
            if r.get("status") != "ok":
                continue
            r["x_limit"] = r["mb_s"] / s["limit_mb_s"] if s["limit_mb_s"] else None
            r["x_floor"] = r["mb_s"] / ok[FLOOR_ROW]["mb_s"] if FLOOR_ROW in ok else None
            r["x_wds_curl"] = r["mb_s"] / ok["wds_curl"]["mb_s"] if "wds_curl" in ok else None
            r["x_shard_reader"] = r["mb_s"] / ok["ais_shard_reader"]["mb_s"] if "ais_shard_reader" in ok else None


def rss_table(stream: Dict[str, Any], small_label: str, large_label: str) -> List[Dict[str, Any]]:
    """Peak RSS growth per contender at two shard sizes (1 MiB samples)."""
    small = _ok_rows(r for r in stream["rows"] if r["set"] == small_label)
    large = _ok_rows(r for r in stream["rows"] if r["set"] == large_label)
    out = []
    for name in small:
        if name in large:
            out.append({"contender": name, "label": large[name]["label"],
                        "growth_small_mib": small[name]["rss_growth_mib"],
                        "growth_large_mib": large[name]["rss_growth_mib"],
                        "delta_mib": large[name]["rss_growth_mib"] - small[name]["rss_growth_mib"]})
    return out


# ------------------------------------------------------------------------------------------------
# goals, report, picture


def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    stream = results.get("stream") or {}
    sets = stream.get("sets", [])
    main_sets = [s for s in sets if s.get("role") == "main"]
    rows = stream.get("rows", [])

    def ratio(name: str, s: Dict[str, Any], key: str) -> Optional[float]:
        r = next((r for r in rows if r["set"] == s["label"] and r["contender"] == name), None)
        return r.get(key) if r and r.get("status") == "ok" else None

    one_mib = next((s for s in main_sets if s["sample_size"] == MIB), None)
    for name in AIS_WDS_ROWS:
        label = _label(rows, name)
        if one_mib:
            ratio_x = ratio(name, one_mib, "x_limit")
            mine, floor = ratio(name, one_mib, "mb_s"), ratio(FLOOR_ROW, one_mib, "mb_s")
            out.append(goal(f"{label}: >= 0.9x the raw-GET limit, 1 MiB samples", ratio_x, 0.9,
                            f"{num(mine)} MB/s; limit = fastest of urllib3 / open_object / curl = "
                            f"{one_mib.get('limit_row')} {num(one_mib.get('limit_mb_s'))} MB/s"))
            out.append(goal(f"{label}: >= 0.9x http.client zero-copy read (stricter), 1 MiB samples",
                            ratio(name, one_mib, "x_floor"), 0.9,
                            f"{num(mine)} MB/s vs {num(floor)} MB/s"))
        for key, target, peer in (("x_wds_curl", 1.0, "webdataset + curl"), ("x_shard_reader", 2.0, "AISShardReader")):
            per = [(s, ratio(name, s, key)) for s in main_sets]
            known = [v for _, v in per if v is not None]
            out.append(goal(f"{label}: >= {target:g}x {peer}, every sample size",
                            min(known) if len(known) == len(per) and known else None, target,
                            ", ".join(f"{_short(s)} {x(v)}" for s, v in per)))
    for r in results.get("rss", {}).get("rows", []):
        if r["contender"] in AIS_WDS_ROWS:
            sizes = results["rss"]
            tolerance = max(8.0, 0.1 * (sizes["large_shard_mib"] - sizes["small_shard_mib"]))
            out.append(goal(f"{r['label']}: peak RSS independent of shard size", r["delta_mib"], tolerance,
                            f"growth {r['growth_small_mib']:.1f} MiB at {sizes['small_shard_mib']:.0f} MiB shards, "
                            f"{r['growth_large_mib']:.1f} MiB at {sizes['large_shard_mib']:.0f} MiB shards",
                            unit="MiB more", higher_is_better=False))
    return out


def _label(rows, name: str) -> str:
    return next((r["label"] for r in rows if r["contender"] == name), name)


def _short(s: Dict[str, Any]) -> str:
    return s["label"].split(" samples")[0]


def markdown(results: Dict[str, Any]) -> List[str]:
    """Per shard set, one table of every contender; then the RSS check. Nothing when the section did not run."""
    out: List[str] = []
    stream = results.get("stream")
    if stream:
        out += ["", f"## {NUMBER}. {TITLE}", "",
                "MB/s = shard bytes / median wall time of reading every shard of the set once (10^6 bytes); "
                "raw rows discard 1 MiB chunks, their samples/s is the set's samples over their time. "
                "x limit = vs the raw-GET limit, the fastest of the urllib3, open_object and curl rows "
                "(the http.client row, which copies nothing, is faster still); TTFS = time to first sample (first chunk for raw rows) from "
                "the start of the run, median (the cell's first, cold, run); client CPU = CPU seconds of the reading process and its children "
                "per GB (the cluster's CPU not included); RSS = peak of the cell's own process + children (growth: over its RSS "
                "after setup)."]
        for s in stream["sets"]:
            out += ["", f"### {s['label']} ({s['n_shards']} x {s['shard_bytes'] / MIB:.1f} MiB, "
                        f"{s['total_samples']:,} samples){' - RSS check' if s.get('role') == 'rss' else ''}", "",
                    "| path | MB/s (min-max) | samples/s | x limit | x wds+curl | x AISShardReader | TTFS ms (1st run) "
                    "| client CPU s/GB | peak RSS MiB (growth) |",
                    "|---|---|---|---|---|---|---|---|---|"]
            rounds = results["config"]["rounds"]
            for r in (r for r in stream["rows"] if r["set"] == s["label"]):
                if r.get("status") != "ok":
                    why = r.get("reason") or "; ".join(r.get("problems", [])) or (r.get("errors") or ["?"])[-1]
                    why = why.strip().splitlines()[-1][:160].replace("|", "/")
                    out.append(f"| {r['label']} | {r['status']}: {why} | | | | | | | |")
                    continue
                partial = f" ({r['runs_ok']}/{rounds} runs ok)" if r.get("runs_ok", rounds) < rounds else ""
                out.append(
                    f"| {r['label']}{partial} | {num(r['mb_s'])} ({num(r['mb_s_min'])}-{num(r['mb_s_max'])}) "
                    f"| {num(r['samples_s'])}{'*' if r['samples_s_equivalent'] else ''} | {x(r.get('x_limit'))} "
                    f"| {x(r.get('x_wds_curl'))} | {x(r.get('x_shard_reader'))} | {num(r['ttfs_median_ms'], 1)} ({num(r.get('ttfs_first_ms'), 1)}) "
                    f"| {cpu(r.get('cpu_s_per_gb'))} | {r['peak_rss_mib']:.0f} ({r['rss_growth_mib']:+.1f}) |")
    rss = results.get("rss")
    if rss and rss.get("rows"):
        out += ["", f"### Peak RSS growth vs shard size (1 MiB samples, {rss['small_shard_mib']:.0f} MiB vs "
                    f"{rss['large_shard_mib']:.0f} MiB shards)", "",
                "| path | growth, small shards | growth, large shards | difference |", "|---|---|---|---|"]
        for r in rss["rows"]:
            out.append(f"| {r['label']} | {r['growth_small_mib']:.1f} MiB | {r['growth_large_mib']:.1f} MiB "
                       f"| {r['delta_mib']:+.1f} MiB |")
    return out


def plot(plt: Any, results: Dict[str, Any]) -> Any:
    """MB/s per contender per sample size (log scale), the raw-GET limit marked."""
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

