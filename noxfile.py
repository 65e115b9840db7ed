"""The test matrix: the unit suite on every Python the package supports, the whole suite against the live
cluster on the newest and the oldest.

    nox                       # = nox -s unit (`make matrix`): 3.10 to 3.13, the unit suite (`make unit`'s)
    nox -s cluster            # `make matrix-cluster`: 3.13 and 3.10, the whole suite against $AIS_ENDPOINT
    nox -s unit-3.12 -- -k x  # one version; what follows `--` goes to pytest

Interpreters are found, never downloaded: ``python3.X`` on PATH, then in pyenv's version folders
(``$PYENV_ROOT/versions/3.X.*/bin``, ``~/.pyenv/versions``); a version found nowhere fails its session.
Each session has its own virtualenv under ``.nox/``, installed from this checkout as `make install` does
(``-e .[dev] -e tools``). uv (installed with nox by the ``dev`` extra) makes them from
its cache with hard links: torch and its CUDA wheels are ~6 GB a virtualenv, and a rerun or a fresh clone
downloads and copies nothing again. Without uv they are made by virtualenv and pip (with pip's cache).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
"""Every Python the package supports: keep pyproject.toml's classifiers and requires-python in step."""

nox.options.sessions = ["unit"]
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = True  # a Python found nowhere fails its session (not only under CI)
nox.options.reuse_venv = "yes"  # a rerun updates the virtualenv instead of making it anew
os.environ["UV_PYTHON_DOWNLOADS"] = "never"  # uv itself would fetch a Python it cannot find


def _runs(python: str) -> bool:
    """A pyenv shim for a version that is installed but not selected exits 127: it is not an interpreter."""
    try:
        return subprocess.run([python, "-c", ""], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _interpreter_dirs() -> list[str]:
    """Folders holding a working ``python3.X`` for each version that PATH does not give a working one."""
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    dirs: list[str] = []
    for version in PYTHONS:
        found = shutil.which(f"python{version}")
        if found and _runs(found):
            continue
        for root in filter(None, dict.fromkeys(roots)):
            candidates = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")))
            working = [c for c in reversed(candidates) if _runs(c)]  # the newest patch release first
            if working:
                dirs.append(os.path.dirname(working[0]))
                break
    return dirs


os.environ["PATH"] = os.pathsep.join([*_interpreter_dirs(), os.environ.get("PATH", "")])


def _install(session: nox.Session) -> None:
    """What `make install` puts in .venv: this checkout with its dev extra, and the tools (ais_local, the bench)."""
    session.install("-e", ".[dev]", "-e", "tools")


@nox.session(python=PYTHONS)
def unit(session: nox.Session) -> None:
    """The unit suite on one Python, as `make unit` runs it (no cluster: its guard fails a test that reaches one)."""
    _install(session)
    # -n 2: two pytest-xdist workers, as `make unit` (`-- -n 0` runs it in one process)
    session.run("python", "-m", "pytest", "-q", "-ra", "-n", "2", "-m", "not cluster and not unit_suite",
                *session.posargs, env={"AIS_WDS_UNIT_ONLY": "1"})


@nox.session(python=[PYTHONS[-1], PYTHONS[0]])
def cluster(session: nox.Session) -> None:
    """The whole suite (`make test`'s) against the live cluster at $AIS_ENDPOINT, on the newest and the oldest."""
    if not os.environ.get("AIS_ENDPOINT"):
        session.error("AIS_ENDPOINT is not set: run `make matrix-cluster`, which starts the local cluster")
    _install(session)
    # the private clusters some tests start run their emulators (moto, ...) from this virtualenv, not .venv
    session.run("python", "-m", "pytest", "-q", "-ra", *session.posargs,
                env={"AIS_LOCAL_VENV": str(session.env_dir.resolve())})
