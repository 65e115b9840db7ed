"""The ``ais`` CLI, for section 1's "webdataset with ``pipe:ais get``" row: found, or built from source."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import Callable, Optional

from . import REPO

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


