"""Smoke test of scripts/bench (the package tools/ais_wds_bench): a tiny --quick run against the live cluster
produces every section.

No timing is asserted: only that the run completes, that every section and row is there, and that
the numbers are positive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "scripts" / "bench"

STREAM_CONTENDERS = {"raw_http_client", "raw_urllib3", "raw_open_object", "raw_curl", "ais_wds_webdataset",
                     "wds_ais_gopen", "wds_curl", "wds_ais_cli", "ais_shard_reader"}
OPTIONAL = {"wds_ais_cli"}  # needs the ais CLI, which a --quick run never builds
MEASURED = ("small_objects", "random_access", "pack")  # sections 2-4 (tools/ais_wds_bench/sections/<name>.py)


def _numbers(d, prefix=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _numbers(v, f"{prefix}{k}.")
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _numbers(v, f"{prefix}{i}.")
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield prefix.rstrip("."), d


# the sections of the suite's smoke run: the later ones (resume, scale, pack engines, loader) build data sets
# or start DataLoader workers that cost minutes even at this scale; `make bench-quick` runs them all
SMOKE_SECTIONS = "stream,small_objects,random_access,pack,startup"


def test_bench_quick_smoke(ais_endpoint, bucket, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--scale", "0.02", "--build-cli", "no", "--bucket", bucket,
         "--sections", SMOKE_SECTIONS, "--plots", "none", "--out", str(out)],
        cwd=REPO, env=dict(os.environ, AIS_ENDPOINT=ais_endpoint), capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "## Goals" in proc.stdout and "## 1. Shard streaming" in proc.stdout
    assert out.with_suffix(".md").read_text() == proc.stdout.rstrip("\n") + "\n"
    results = json.loads(out.read_text())

    for key in ("meta", "config", "stream", "rss", "small_objects", "random_access", "pack", "goals"):
        assert key in results, key
    assert results["meta"]["machine"]["nproc"] > 0 and results["meta"]["finished"]["load_1m"] >= 0

    # section 1: four shard sets, every contender on each main set, all numbers positive
    stream = results["stream"]
    assert [s["role"] for s in stream["sets"]] == ["main", "main", "main", "rss"]
    assert sorted(s["sample_size"] for s in stream["sets"] if s["role"] == "main") == [1024, 102400, 1048576]
    for s in stream["sets"]:
        rows = {r["contender"]: r for r in stream["rows"] if r["set"] == s["label"]}
        if s["role"] == "main":
            assert set(rows) == STREAM_CONTENDERS
        assert s["limit_mb_s"] > 0
        for name, r in rows.items():
            if r["status"] == "not available" and name in OPTIONAL:
                assert r["reason"]
                continue
            assert r["status"] == "ok", (s["label"], name, r.get("errors") or r.get("problems"))
            assert len(r["runs"]) == results["config"]["rounds"]
            for field in ("mb_s", "samples_s", "ttfs_median_ms", "peak_rss_mib", "seconds_median"):
                assert r[field] > 0, (s["label"], name, field, r[field])

    rss = {r["contender"] for r in results["rss"]["rows"]}
    assert {"ais_wds_webdataset", "wds_ais_gopen", "ais_shard_reader"} <= rss

    # sections 2-4
    for key in MEASURED:
        section = results[key]
        assert section["status"] == "ok", (key, section.get("reason"), section.get("traceback"))
        rates = [(k, v) for k, v in _numbers(section["result"])
                 if any(w in k.lower() for w in ("per_s", "speedup", "_vs_", "mb_s"))]
        assert rates, (key, section["result"])
        assert all(v > 0 for _, v in rates), (key, rates)

    goals = results["goals"]
    assert len(goals) >= 8
    assert all({"goal", "measured", "target", "met"} <= set(g) for g in goals)
