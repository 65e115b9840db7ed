"""Goals and the markdown report of the benchmark (pure functions of the results dict)."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

AIS_WDS_ROWS = ("ais_wds_webdataset", "wds_ais_gopen")
# The raw-GET limit of the issue: the fastest of these. raw_http_client (no copy at all) is stricter
# still; it gets a goal row of its own so that nobody mistakes one for the other.
LIMIT_ROWS = ("raw_urllib3", "raw_open_object", "raw_curl")
FLOOR_ROW = "raw_http_client"
MIB = 1 << 20


# ------------------------------------------------------------------------------------------------
# derived numbers


def _ok_rows(rows: Iterable[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
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
# goals


def _goal(goal: str, measured: Optional[float], target: float, detail: str = "", unit: str = "x",
          higher_is_better: bool = True) -> Dict[str, Any]:
    if measured is None:
        met: Optional[bool] = None
    else:
        met = measured >= target if higher_is_better else measured <= target
    return {"goal": goal, "measured": measured, "target": target, "unit": unit, "detail": detail, "met": met,
            "higher_is_better": higher_is_better}


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
            x = ratio(name, one_mib, "x_limit")
            mine, floor = ratio(name, one_mib, "mb_s"), ratio(FLOOR_ROW, one_mib, "mb_s")
            out.append(_goal(f"{label}: >= 0.9x the raw-GET limit, 1 MiB samples", x, 0.9,
                             f"{_num(mine)} MB/s; limit = fastest of urllib3 / open_object / curl = "
                             f"{one_mib.get('limit_row')} {_num(one_mib.get('limit_mb_s'))} MB/s"))
            out.append(_goal(f"{label}: >= 0.9x http.client zero-copy read (stricter), 1 MiB samples",
                             ratio(name, one_mib, "x_floor"), 0.9,
                             f"{_num(mine)} MB/s vs {_num(floor)} MB/s"))
        for key, target, peer in (("x_wds_curl", 1.0, "webdataset + curl"), ("x_shard_reader", 2.0, "AISShardReader")):
            per = [(s, ratio(name, s, key)) for s in main_sets]
            known = [x for _, x in per if x is not None]
            out.append(_goal(f"{label}: >= {target:g}x {peer}, every sample size",
                             min(known) if len(known) == len(per) and known else None, target,
                             ", ".join(f"{_short(s)} {_x(x)}" for s, x in per)))
    for r in results.get("rss", {}).get("rows", []):
        if r["contender"] in AIS_WDS_ROWS:
            sizes = results["rss"]
            tolerance = max(8.0, 0.1 * (sizes["large_shard_mib"] - sizes["small_shard_mib"]))
            out.append(_goal(f"{r['label']}: peak RSS independent of shard size", r["delta_mib"], tolerance,
                             f"growth {r['growth_small_mib']:.1f} MiB at {sizes['small_shard_mib']:.0f} MiB shards, "
                             f"{r['growth_large_mib']:.1f} MiB at {sizes['large_shard_mib']:.0f} MiB shards",
                             unit="MiB more", higher_is_better=False))
    not_run = {"status": "not run", "reason": "not run (--sections)"}
    out.extend(_small_object_goals(results.get("small_objects", not_run)))
    ra = results.get("random_access", not_run)
    res = ra.get("result") or {}
    out.append(_goal("random access: >= 10x archpath GET per member",
                     res.get("speedup_vs_archpath_single_thread"), 10.0,
                     _detail(res, ("shard_dataset_samples_per_s", "archpath_per_member_samples_per_s"))
                     or ra.get("reason", "")))
    pk = results.get("pack", not_run)
    res = pk.get("result") or {}
    out.append(_goal("packing: >= 0.5x a raw GET+PUT copy", res.get("pack_vs_raw_copy"), 0.5,
                     _detail(res, ("pack_MB_per_s", "raw_copy_MB_per_s")) or pk.get("reason", "")))
    st = (results.get("startup", not_run).get("result") or {}).get("startup") or {}
    for name in ("import ais_wds", "import ais_wds.cli", "ais-wds --help"):
        row = st.get(name) or {}
        out.append(_goal(f"start-up: `{name}` <= 1.5x `import aistore.sdk`", row.get("x_sdk_import_time"), 1.5,
                         f"{row['median_wall_s'] * 1000:.0f} ms, peak RSS {row['median_peak_rss_mib']:.0f} MiB"
                         if row else "not run", higher_is_better=False))
        out.append(_goal(f"start-up: `{name}` peak RSS < 100 MiB", row.get("median_peak_rss_mib"), 100.0,
                         "", unit="MiB", higher_is_better=False))
    ld = (results.get("loader", not_run).get("result") or {})
    ratio2 = (ld.get("ratios") or {}).get("ais_wds_vs_tar_local_2w")
    out.append(_goal("loader: ais_wds.WebDataset >= 0.8x the same tar path over local files, 2 workers", ratio2, 0.8,
                     ", ".join(f"{k} {_x(v)}" for k, v in (ld.get("ratios") or {}).items())
                     or results.get("loader", not_run).get("reason", "")))
    return out


def _small_object_goals(section: Dict[str, Any]) -> List[Dict[str, Any]]:
    """small objects: >= 5x aistore.pytorch at equal workers. The script's result is searched for
    ``speedup*`` numbers (one goal per key) so that its exact layout may evolve."""
    res = section.get("result") or {}
    flat = dict(_flatten(res))
    speedups = {k: v for k, v in flat.items() if "speedup" in k.lower() and isinstance(v, (int, float))}
    if not speedups:
        return [_goal("small objects: >= 5x aistore.pytorch at equal workers", None, 5.0,
                      section.get("reason") or "no speedup figure in the result")]
    return [_goal(f"small objects: >= 5x aistore.pytorch ({k})", float(v), 5.0, _small_detail(res, k))
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
    return (f"num_workers={parts[2][2:]}: ais_wds_{parts[1]} {_num(mine['samples_per_s'])}/s vs "
            f"aistore_pytorch_{parts[1]} {_num(peer['samples_per_s'])}/s")


def _flatten(d: Any, prefix: str = ""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _flatten(v, f"{prefix}{k}." if isinstance(v, (dict, list)) else f"{prefix}{k}")
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _flatten(v, f"{prefix}{i}.")
    else:
        yield prefix.rstrip("."), d


def _detail(res: Dict[str, Any], keys) -> str:
    return ", ".join(f"{k} {_num(res[k])}" for k in keys if k in res)


def _label(rows, name: str) -> str:
    return next((r["label"] for r in rows if r["contender"] == name), name)


def _short(s: Dict[str, Any]) -> str:
    return s["label"].split(" samples")[0]


# ------------------------------------------------------------------------------------------------
# markdown


def _num(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100 or digits == 0 and abs(v) >= 10:
            return f"{v:,.0f}"
        return f"{v:.{max(digits, 1)}f}" if abs(v) >= 1 else f"{v:.2g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _cpu(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}"


def _x(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _met(m: Optional[bool]) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[m]


def markdown(results: Dict[str, Any]) -> str:
    meta, cfg = results["meta"], results["config"]
    m = meta["machine"]
    out = [f"# ais_wds benchmark, {meta['started']['time']}", ""]
    out.append(f"`{meta['command']}`  ")
    out.append(f"Machine: {m['nproc']} cores ({m['cpu_model']}), {_mem(m['free_h'])}; load average "
               f"{_load(meta['started'])} at start, {_load(meta['finished'])} at the end. "
               f"ais_wds {m['ais_wds_commit']}{' (+ uncommitted changes)' if m['ais_wds_dirty'] else ''}, "
               f"aistore {m['versions']['aistore']}, webdataset {m['versions']['webdataset']}, "
               f"Python {m['python']}. AIS at {meta['endpoint']} ({meta.get('targets', '?')} targets). "
               f"Scale {cfg['scale']:g} (sections 2-4: {cfg.get('section_scale', cfg['scale']):g}), {cfg['shards']} shards per set, {cfg['rounds']} interleaved rounds, "
               f"medians; total {meta['seconds']:.0f} s.")
    out += ["", "## Goals", "", "| goal | measured | target | met? | detail |", "|---|---|---|---|---|"]
    for g in results["goals"]:
        unit = g["unit"]
        meas = "-" if g["measured"] is None else (f"{g['measured']:.2f}x" if unit == "x" else f"{g['measured']:.1f} {unit}")
        tgt = f"{'>=' if g.get('higher_is_better', unit == 'x') else '<='} {g['target']:g}{'x' if unit == 'x' else ' MiB'}"
        out.append(f"| {g['goal']} | {meas} | {tgt} | {_met(g['met'])} | {g['detail']} |")
    stream = results.get("stream")
    if stream:
        out += ["", "## 1. Shard streaming", "",
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
                    f"| {r['label']}{partial} | {_num(r['mb_s'])} ({_num(r['mb_s_min'])}-{_num(r['mb_s_max'])}) "
                    f"| {_num(r['samples_s'])}{'*' if r['samples_s_equivalent'] else ''} | {_x(r.get('x_limit'))} "
                    f"| {_x(r.get('x_wds_curl'))} | {_x(r.get('x_shard_reader'))} | {_num(r['ttfs_median_ms'], 1)} ({_num(r.get('ttfs_first_ms'), 1)}) "
                    f"| {_cpu(r.get('cpu_s_per_gb'))} | {r['peak_rss_mib']:.0f} ({r['rss_growth_mib']:+.1f}) |")
    rss = results.get("rss")
    if rss and rss.get("rows"):
        out += ["", f"### Peak RSS growth vs shard size (1 MiB samples, {rss['small_shard_mib']:.0f} MiB vs "
                    f"{rss['large_shard_mib']:.0f} MiB shards)", "",
                "| path | growth, small shards | growth, large shards | difference |", "|---|---|---|---|"]
        for r in rss["rows"]:
            out.append(f"| {r['label']} | {r['growth_small_mib']:.1f} MiB | {r['growth_large_mib']:.1f} MiB "
                       f"| {r['delta_mib']:+.1f} MiB |")
    for key, title in (("small_objects", "2. Small objects"), ("random_access", "3. Random access inside shards"),
                       ("pack", "4. Packing"), ("startup", "5. Start-up: import and CLI, vs import aistore.sdk"),
                       ("resume", "6. Resume: cost of state tracking, time to resume mid-shard"),
                       ("scale", "7. Scale: 10M-object listings, partition and plan memory"),
                       ("pack_engines", "8. Pack engines: client vs cluster (AIS get-batch / archive jobs)"),
                       ("loader", "9. Loader end to end: DataLoader(num_workers=N) into the main process")):
        out += ["", f"## {title}", ""] + _section(results.get(key) or {"status": "not run"})
    return "\n".join(out) + "\n"


def _section(section: Dict[str, Any]) -> List[str]:
    status = section.get("status")
    if status != "ok":
        return [f"{status}: {section.get('reason', '')} ({section.get('source', '')})"]
    res = section["result"]
    lines = [f"From `{section['source']}` ({section['seconds']:.0f} s)."]
    scalars = [(k, v) for k, v in res.items() if not isinstance(v, dict)]
    for key, value in res.items():
        if not isinstance(value, dict):
            continue
        if value and all(isinstance(v, dict) for v in value.values()):  # e.g. {"nw0": {impl: {metric: x}}}
            columns = list(dict.fromkeys(c for row in value.values() for c in row))
            lines += ["", f"**{key}**", "", "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
            for name, row in value.items():
                lines.append(f"| {name} | " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
        else:
            scalars += [(f"{key}.{k}", v) for k, v in _flatten(value)]
    if scalars:
        lines += ["", "| measure | value |", "|---|---|"] + [f"| {k} | {_cell(v)} |" for k, v in scalars]
    return lines


def _cell(v: Any) -> str:
    return _num(v, 2) if isinstance(v, float) else ("" if v is None else str(v))


def _mem(free_h: str) -> str:
    for line in free_h.splitlines():
        if line.startswith("Mem:"):
            parts = line.split()
            return f"{parts[1]} RAM ({parts[-1]} available)"
    return "? RAM"


def _load(load: Dict[str, Any]) -> str:
    return f"{load['load_1m']:.2f}/{load['load_5m']:.2f}/{load['load_15m']:.2f}"
