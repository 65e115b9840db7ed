"""Shared fixtures: the live AIS cluster (started by scripts/ais-local when AIS_ENDPOINT is unset).

A cluster that cannot start is a test failure, never a skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AIS_LOCAL = REPO / "scripts" / "ais-local"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "ais_endpoint" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def ais_endpoint() -> str:
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


@pytest.fixture(scope="session")
def local_cluster(ais_endpoint) -> LocalCluster:
    """Only for the cluster scripts/ais-local runs; an external AIS_ENDPOINT cannot be fault-injected."""
    state = Path(os.environ.get("AIS_LOCAL_STATE_DIR", REPO / ".cache" / "ais" / "state"))
    ep_file = state / "endpoint"
    if not ep_file.exists() or ep_file.read_text().strip() != ais_endpoint:
        pytest.skip("AIS_ENDPOINT is not the cluster started by scripts/ais-local; cannot kill its targets")
    return LocalCluster(state)
