"""Memory of a DataLoader's workers, measured from the main process between epochs.

:func:`own` is what growth checks compare: USS less the clean pages of mapped files (the bench's
``anon_uss``), because USS counts a shared library's pages as a process's own once no other process on
the machine maps them, so it jumps by tens of MiB when an unrelated process with torch loaded exits.
"""

from __future__ import annotations

from typing import Any, Dict, List

import psutil

from ais_wds_bench.sections.memory import anon_uss


def uss(pid: int) -> int:
    """Bytes only this process holds (psutil's ``uss``: private pages, what killing it would free)."""
    return int(psutil.Process(pid).memory_full_info().uss)


def own(pid: int) -> int:
    """Private bytes the process made itself: heap, buffers, stacks, copied pages (no clean file pages)."""
    return anon_uss(pid)


def worker_pids(loader: Any) -> List[int]:
    """The pids of a DataLoader's live workers (persistent workers: the same every epoch)."""
    iterator = getattr(loader, "_iterator", None)
    return [w.pid for w in getattr(iterator, "_workers", [])]


def growth_after(series: Dict[int, List[int]], first: int = 1) -> int:
    """The most any process's figure rose from epoch ``first`` to any later epoch (bytes; 0 if it only fell)."""
    return max((max(v[first:]) - v[first] for v in series.values() if len(v) > first), default=0)
