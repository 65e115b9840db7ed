"""The benchmark's command line: ais_wds against the raw-GET limit and its peers, side by side, in one run.

    AIS_ENDPOINT=http://127.0.0.1:PORT scripts/bench [--quick] [--scale S] [--sections LIST] [--out FILE]
    .venv/bin/python -m ais_wds_bench ...   # the same
    make bench            # full run (starts the local cluster if needed)
    make bench-quick      # about 3 minutes on 2 cores

Sections (docs/bench.md says what every row means; one module each in tools/ais_wds_bench/sections/):
  1. stream: raw GET (http.client, urllib3, ais_wds.open_object, curl) vs ais_wds.WebDataset,
     wds.WebDataset + ais_wds gopen, wds.WebDataset on http URLs (curl pipe), wds.WebDataset with
     `pipe:ais get`, aistore.pytorch.AISShardReader; 1 KiB, 100 KiB and 1 MiB samples; MB/s, samples/s,
     time to first sample, peak RSS (each cell in a fresh process), plus RSS at two shard sizes;
  2. small_objects, 3. random_access inside shards, 4. pack, 5. startup: import and CLI start-up time and
     peak RSS against `import aistore.sdk`, 6. resume, 7. scale: 10M-object listings and plans,
     8. pack_engines, 9. loader: end to end through DataLoader(num_workers=1/2/4) vs local files.
Then the goals, met or not. The data is built in the cluster on the first run and reused after.
Writes bench-results/bench-<time>.{json,md} (and latest.{json,md}), prints the markdown to stdout,
progress to stderr, and draws docs/bench-{stream,pack-engines,loader}.png (bench-results/ with --quick;
`python -m ais_wds_bench.plots FILE.json DIR` redraws them from a saved JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import REPO, machine, report, sections, stream_cells
from .sections import stream

KIB, MIB = 1 << 10, 1 << 20


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: List[str]) -> argparse.Namespace:
    all_sections = sections.names()
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="small and fast: scale 0.25 (16 MiB shards), 2 shards per set, 2 rounds, sections 2-4 "
                        "at scale 0.1")
    p.add_argument("--scale", type=float, help="shard size = 64 MiB x scale; also passed to sections 2-4 "
                                               "(default 1, or 0.25 with --quick)")
    p.add_argument("--section-scale", type=float, help="the scale passed to sections 2-4 (default: --scale, "
                                                       "or 0.1 with --quick)")
    p.add_argument("--shards", type=int, help="shards per set (default 4, or 2 with --quick)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3, or 2 with --quick)")
    p.add_argument("--sizes", default="1k,100k,1m", help="section 1's sample sizes (k = KiB, m = MiB); the RSS "
                                                        "check runs when 1m is among them")
    p.add_argument("--sections", default=",".join(all_sections),
                   help=f"comma-separated subset of {','.join(all_sections)}")
    p.add_argument("--contenders", help="comma-separated subset of section 1's contenders: "
                                        + ",".join(stream_cells.CONTENDERS))
    p.add_argument("--endpoint", help="AIS gateway (default $AIS_ENDPOINT)")
    p.add_argument("--bucket", default="bench-ais-wds", help="bucket for section 1's shards (kept for re-runs)")
    p.add_argument("--ais-cli", help="the ais CLI binary (default $AIS_CLI, .cache/bench/bin/ais, or on PATH)")
    p.add_argument("--build-cli", choices=("auto", "yes", "no"), default="auto",
                   help="build the ais CLI when missing: auto = only in full (non --quick) runs")
    p.add_argument("--profile", help="comma-separated contenders to profile (pyinstrument, one extra untimed run "
                                     "per shard set); reports go to bench-results/profile-*.txt")
    p.add_argument("--prepare-only", action="store_true", help="build section 1's shards in the cluster and exit")
    p.add_argument("--out", help="also write the JSON here (the markdown goes next to it as .md)")
    p.add_argument("--plots", help="folder for the pictures (default: docs/ for a full run, bench-results/ with "
                                   "--quick); 'none' draws nothing")
    args = p.parse_args(argv)
    args.scale = args.scale if args.scale is not None else (0.25 if args.quick else 1.0)
    if args.section_scale is None:
        args.section_scale = min(args.scale, 0.1) if args.quick else args.scale
    args.shards = args.shards or (2 if args.quick else 4)
    args.rounds = args.rounds or (2 if args.quick else 3)
    try:
        args.sizes = sorted({_size(x) for x in args.sizes.split(",") if x.strip()})
    except ValueError as e:
        p.error(str(e))
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(all_sections)
    if unknown:
        p.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    args.profile = [c.strip() for c in args.profile.split(",")] if args.profile else []
    args.contenders = [c.strip() for c in args.contenders.split(",")] if args.contenders else list(stream_cells.CONTENDERS)
    unknown = (set(args.contenders) | set(args.profile)) - set(stream_cells.CONTENDERS)
    if unknown:
        p.error(f"unknown contender(s): {', '.join(sorted(unknown))}")
    return args


def _size(text: str) -> int:
    text = text.strip().lower().rstrip("ib")
    units = {"k": KIB, "m": MIB}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    if text.isdigit():
        return int(text)
    raise ValueError(f"bad sample size {text!r} (e.g. 1k, 100k, 1m)")


def _targets(client) -> Any:
    try:
        return len(client.sdk.cluster().get_info().tmap)
    except Exception:  # noqa: BLE001
        return "?"


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark; ``argv`` as on the command line (default ``sys.argv[1:]``). Returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.out:
        args.out = os.path.abspath(args.out)
    # run from the checkout: relative --plots folders and every section's subprocesses start there
    os.chdir(REPO)
    t0 = time.perf_counter()
    started = machine.load_now()
    import ais_wds

    from . import preload  # noqa: F401  (ais_wds, and aistore.pytorch importable for sections 2-4)

    client = ais_wds.Client(args.endpoint)
    if not client.sdk.cluster().is_ready():
        log(f"AIS at {client.endpoint} is not ready")
        return 2
    log(f"AIS at {client.endpoint}; load average {started['load_1m']:.2f}; sections: {', '.join(args.sections)}")
    results: Dict[str, Any] = {
        "schema": "ais_wds-bench/1",
        "meta": {"command": "scripts/bench " + " ".join(shlex.quote(a) for a in argv), "started": started,
                 "endpoint": client.endpoint, "targets": _targets(client), "machine": machine.machine_info(),
                 "load": []},
        "config": {"scale": args.scale, "section_scale": args.section_scale, "quick": args.quick, "shards": args.shards, "rounds": args.rounds,
                   "bucket": args.bucket, "sample_sizes": args.sizes,
                   "contenders": args.contenders, "sections": args.sections},
    }
    if args.prepare_only:
        for s in stream.run_stream(client, args, log)["stream"]["sets"]:
            log(f"ready: ais://{s['bucket']}/{s['prefix']} ({s['label']} x {s['n_shards']})")
        return 0
    if "stream" in args.sections:
        results.update(stream.run_stream(client, args, log))
        results["meta"]["load"].append({"after": "stream", **machine.load_now()})
    for name in sections.names():
        if name != "stream" and name in args.sections:
            log(f"section {name}")
            results[name] = sections.run_section(name, client, args.section_scale, log=log)
            results["meta"]["load"].append({"after": name, **machine.load_now()})
            if results[name]["status"] != "ok":
                log(f"  {results[name]['status']}: {results[name].get('reason')}")
    results["meta"]["finished"] = machine.load_now()
    results["meta"]["seconds"] = time.perf_counter() - t0
    results["goals"] = report.goals(results)
    md = report.markdown(results)
    _write(results, md, args.out)
    if args.plots != "none":
        from . import plots

        folder = Path(args.plots) if args.plots else REPO / ("bench-results" if args.quick else "docs")
        for path in plots.draw(results, folder, log=log):
            log(f"drew {path}")
    print(md)
    return 0


def _write(results: Dict[str, Any], md: str, out: Optional[str] = None) -> None:
    folder = REPO / "bench-results"
    folder.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = json.dumps(results, indent=1, default=str)
    paths = [folder / f"bench-{stamp}.json", folder / "latest.json"] + ([Path(out)] if out else [])
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.with_suffix(".md").write_text(md)
    log(f"wrote {', '.join(str(p) for p in paths)} (+ .md)")


if __name__ == "__main__":
    sys.exit(main())
