"""Goals and the markdown report of the benchmark (pure functions of the results dict).

The report is a header, the goal table (every section's ``goals(results)``, in section order) and one part
per section: its own ``markdown(results)`` if it has one, else :func:`section_markdown`. The helpers
``goal``, ``num``, ``x``, ``detail`` and ``flatten`` are what sections build their goals and tables with.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from . import sections

MIB = 1 << 20
NOT_RUN = {"status": "not run", "reason": "not run (--sections)"}
"""What a section's goals see for a section that did not run: ``results.get(name, NOT_RUN)``."""


# ------------------------------------------------------------------------------------------------
# goals


def goal(text: str, measured: Optional[float], target: float, detail: str = "", unit: str = "x",
         higher_is_better: bool = True) -> Dict[str, Any]:
    """One row of the goal table; ``met`` is None when ``measured`` is None (not run, not measurable)."""
    if measured is None:
        met: Optional[bool] = None
    else:
        met = measured >= target if higher_is_better else measured <= target
    return {"goal": text, "measured": measured, "target": target, "unit": unit, "detail": detail, "met": met,
            "higher_is_better": higher_is_better}


def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The goal table: each section's ``goals(results)``, in section order."""
    out: List[Dict[str, Any]] = []
    for module in sections.modules():
        if hasattr(module, "goals"):
            out.extend(module.goals(results))
    return out


def flatten(d: Any, prefix: str = ""):
    """``(dotted.key, value)`` for every leaf of nested dicts and lists."""
    if isinstance(d, dict):
        for k, v in d.items():
            yield from flatten(v, f"{prefix}{k}." if isinstance(v, (dict, list)) else f"{prefix}{k}")
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from flatten(v, f"{prefix}{i}.")
    else:
        yield prefix.rstrip("."), d


def detail(res: Dict[str, Any], keys) -> str:
    """``"key value, key value"`` for those of ``keys`` in ``res``."""
    return ", ".join(f"{k} {num(res[k])}" for k in keys if k in res)


# ------------------------------------------------------------------------------------------------
# markdown


def num(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100 or digits == 0 and abs(v) >= 10:
            return f"{v:,.0f}"
        return f"{v:.{max(digits, 1)}f}" if abs(v) >= 1 else f"{v:.2g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def cpu(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}"


def x(v: Optional[float]) -> str:
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
    for name in sections.names():
        module, _ = sections.load(name)
        if module is not None and hasattr(module, "markdown"):
            out += module.markdown(results)
        else:
            out += section_markdown(*sections.header(name), results.get(name) or {"status": "not run"})
    return "\n".join(out) + "\n"


def section_markdown(number: int, title: str, section: Dict[str, Any]) -> List[str]:
    """The generic part of a section: its heading, then its result as tables (a dict of dicts becomes one
    table, every other value a row of the measure/value table)."""
    return ["", f"## {number}. {title}", ""] + _section(section)


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
            scalars += [(f"{key}.{k}", v) for k, v in flatten(value)]
    if scalars:
        lines += ["", "| measure | value |", "|---|---|"] + [f"| {k} | {_cell(v)} |" for k, v in scalars]
    return lines


def _cell(v: Any) -> str:
    return num(v, 2) if isinstance(v, float) else ("" if v is None else str(v))


def _mem(free_h: str) -> str:
    for line in free_h.splitlines():
        if line.startswith("Mem:"):
            parts = line.split()
            return f"{parts[1]} RAM ({parts[-1]} available)"
    return "? RAM"


def _load(load: Dict[str, Any]) -> str:
    return f"{load['load_1m']:.2f}/{load['load_5m']:.2f}/{load['load_15m']:.2f}"
