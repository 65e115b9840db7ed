"""An optional trace of a job's data path in Chrome trace events (opens in Perfetto or chrome://tracing):
GETs (request to first byte; shard opens, resumes and whole-object GETs told apart) per process, and the
training loop's waits for each batch.

``ais_wds.monitor(loader, trace="trace.json")`` turns it on: the monitor names a folder of parts
(``trace.json.parts/``) in ``AIS_WDS_TRACE_DIR`` while its DataLoader starts the workers, every process
(the rank's and each worker) appends its events to a part file of its own (one JSON object per line,
written as they happen, so a worker that is killed keeps what it wrote), and :func:`merge` (called by the
monitor at the end of each epoch and by ``Monitor.close()``) writes ``trace.json``. Process ids are the OS
pids; thread names say ``main`` or ``worker N``. Nothing is written unless the variable is set. No torch.
"""

from __future__ import annotations

import glob
import json
import os
import threading
import time
from typing import IO, Any, Dict, List, Optional

TRACE_DIR_ENV = "AIS_WDS_TRACE_DIR"
"""Environment variable: the folder every process of a traced job appends its events to."""

_lock = threading.Lock()
_out: Dict[str, Any] = {"pid": None, "file": None, "dir": None}


def now_us() -> int:
    """The trace clock: microseconds of the system's monotonic clock (the same in every process)."""
    return time.monotonic_ns() // 1000


def _file() -> Optional[IO[str]]:
    """This process's part file for the folder in the environment (reopened after a fork), or None."""
    folder = os.environ.get(TRACE_DIR_ENV)
    if not folder:
        return None
    pid = os.getpid()
    if _out["pid"] == pid and _out["dir"] == folder:
        return _out["file"]
    with _lock:
        if _out["pid"] != pid or _out["dir"] != folder:
            os.makedirs(folder, exist_ok=True)
            _out.update(pid=pid, dir=folder, file=open(os.path.join(folder, f"{pid}.jsonl"), "a", encoding="utf-8"))
            _emit(_out["file"], {"name": "thread_name", "ph": "M", "pid": pid, "tid": pid,
                                 "args": {"name": _thread_label()}})
    return _out["file"]


def _thread_label() -> str:
    from .._core.dist import torch_worker

    worker = torch_worker()
    return "main" if worker is None else f"worker {worker[0]}"


def _emit(f: IO[str], event: Dict[str, Any]) -> None:
    f.write(json.dumps(event, separators=(",", ":")) + "\n")
    f.flush()


def span(name: str, start_us: int, end_us: int, **args: Any) -> None:
    """A complete event ``name`` from ``start_us`` to ``end_us`` (:func:`now_us`) in this process, if tracing."""
    f = _file()
    if f is None:
        return
    pid = os.getpid()
    with _lock:
        _emit(f, {"name": name, "ph": "X", "ts": start_us, "dur": max(end_us - start_us, 0), "pid": pid, "tid": pid,
                  "args": args})


def merge(folder: str, path: str) -> int:
    """Write the events of every part file in ``folder`` to ``path`` as one Chrome trace JSON
    (``{"traceEvents": [...]}``, sorted by time); the number of events."""
    with _lock:
        if _out["file"] is not None:
            _out["file"].flush()
    events: List[Dict[str, Any]] = []
    for part in sorted(glob.glob(os.path.join(folder, "*.jsonl"))):
        with open(part, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        events.append(json.loads(line))
                    except ValueError:  # the last line of a worker killed while writing it
                        continue
    events.sort(key=lambda e: (e.get("ph") != "M", e.get("ts", 0)))
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"traceEvents": events, "displayTimeUnit": "ms"}, f)
    os.replace(tmp, path)
    return len(events)
