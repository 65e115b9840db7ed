"""Pictures of a benchmark run (matplotlib, a dev dependency): one PNG per section that has a ``plot``.

A section's ``plot(plt, results)`` returns a matplotlib figure, or None when it has nothing to draw (it
did not run, or failed); the figure is saved as ``bench-<section name with dashes>.png``: today
``bench-stream.png`` (section 1), ``bench-pack-engines.png`` (section 8) and ``bench-loader.png``
(section 9).

:func:`draw` never raises: a picture that fails is reported and skipped, and a missing matplotlib is
reported, not fatal. Also runnable on a saved run:
``.venv/bin/python -m ais_wds_bench.plots bench-results/latest.json [DIR]``.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List

from . import REPO, sections


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
    for module in sections.modules():
        if not hasattr(module, "plot"):
            continue
        name = f"bench-{module.__name__.rsplit('.', 1)[1].replace('_', '-')}.png"
        try:
            fig = module.plot(plt, results)
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


def ok(section: Any) -> Dict[str, Any]:
    """A section's ``result`` when it ran fine, else ``{}``."""
    return section.get("result") or {} if isinstance(section, dict) and section.get("status") == "ok" else {}


def _subtitle(results: Dict[str, Any]) -> str:
    meta = results.get("meta", {})
    machine = meta.get("machine", {})
    load = meta.get("started", {}).get("load_1m")
    return (f"{meta.get('command', 'scripts/bench')} | {meta.get('started', {}).get('time', '')} | "
            f"{machine.get('nproc', '?')} cores, load {load if load is None else f'{load:.1f}'} at start | "
            f"AIS {meta.get('targets', '?')} targets on the same machine")


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "bench-results/latest.json"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "docs"
    for p in draw(json.loads(src.read_text()), out):
        print(p)
