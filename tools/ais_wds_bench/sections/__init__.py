"""The benchmark's sections: one module each in this package, found by name (adding one is a one-file change).

A section is a module ``sections/<name>.py`` (``<name>`` is what ``scripts/bench --sections`` takes) with:

* ``NUMBER: int``: its heading number; the sections run, and appear in the report, in this order;
* ``TITLE: str``: its heading in the report (``## NUMBER. TITLE``);
* ``run(client, scale) -> dict``: the measurement (``client`` an ``ais_wds.Client``, ``scale`` the
  ``--section-scale``); the dict of numbers it returns is the section's ``result`` in the JSON, printed as
  tables by :func:`ais_wds_bench.report.section_markdown` (a dict of dicts becomes one table);

and optionally:

* ``goals(results) -> list``: its rows of the report's goal table (:func:`ais_wds_bench.report.goal`);
  called for every section, run or not (``results.get(name)`` is then None, or ``{"status": "not run"}``):
  return the goal with ``measured=None`` so that the table always lists it;
* ``markdown(results) -> list``: its own report lines, heading included, instead of the generic table;
* ``plot(plt, results)``: a matplotlib figure (or None), saved as ``bench-<name with dashes>.png``.

Modules whose name starts with ``_`` are helpers, not sections. :func:`run_section` never raises: a
section that fails to import or to run gives ``status: "error"`` with the traceback and the others go on.
The stream section (``stream``) is run by :mod:`ais_wds_bench.cli` itself, with the CLI's own flags.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import REPO

_PACKAGE_DIR = __path__[0]


def names() -> List[str]:
    """Every section, in report order (``NUMBER``). Read from the files, without importing them: a section
    that fails to import keeps its place (and its heading, with the error, in the report)."""
    found = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return sorted(found, key=lambda n: (header(n)[0], n))


def header(name: str) -> Tuple[int, str]:
    """``(NUMBER, TITLE)`` of a section, read from its file's top-level constants (``(1000, name)`` when
    they are missing)."""
    number, title = 1000, name
    try:
        tree = ast.parse(Path(_PACKAGE_DIR, f"{name}.py").read_text())
    except (OSError, SyntaxError):
        return number, title
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            if node.targets[0].id == "NUMBER" and isinstance(value, int):
                number = value
            elif node.targets[0].id == "TITLE" and isinstance(value, str):
                title = value
    return number, title


def load(name: str) -> Tuple[Optional[ModuleType], Optional[str]]:
    """``(module, None)``, or ``(None, traceback)`` when the section's module fails to import."""
    try:
        return importlib.import_module(f"{__name__}.{name}"), None
    except Exception:  # noqa: BLE001 - a broken section must not stop the others
        return None, traceback.format_exc(limit=6)


def modules() -> List[ModuleType]:
    """The sections that import, in report order (for their optional ``goals``, ``markdown`` and ``plot``)."""
    return [m for m in (load(n)[0] for n in names()) if m is not None]


def source(name: str, func: str = "run") -> str:
    """Where a section's code is, as the report shows it: ``tools/ais_wds_bench/sections/NAME.py:run()``."""
    path = Path(_PACKAGE_DIR, f"{name}.py").resolve()
    try:
        shown = str(path.relative_to(REPO))
    except ValueError:
        shown = str(path)
    return f"{shown}:{func}()"


def run_section(name: str, client: Any, scale: float, log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run one section at ``scale``; never raises. Returns ``{"status", "source", "seconds", "result"}``
    (``status`` "ok"), or ``{"status": "error" | "not available", "reason", ...}``."""
    where = source(name)
    module, failure = load(name)
    if module is None:
        return {"status": "error", "reason": "import failed", "traceback": failure, "source": where}
    fn = getattr(module, "run", None)
    if fn is None:
        return {"status": "not available", "reason": f"{where.rsplit(':', 1)[0]} has no run() yet", "source": where}
    log(f"  {where} at scale {scale:g}")
    t = time.perf_counter()
    try:
        result = fn(client, scale)
    except Exception as e:  # noqa: BLE001
        return {"status": "error", "reason": f"{type(e).__name__}: {e}"[:500],
                "traceback": traceback.format_exc(limit=8), "source": where,
                "seconds": round(time.perf_counter() - t, 1)}
    return {"status": "ok", "source": where, "seconds": round(time.perf_counter() - t, 1), "result": result}


def run_alone(run: Callable[[Any, float], Dict[str, Any]], doc: Optional[str], argv: Optional[List[str]] = None) -> int:
    """The ``__main__`` of a section without flags of its own: ``python -m ais_wds_bench.sections.NAME
    [--scale S] [--endpoint URL]`` runs ``run`` once and prints its result as JSON."""
    import argparse
    import json

    from ais_wds import Client

    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--endpoint", help="AIS gateway (default $AIS_ENDPOINT)")
    args = parser.parse_args(argv)
    print(json.dumps(run(Client(args.endpoint), args.scale), indent=2))
    return 0
