"""Sections 2-4 of the benchmark (run by their own scripts), the ``ais`` CLI, and machine facts.

Sections 2-4 live in ``scripts/bench_small_objects.py`` and ``scripts/bench_pack_index.py``; they are
imported by path and their ``run*`` function is called with ``(client, scale)``. A script that does
not exist (yet) gives a section with ``status: "not available"``; one that fails gives
``status: "error"`` with the traceback. Neither stops the benchmark.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Optional

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent

# section name -> (script, function)
SECTIONS = {
    "small_objects": ("bench_small_objects.py", "run"),
    "random_access": ("bench_pack_index.py", "run_random_access"),
    "pack": ("bench_pack_index.py", "run_pack"),
    "startup": ("bench_startup.py", "run"),
    "scale": ("bench_scale.py", "run"),
    "pack_engines": ("bench_pack_engines.py", "run"),
    "resume": ("bench_resume.py", "run"),
    "loader": ("bench_loader.py", "run"),
}


def _load(script: str) -> Any:
    path = SCRIPTS / script
    spec = importlib.util.spec_from_file_location(f"_bench_ext_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_section(name: str, client: Any, scale: float, log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run one external section; never raises."""
    script, func = SECTIONS[name]
    where = f"scripts/{script}:{func}()"
    if not (SCRIPTS / script).exists():
        return {"status": "not available", "reason": f"scripts/{script} does not exist yet", "source": where}
    try:
        fn = getattr(_load(script), func, None)
    except Exception:  # noqa: BLE001 - a broken script must not stop the others
        return {"status": "error", "reason": "import failed", "traceback": traceback.format_exc(limit=6),
                "source": where}
    if fn is None:
        return {"status": "not available", "reason": f"scripts/{script} has no {func}() yet", "source": where}
    log(f"  {where} at scale {scale:g}")
    t = time.perf_counter()
    try:
        result = fn(client, scale)
    except Exception as e:  # noqa: BLE001
        return {"status": "error", "reason": f"{type(e).__name__}: {e}"[:500],
                "traceback": traceback.format_exc(limit=8), "source": where,
                "seconds": round(time.perf_counter() - t, 1)}
    return {"status": "ok", "source": where, "seconds": round(time.perf_counter() - t, 1), "result": result}


# ------------------------------------------------------------------------------------------------
# the ais CLI (for "webdataset with pipe:ais get")

CLI_BIN = REPO / ".cache" / "bench" / "bin" / "ais"
AIS_RELEASE = "v1.5.0"


def find_ais_cli(explicit: Optional[str] = None) -> Optional[str]:
    for candidate in (explicit, os.environ.get("AIS_CLI"), str(CLI_BIN), shutil.which("ais")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def build_ais_cli(timeout: float = 300, log: Callable[[str], None] = print) -> str:
    """Build the ``ais`` CLI of AIS ``AIS_RELEASE`` into ``.cache/bench/bin/ais``.

    The CLI is its own module (github.com/NVIDIA/aistore/cmd/cli) with no release tag of its own, so
    the Go module proxy cannot serve it by version. Its source is taken from a git clone of AIS
    (``$AIS_GIT``, else a shallow clone from GitHub), and its pseudo-version
    requirement on the root module is replaced by the ``AIS_RELEASE`` module from the proxy.

    Returns:
        The path of the binary.

    Raises:
        RuntimeError: with the reason (no go, no source, build failure or timeout).
    """
    go = shutil.which("go")
    if not go:
        raise RuntimeError("no `go` on PATH")
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="ais-cli-build-") as tmp:
        git_dir = os.environ.get("AIS_GIT")  # a git clone of AIS, if you have one
        if not git_dir:
            git_dir = os.path.join(tmp, "aistore.git")
            _run(["git", "clone", "--bare", "--depth", "1", "--branch", AIS_RELEASE,
                  "https://github.com/NVIDIA/aistore", git_dir], deadline)
        src = os.path.join(tmp, "src")
        os.mkdir(src)
        archive = subprocess.run(["git", f"--git-dir={git_dir}", "archive", AIS_RELEASE, "cmd/cli"],
                                 capture_output=True, check=False, timeout=max(deadline - time.monotonic(), 1))
        if archive.returncode != 0:
            raise RuntimeError(f"git archive {AIS_RELEASE} cmd/cli failed: {archive.stderr.decode()[-300:]}")
        subprocess.run(["tar", "-x", "-C", src], input=archive.stdout, check=True)
        cli = os.path.join(src, "cmd", "cli")
        env = dict(os.environ, GOFLAGS="-mod=mod")
        _run([go, "mod", "edit", f"-replace=github.com/NVIDIA/aistore=github.com/NVIDIA/aistore@{AIS_RELEASE}"],
             deadline, cwd=cli, env=env)
        CLI_BIN.parent.mkdir(parents=True, exist_ok=True)
        log(f"  building the ais CLI ({AIS_RELEASE}) into {CLI_BIN.relative_to(REPO)} (limit {timeout:.0f}s)")
        _run([go, "build", "-o", str(CLI_BIN), "."], deadline, cwd=cli, env=env)
    return str(CLI_BIN)


def _run(cmd, deadline: float, **kw) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise RuntimeError(f"timed out before `{' '.join(cmd[:3])}`")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=left, **kw)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`{' '.join(cmd[:3])} ...` did not finish within the time limit") from None
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[:3])} ...` failed: {proc.stderr.strip()[-400:]}")


# ------------------------------------------------------------------------------------------------
# machine facts


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
