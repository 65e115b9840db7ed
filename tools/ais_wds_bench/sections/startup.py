"""Section 5, start-up: what importing ais_wds and starting its CLI cost, against the aistore SDK.

Each command runs in a fresh interpreter (the repo's venv), ``--runs`` times, interleaved; the report
gives the median wall time, the median peak RSS (``ru_maxrss`` of the child) and the ratio to
``import aistore.sdk`` measured in the same run. Also runnable alone:

    .venv/bin/python -m ais_wds_bench.sections.startup [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

from .. import REPO
from ..report import NOT_RUN, goal

NUMBER = 5
TITLE = "Start-up: import and CLI, vs import aistore.sdk"

PY = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
CLI = str(REPO / ".venv" / "bin" / "ais-wds")

COMMANDS = {
    "import aistore.sdk (reference)": [PY, "-c", "import aistore.sdk"],
    "import ais_wds": [PY, "-c", "import ais_wds"],
    "import ais_wds.cli": [PY, "-c", "import ais_wds.cli"],
    "ais-wds --help": [CLI, "--help"],
    "ais-wds pack --help": [CLI, "pack", "--help"],
    "import ais_wds; ais_wds.WebDataset (front end, loads torch)": [PY, "-c", "import ais_wds; ais_wds.WebDataset"],
}
REFERENCE = "import aistore.sdk (reference)"


def _once(argv: List[str]) -> Dict[str, float]:
    """Wall seconds and peak RSS (MiB) of one run of ``argv`` in a fresh process."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {os.waitstatus_to_exitcode(status)}")
    return {"wall_s": wall, "rss_mib": usage.ru_maxrss / 1024}  # ru_maxrss is in KiB on Linux


def run(client: Any = None, scale: float = 1.0, runs: int = 0) -> Dict[str, Any]:
    """The section's result, measured by a fresh interpreter running this module: a child's peak RSS
    counts the memory of the process that forked it, so the benchmark process (torch loaded) must not be
    the parent."""
    runs = runs or max(3, min(9, int(7 * scale) or 3))
    out = subprocess.run([PY, "-m", __spec__.name, "--runs", str(runs)], capture_output=True, text=True, check=True)
    result: Dict[str, Any] = json.loads(out.stdout)
    return result


def measure(runs: int) -> Dict[str, Any]:
    """Per command, median wall time and peak RSS over ``runs`` interleaved runs, and the ratio to the SDK
    import; run from a small process (see :func:`run`)."""
    for argv in COMMANDS.values():  # warm the page cache and .pyc files
        _once(argv)
    samples: Dict[str, List[Dict[str, float]]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            samples[name].append(_once(argv))
    rows: Dict[str, Dict[str, Any]] = {}
    for name, got in samples.items():
        rows[name] = {"median_wall_s": statistics.median(s["wall_s"] for s in got),
                      "median_peak_rss_mib": statistics.median(s["rss_mib"] for s in got)}
    ref = rows[REFERENCE]["median_wall_s"]
    for row in rows.values():
        row["x_sdk_import_time"] = row["median_wall_s"] / ref
    return {"runs": runs, "startup": rows}



def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    st = (results.get("startup", NOT_RUN).get("result") or {}).get("startup") or {}
    for name in ("import ais_wds", "import ais_wds.cli", "ais-wds --help"):
        row = st.get(name) or {}
        out.append(goal(f"start-up: `{name}` <= 1.5x `import aistore.sdk`", row.get("x_sdk_import_time"), 1.5,
                        f"{row['median_wall_s'] * 1000:.0f} ms, peak RSS {row['median_peak_rss_mib']:.0f} MiB"
                        if row else "not run", higher_is_better=False))
        out.append(goal(f"start-up: `{name}` peak RSS < 100 MiB", row.get("median_peak_rss_mib"), 100.0,
                        "", unit="MiB", higher_is_better=False))
    return out

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7)
    args = p.parse_args()
    print(json.dumps(measure(args.runs), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
