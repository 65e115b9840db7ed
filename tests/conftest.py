"""Shared fixtures: the live AIS cluster (started by scripts/ais-local when AIS_ENDPOINT is unset).

A cluster that cannot start is a test failure, never a skip. A test that uses a cluster fixture (directly
or through other fixtures) is marked ``cluster``; with ``AIS_WDS_UNIT_ONLY=1`` (`make unit`) every cluster
fixture fails at once instead of starting or contacting a cluster (tests/support/cluster_guard.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from tests.support.cluster_guard import CLUSTER_FIXTURES, refuse_in_unit_run

REPO = Path(__file__).resolve().parents[1]
AIS_LOCAL = REPO / "scripts" / "ais-local"


def pytest_configure(config):
    config.addinivalue_line("markers", "unit_suite: runs the unit suite in a subprocess (tests/test_markers.py); "
                                       "part of `make test`, not of `make unit`")


def pytest_collection_modifyitems(config, items):
    """Mark ``cluster`` every test whose fixture closure (``item.fixturenames`` is transitive) holds a
    cluster fixture, so that ``-m "not cluster"`` starts no cluster."""
    for item in items:
        if CLUSTER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def ais_endpoint() -> str:
    refuse_in_unit_run("ais_endpoint")
    endpoint = os.environ.get("AIS_ENDPOINT")
    if not endpoint:
        proc = subprocess.run([sys.executable, str(AIS_LOCAL), "start"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"the local AIS cluster did not start:\n{proc.stderr[-6000:]}", pytrace=False)
        line = [x for x in proc.stdout.splitlines() if x.startswith("AIS_ENDPOINT=")]
        if not line:
            pytest.fail(f"scripts/ais-local start printed no endpoint:\n{proc.stdout}\n{proc.stderr[-3000:]}")
        endpoint = line[-1].split("=", 1)[1]
        os.environ["AIS_ENDPOINT"] = endpoint
    from ais_wds import Client

    client = Client(endpoint)
    deadline = time.monotonic() + 60
    while True:
        try:
            if client.sdk.cluster().is_ready():
                break
        except Exception as e:  # noqa: BLE001
            err = e
        else:
            err = "not ready"
        if time.monotonic() > deadline:
            pytest.fail(f"AIS at {endpoint} is not ready: {err}", pytrace=False)
        time.sleep(1)
    return endpoint


@pytest.fixture(scope="session")
def client(ais_endpoint):
    from ais_wds import Client

    return Client(ais_endpoint)


def _new_bucket(client, prefix: str):
    name = f"{prefix}-{uuid.uuid4().hex[:10]}".lower()
    client.sdk.bucket(name).create(exist_ok=True)
    return name


@pytest.fixture
def bucket(client, request):
    """A fresh, empty ais:// bucket name for one test; destroyed afterwards."""
    name = _new_bucket(client, "t-" + request.node.name[:30].replace("_", "-").replace("[", "-").strip("]-"))
    yield name
    try:
        client.sdk.bucket(name).delete(missing_ok=True)
    except Exception:  # noqa: BLE001 - cleanup is best effort
        pass


@pytest.fixture(scope="module")
def module_bucket(client, request):
    """A bucket shared by the tests of one module; destroyed afterwards."""
    name = _new_bucket(client, "m-" + request.module.__name__.split(".")[-1].replace("_", "-")[:30])
    yield name
    try:
        client.sdk.bucket(name).delete(missing_ok=True)
    except Exception:  # noqa: BLE001
        pass


