"""The test set-up tells the truth: ``-m "not cluster"`` (`make unit`) starts and contacts no AIS cluster.

A test that uses a cluster fixture, directly or through other fixtures, is deselected by ``-m "not cluster"``;
with ``AIS_WDS_UNIT_ONLY=1`` a cluster fixture that escaped the marker fails with "a unit run started a
cluster fixture" before it starts anything; and a real unit run leaves no aisnode process of its own.
Each check runs pytest in a subprocess, on a generated test file or on the unit suite itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

from tests.support.cluster_guard import CLUSTER_FIXTURES, UNIT_ONLY

REPO = Path(__file__).resolve().parents[1]
UNIT_MARKERS = "not cluster and not unit_suite"
"""What `make unit` selects (the Makefile's `unit` line)."""

UNIT_ARGS = ["-n", "2", "-m", UNIT_MARKERS]
"""`make unit`'s and nox's unit sessions' pytest arguments: two pytest-xdist workers, the marker selection."""

TAG = "WDS_TEST_RUN_TAG"
"""An environment variable set on a child pytest, inherited by any aisnode it starts (scripts/ais-local
drops AIS_* variables from a node's environment, hence no AIS_ prefix)."""


def _child_env(tmp_path: Path, unit_only: bool = True) -> Dict[str, str]:
    """The environment of a child pytest: no endpoint (a leak would start a cluster, in ``tmp_path``, not
    touch the shared one), the unit-run guard on, and a tag that its aisnode processes would inherit."""
    env = {k: v for k, v in os.environ.items() if k not in ("AIS_ENDPOINT", "AIS_AUTHN_TOKEN", "AIS_CLIENT_CA")}
    env["AIS_LOCAL_STATE_DIR"] = str(tmp_path / "leaked-cluster-state")
    env[TAG] = uuid.uuid4().hex
    env["COLUMNS"] = "400"  # pytest's summary lines whole, not cut at the terminal's width
    if unit_only:
        env[UNIT_ONLY] = "1"
    else:
        env.pop(UNIT_ONLY, None)
    return env


def _pytest(args: List[str], env: Dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def _stop_leaked(env: Dict[str, str]) -> None:
    """Stop a cluster a broken guard let a child start (in its own state folder; never the shared one)."""
    if Path(env["AIS_LOCAL_STATE_DIR"]).exists():
        subprocess.run([sys.executable, str(REPO / "scripts" / "ais-local"), "stop", "--wipe"], env=env,
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=180)


def _generated(tmp_path: Path, body: str) -> Path:
    """A test file outside tests/ that gets tests/conftest.py's fixtures and hooks as a plugin."""
    path = tmp_path / "test_generated.py"
    path.write_text("import pytest\n\n" + body)
    return path


def _run_generated(path: Path, env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return _pytest(["-p", "tests.conftest", "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"), "-q",
                    "-rA", *args, str(path)], env, timeout=300)


def _summary(out: str) -> Dict[str, int]:
    """{"passed": n, "deselected": n, ...} from pytest's last line."""
    line = [x for x in out.strip().splitlines() if x.strip()][-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", line)}


# ------------------------------------------------------------------------------------------------------------


def test_a_test_using_any_cluster_fixture_directly_or_through_another_is_deselected_by_not_cluster(tmp_path):
    names = sorted(CLUSTER_FIXTURES)
    body = [
        "@pytest.fixture\ndef private_cluster():\n    raise AssertionError('never set up')\n\n",
        "@pytest.fixture\ndef data(module_bucket):\n    raise AssertionError('never set up')\n\n",
        "@pytest.fixture\ndef deeper(data):\n    raise AssertionError('never set up')\n\n",
        "def test_plain():\n    pass\n\n",
        "def test_through_a_fixture(data):\n    pass\n\n",
        "def test_two_fixtures_deep(deeper, tmp_path):\n    pass\n\n",
    ]
    body += [f"def test_uses_{name}({name}):\n    pass\n\n" for name in names]
    path = _generated(tmp_path, "".join(body))
    env = _child_env(tmp_path)
    try:
        proc = _run_generated(path, env, "-m", "not cluster")
        selected = _run_generated(path, env, "--collect-only", "-m", "cluster")
    finally:
        _stop_leaked(env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert _summary(proc.stdout) == {"passed": 1, "deselected": len(names) + 2}, proc.stdout[-2000:]
    assert "PASSED ::test_plain" in proc.stdout
    assert selected.returncode == 0, selected.stdout[-3000:]
    listed = set(re.findall(r"::(test_\w+)", selected.stdout))
    assert listed == {f"test_uses_{n}" for n in names} | {"test_through_a_fixture", "test_two_fixtures_deep"}


def test_a_cluster_fixture_in_a_unit_run_fails_loudly_before_starting_anything(tmp_path):
    """Under AIS_WDS_UNIT_ONLY=1, a test that gets a cluster fixture past the marker (run without -m, or a
    new cluster fixture nobody listed) fails with the guard's message; nothing was started. The same in an
    xdist worker (`make unit` runs two): the worker inherits AIS_WDS_UNIT_ONLY=1."""
    path = _generated(tmp_path, (
        "from tests.conftest import ExtraCluster\n\n"
        "@pytest.fixture\ndef unlisted_cluster(tmp_path):\n"
        "    cluster = ExtraCluster(tmp_path / 'state', [])\n    cluster.start()\n    return cluster\n\n"
        "def test_endpoint(ais_endpoint):\n    pass\n\n"
        "def test_bucket(bucket):\n    pass\n\n"
        "def test_unlisted(unlisted_cluster):\n    pass\n\n"
    ))
    env = _child_env(tmp_path)
    try:
        everything = _run_generated(path, env)
        unit = _run_generated(path, env, "-m", "not cluster")
        in_worker = _run_generated(path, env, "-n", "2", "-m", "not cluster")
    finally:
        _stop_leaked(env)
    out = everything.stdout
    assert everything.returncode == 1 and _summary(out) == {"errors": 3}, out[-3000:]
    assert "ERROR ::test_endpoint - Failed: a unit run started a cluster fixture: ais_endpoint" in out
    assert "ERROR ::test_bucket - Failed: a unit run started a cluster fixture: ais_endpoint" in out
    assert "ERROR ::test_unlisted - Failed: a unit run started a cluster fixture: ExtraCluster" in out
    assert "mark it" in out
    # the unlisted fixture is not deselected by the marker: the guard is what stops it
    assert unit.returncode == 1 and _summary(unit.stdout) == {"deselected": 2, "error": 1}, unit.stdout[-3000:]
    assert "a unit run started a cluster fixture: ExtraCluster" in unit.stdout
    out = in_worker.stdout  # xdist's summary leaves out the deselected
    assert in_worker.returncode == 1 and _summary(out) == {"error": 1}, out[-3000:]
    assert re.search(r"\[gw[01]\] linux", out) and "a unit run started a cluster fixture: ExtraCluster" in out, out
    assert not Path(env["AIS_LOCAL_STATE_DIR"]).exists() and not (tmp_path / "state").exists()


# ------------------------------------------------------------------------------------------------------------


class _AisnodeWatch:
    """Polls the process table while a child runs: aisnode processes that were not there before."""

    def __init__(self, tag: str, state_dir: str):
        import psutil

        self.psutil = psutil
        self.tag, self.state_dir = tag, state_dir
        self.before = self._aisnodes()
        self.new: Dict[int, str] = {}  # pid -> cmdline, every aisnode started since
        self.ours: Set[int] = set()  # ... with the child's tag in its environment (or its state folder)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _aisnodes(self) -> Dict[int, str]:
        out = {}
        for p in self.psutil.process_iter(["pid", "name", "cmdline"]):
            cmd = p.info["cmdline"] or []
            if p.info["name"] == "aisnode" or (cmd and os.path.basename(cmd[0]) == "aisnode"):
                out[p.info["pid"]] = " ".join(cmd)
        return out

    def _is_ours(self, pid: int, cmdline: str) -> bool:
        if self.state_dir in cmdline:
            return True
        try:
            return self.psutil.Process(pid).environ().get(TAG) == self.tag
        except (self.psutil.Error, OSError):
            return False

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            for pid, cmdline in self._aisnodes().items():
                if pid not in self.before and pid not in self.new:
                    self.new[pid] = cmdline
                    if self._is_ours(pid, cmdline):
                        self.ours.add(pid)

    def __enter__(self) -> _AisnodeWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_make_unit_and_nox_unit_run_the_arguments_the_unit_suite_check_runs():
    """The check below runs :data:`UNIT_ARGS` under AIS_WDS_UNIT_ONLY=1: so do the Makefile's `unit` line and
    noxfile.py's unit sessions (a change to one that the others miss fails here)."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^unit:.*\n\t(.*)$", makefile, re.M)
    assert recipe, "the Makefile has no unit target"
    shell_args = " ".join(f'"{a}"' if " " in a else a for a in UNIT_ARGS)
    assert recipe.group(1).startswith("AIS_WDS_UNIT_ONLY=1 $(PY) -m pytest -q " + shell_args + " "), recipe.group(1)
    noxfile = (REPO / "noxfile.py").read_text(encoding="utf-8")
    assert '"-q", "-ra", ' + ", ".join(f'"{a}"' for a in UNIT_ARGS) + "," in noxfile
    assert 'env={"AIS_WDS_UNIT_ONLY": "1"}' in noxfile


@pytest.mark.unit_suite
def test_the_unit_suite_starts_no_aisnode_and_no_cluster_fixture(tmp_path):
    """Runs the unit suite as `make unit` does (:data:`UNIT_ARGS`: two xdist workers, which inherit
    AIS_WDS_UNIT_ONLY=1 and the missing AIS_ENDPOINT) and watches the process table meanwhile: no aisnode of
    its own appears (aisnodes that were running before, the shared cluster's, and other people's are ignored),
    and no cluster fixture was reached. A leak would show twice: the guard's message, and an aisnode carrying
    the child's tag."""
    env = _child_env(tmp_path)
    watch: Optional[_AisnodeWatch] = None
    try:
        with _AisnodeWatch(env[TAG], env["AIS_LOCAL_STATE_DIR"]) as watch:
            proc = _pytest([*UNIT_ARGS, "tests"], env, timeout=900)  # not -q: the header counts the items
        # xdist's summary leaves out the deselected: count them in a collection (no workers)
        collected = _pytest(["-q", "--collect-only", "-p", "no:xdist", "-m", UNIT_MARKERS, "tests"], env, timeout=300)
    finally:
        _stop_leaked(env)
    summary = _summary(proc.stdout)
    selection = _summary(collected.stdout)  # "558/947 tests collected (389 deselected)": {"tests": 947, ...}
    print(f"unit suite: {summary}, {selection}; aisnodes started meanwhile: {len(watch.new)} (by others), "
          "0 expected of ours")
    assert "a unit run started a cluster fixture" not in proc.stdout, proc.stdout[-6000:]
    workers = re.search(r"^(\d+) workers \[(\d+) items\]", proc.stdout, re.M)
    assert workers and workers.group(1) == "2", proc.stdout[:3000]
    assert selection.get("deselected", 0) > 100, collected.stdout[-3000:]
    assert int(workers.group(2)) == selection["tests"] - selection["deselected"], (workers.group(0), selection)
    assert summary.get("passed", 0) > 100, proc.stdout[-3000:]
    assert watch.ours == set(), {pid: watch.new[pid] for pid in watch.ours}
    assert not Path(env["AIS_LOCAL_STATE_DIR"]).exists()


# ------------------------------------------------------------------------------------------------------------


def test_local_cluster_on_another_clusters_endpoint_fails_unless_the_opt_out_is_set(tmp_path, ais_endpoint):
    """The kill/restart tests (``local_cluster``) need the cluster scripts/ais-local started: on any other
    endpoint they fail, saying why; they are skipped only with AIS_WDS_ALLOW_EXTERNAL_CLUSTER=1."""
    path = _generated(tmp_path, "def test_kills_a_target(local_cluster):\n    pass\n")
    env = _child_env(tmp_path, unit_only=False)
    env["AIS_ENDPOINT"] = ais_endpoint  # a live cluster, but not the one of this (empty) state folder
    env["AIS_LOCAL_STATE_DIR"] = str(tmp_path / "another-state")
    refused = _run_generated(path, env)
    skipped = _run_generated(path, {**env, "AIS_WDS_ALLOW_EXTERNAL_CLUSTER": "1"})
    assert refused.returncode == 1 and _summary(refused.stdout) == {"error": 1}, refused.stdout[-3000:]
    assert f"AIS_ENDPOINT={ais_endpoint} is not the cluster scripts/ais-local started" in refused.stdout
    assert "set AIS_WDS_ALLOW_EXTERNAL_CLUSTER=1 to skip the kill/restart tests on purpose" in refused.stdout
    assert skipped.returncode == 0 and _summary(skipped.stdout) == {"skipped": 1}, skipped.stdout[-3000:]
    assert "(AIS_WDS_ALLOW_EXTERNAL_CLUSTER=1)" in skipped.stdout
