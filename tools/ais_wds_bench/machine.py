"""Facts about the machine and the checkout a run is on, and the load average (the report's header)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from typing import Any, Dict

from . import REPO


def _cmd(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def machine_info() -> Dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    versions = {}
    for mod in ("aistore", "webdataset", "torch", "urllib3"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:  # noqa: BLE001
            versions[mod] = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "free_h": _cmd("free", "-h"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "ais_wds_commit": _cmd("git", "-C", str(REPO), "rev-parse", "--short", "HEAD"),
        "ais_wds_dirty": bool(_cmd("git", "-C", str(REPO), "status", "--porcelain", "--", "ais_wds")),
        "curl": _cmd("curl", "--version").splitlines()[0] if shutil.which("curl") else None,
    }


def load_now() -> Dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "load_1m": one, "load_5m": five, "load_15m": fifteen}