class LocalCluster:
    """Fault injection on the cluster started by scripts/ais-local (kill / restart a target)."""

    def __init__(self, state: Path):
        self.state = state

    def run(self, *args: str, timeout: float = 180) -> str:
        refuse_in_unit_run(f"local_cluster (ais-local {' '.join(args)})")
        proc = subprocess.run([sys.executable, str(AIS_LOCAL), *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"ais-local {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
        return proc.stdout

    def kill_target(self, n: int) -> None:
        self.run("kill-target", str(n))

    def start_target(self, n: int) -> None:
        self.run("start-target", str(n))

    def target_of(self, client, url: str) -> int:
        """Which local target (1 or 2) owns the object at ``url``."""
        import json

        obj = client.object(url)
        node = client.sdk.cluster().get_info().get_target_for_object(obj.uname)
        port = int(node.public_net.daemon_port)
        ports = json.loads((self.state / "ports.json").read_text())
        return next(int(name[1:]) for name, p in ports.items() if name.startswith("t") and int(p["port"]) == port)


ALLOW_EXTERNAL = "AIS_WDS_ALLOW_EXTERNAL_CLUSTER"
"""Set to 1 to run the suite against an AIS_ENDPOINT that scripts/ais-local did not start: the tests that
kill and restart its targets (``local_cluster``) are then skipped, by this explicit choice only."""


@pytest.fixture(scope="session")
def local_cluster(ais_endpoint) -> LocalCluster:
    """Only for the cluster scripts/ais-local runs; an external AIS_ENDPOINT cannot be fault-injected. A
    mismatch fails the test (a skip would hide the kill/restart tests) unless AIS_WDS_ALLOW_EXTERNAL_CLUSTER=1."""
    state = Path(os.environ.get("AIS_LOCAL_STATE_DIR", REPO / ".cache" / "ais" / "state"))
    ep_file = state / "endpoint"
    if not ep_file.exists() or ep_file.read_text().strip() != ais_endpoint:
        found = f"holds {ep_file.read_text().strip()}" if ep_file.exists() else "does not exist"
        why = (f"AIS_ENDPOINT={ais_endpoint} is not the cluster scripts/ais-local started ({ep_file} "
               f"{found}); its targets cannot be killed and restarted")
        if os.environ.get(ALLOW_EXTERNAL) == "1":
            pytest.skip(f"{why} ({ALLOW_EXTERNAL}=1)")
        pytest.fail(f"{why}. Point AIS_LOCAL_STATE_DIR at that cluster's state folder, or set {ALLOW_EXTERNAL}=1 "
                    "to skip the kill/restart tests on purpose", pytrace=False)
    return LocalCluster(state)


class ExtraCluster:
    """One `scripts/ais-local start OPTIONS` in a state folder of its own, beside the session cluster.

    ``vars`` holds what `start` printed (AIS_ENDPOINT, and AIS_AUTHN_TOKEN, AIS_CLIENT_CA, AIS_REMOTE_*,
    AIS_LOCAL_*_URL as the options say). Started once per test session by the fixtures below.
    """

    def __init__(self, state: Path, options: List[str]):
        self.state = state
        self.options = options
        self.vars: Dict[str, str] = {}

    def run(self, *args: str, timeout: float = 900) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("AIS_ENDPOINT", "AIS_AUTHN_TOKEN", "AIS_CLIENT_CA")}
        env["AIS_LOCAL_STATE_DIR"] = str(self.state)
        proc = subprocess.run([sys.executable, str(AIS_LOCAL), *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"ais-local {' '.join(args)} (state {self.state}) failed:\n"
                               f"{proc.stdout}\n{proc.stderr[-6000:]}")
        return proc.stdout

    def start(self) -> None:
        refuse_in_unit_run(f"ExtraCluster (ais-local start {' '.join(self.options)})")
        out = self.run("start", *self.options)
        self.vars = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    @property
    def endpoint(self) -> str:
        return self.vars["AIS_ENDPOINT"]

    def target_port(self, n: int) -> int:
        import json

        return int(json.loads((self.state / "ports.json").read_text())[f"t{n}"]["port"])


@contextmanager
def _extra_cluster(tmp_path_factory, name: str, *options: str) -> Iterator[ExtraCluster]:
    """Start it (or, with AIS_WDS_TEST_KEEP_CLUSTERS=DIR, reuse and keep DIR/name: for quick reruns while
    developing); stop it with --wipe at the end of the session."""
    keep = os.environ.get("AIS_WDS_TEST_KEEP_CLUSTERS")
    state = Path(keep) / name if keep else tmp_path_factory.mktemp(name) / "state"
    cluster = ExtraCluster(state, list(options))
    try:
        try:
            cluster.start()
        except Exception as e:  # noqa: BLE001 - a cluster that cannot start fails the session, never skips
            pytest.fail(f"scripts/ais-local start {' '.join(options)} did not start: {e}", pytrace=False)
        yield cluster
    finally:
        try:
            if not keep:
                cluster.run("stop", "--wipe", timeout=120)
        except Exception:  # noqa: BLE001 - best effort; the state folder is a tmp folder
            pass


@pytest.fixture(scope="session")
def clouds_cluster(tmp_path_factory) -> Iterator[ExtraCluster]:
    """A private cluster with the aws, gcp and azure backends (moto, fake-gcs-server, Azurite) and a remote
    AIS cluster attached as ``remote``; plain http, no auth. Its targets may be killed by tests."""
    with _extra_cluster(tmp_path_factory, "ais-clouds", "--backends", "aws,gcp,azure", "--remote") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def secure_cluster(tmp_path_factory) -> Iterator[ExtraCluster]:
    """A private cluster that requires AuthN tokens and speaks https (self-signed CA), with a remote AIS
    cluster (plain http, no auth) attached as ``remote``."""
    with _extra_cluster(tmp_path_factory, "ais-secure", "--auth", "--tls", "--remote") as cluster:
        yield cluster
