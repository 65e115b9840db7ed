"""`scripts/ais-local start` options (tools/ais_local) against real processes: --backends aws,gcp,azure (with their
emulators), --remote + --auth, and --tls.

Each option set is started once for this module in a state folder of its own, beside (never instead of)
the default local cluster, checked through the aistore SDK (bytes, not counts), and removed with
`stop --wipe`. The default cluster is left alone.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.cluster_guard import refuse_in_unit_run

REPO = Path(__file__).resolve().parents[2]
AIS_LOCAL = REPO / "scripts" / "ais-local"

pytestmark = pytest.mark.cluster


class Deployment:
    """One `scripts/ais-local start OPTIONS` in its own state folder."""

    def __init__(self, state: Path, options: list[str]):
        self.state = state
        self.options = options
        self.vars: dict[str, str] = {}
        self.start_stderr = ""

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("AIS_ENDPOINT", "AIS_AUTHN_TOKEN", "AIS_CLIENT_CA")}
        env["AIS_LOCAL_STATE_DIR"] = str(self.state)
        proc = subprocess.run([sys.executable, str(AIS_LOCAL), *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, env=env)
        if check and proc.returncode != 0:
            pytest.fail(f"ais-local {' '.join(args)} (state {self.state}) failed:\n"
                        f"{proc.stdout}\n{proc.stderr[-6000:]}", pytrace=False)
        return proc

    def start(self) -> dict[str, str]:
        refuse_in_unit_run(f"Deployment (ais-local start {' '.join(self.options)})")
        proc = self.run("start", *self.options)
        self.start_stderr = proc.stderr
        lines = [line for line in proc.stdout.splitlines() if line]
        assert all("=" in line for line in lines), proc.stdout
        self.vars = dict(line.split("=", 1) for line in lines)
        return self.vars

    def pids(self) -> list[int]:
        """pids from every pid file under the state folder (nodes, remote nodes, services)."""
        out = []
        for f in self.state.rglob("*pid"):
            try:
                out.append(int(f.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                pass
        return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@contextmanager
def deployment(tmp_path_factory, name: str, *options: str):
    dep = Deployment(tmp_path_factory.mktemp(name) / "state", list(options))
    try:
        dep.start()
        yield dep
    finally:
        pids = dep.pids()
        dep.run("stop", "--wipe", check=False)
        assert not dep.state.exists()
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in pids if alive(p)], "stop --wipe left processes running"


@pytest.fixture(scope="module")
def clouds(tmp_path_factory):
    with deployment(tmp_path_factory, "clouds", "--backends", "aws,gcp,azure") as dep:
        yield dep


@pytest.fixture(scope="module")
def remote_auth(tmp_path_factory):
    with deployment(tmp_path_factory, "remote-auth", "--remote", "--auth") as dep:
        yield dep


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    with deployment(tmp_path_factory, "tls", "--tls") as dep:
        yield dep


def sdk(endpoint: str, **kw):
    from aistore.sdk import Client

    return Client(endpoint, **kw)


# ------------------------------------------------------------------------------------------------
# --backends aws,gcp,azure
# ------------------------------------------------------------------------------------------------

def test_backends_print_their_emulators(clouds):
    assert set(clouds.vars) == {"AIS_ENDPOINT", "AIS_LOCAL_S3_URL", "AIS_LOCAL_GCS_URL", "AIS_LOCAL_AZURE_URL"}
    assert clouds.vars["AIS_ENDPOINT"].startswith("http://127.0.0.1:")
    status = clouds.run("status")
    for name in ("s3", "gcs", "azure"):
        assert f"{name} emulator pid=" in status.stdout and "ready=no" not in status.stdout, status.stdout
    # the same options again (another order): the running deployment is reused
    again = clouds.run("start", "--backends", "azure,gcp,aws")
    assert again.stdout.splitlines()[0] == f"AIS_ENDPOINT={clouds.vars['AIS_ENDPOINT']}"
    assert "already running and healthy" in again.stderr


class Emulator:
    """Direct access to one emulator, to check what AIS wrote and to seed what AIS must read cold."""

    def __init__(self, provider: str, url: str):
        self.provider, self.url = provider, url

    def put(self, bucket: str, name: str, data: bytes) -> None:
        if self.provider == "aws":
            self._s3().put_object(Bucket=bucket, Key=name, Body=data)
        elif self.provider == "gcp":
            req = urllib.request.Request(f"{self.url}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}",
                                         data=data, method="POST")
            urllib.request.urlopen(req, timeout=10).read()
        else:
            self._az().get_blob_client(bucket, name).upload_blob(data, overwrite=True)

    def get(self, bucket: str, name: str) -> bytes:
        if self.provider == "aws":
            return self._s3().get_object(Bucket=bucket, Key=name)["Body"].read()
        if self.provider == "gcp":
            quoted = urllib.request.quote(name, safe="")
            return urllib.request.urlopen(f"{self.url}/storage/v1/b/{bucket}/o/{quoted}?alt=media", timeout=10).read()
        return self._az().get_blob_client(bucket, name).download_blob().readall()

    def _s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="ais-local", aws_secret_access_key="ais-local")

    def _az(self):
        from azure.storage.blob import BlobServiceClient

        from ais_local.emulators import AZURITE_ACCOUNT, AZURITE_KEY  # tools/ais_local, installed by make install

        return BlobServiceClient(account_url=self.url,
                                 credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY})


@pytest.mark.parametrize("scheme,provider,var", [("s3", "aws", "AIS_LOCAL_S3_URL"),
                                                  ("gs", "gcp", "AIS_LOCAL_GCS_URL"),
                                                  ("az", "azure", "AIS_LOCAL_AZURE_URL")])
def test_cloud_bucket_put_get_list_through_ais(clouds, scheme, provider, var):
    name = f"opt-{scheme}-{uuid.uuid4().hex[:8]}"
    clouds.run("cloud-bucket", f"{scheme}://{name}")
    emu = Emulator(provider, clouds.vars[var])
    bck = sdk(clouds.vars["AIS_ENDPOINT"]).bucket(name, provider=provider)

    # written through AIS: lands in the emulator; read back whole and by range
    data = os.urandom(256 * 1024 + 17)
    bck.object("dir/through-ais.bin").get_writer().put_content(data)
    assert emu.get(name, "dir/through-ais.bin") == data
    assert bck.object("dir/through-ais.bin").get_reader().read_all() == data
    assert bck.object("dir/through-ais.bin").get_reader(byte_range="bytes=1000-1999").read_all() == data[1000:2000]

    # written into the emulator: AIS reads it cold, then warm, and lists both
    seeded = os.urandom(70_001)
    emu.put(name, "dir/seeded.bin", seeded)
    assert bck.object("dir/seeded.bin").get_reader().read_all() == seeded
    assert bck.object("dir/seeded.bin").get_reader().read_all() == seeded
    assert sorted(e.name for e in bck.list_all_objects_iter(prefix="dir/")) == ["dir/seeded.bin", "dir/through-ais.bin"]


# ------------------------------------------------------------------------------------------------
# --remote --auth
# ------------------------------------------------------------------------------------------------

def test_remote_and_auth_print_their_variables(remote_auth):
    v = remote_auth.vars
    assert set(v) == {"AIS_ENDPOINT", "AIS_AUTHN_URL", "AIS_AUTHN_TOKEN", "AIS_REMOTE_ALIAS", "AIS_REMOTE_UUID",
                      "AIS_REMOTE_ENDPOINT"}
    assert v["AIS_REMOTE_ALIAS"] == "remote" and v["AIS_REMOTE_UUID"]
    assert v["AIS_REMOTE_ENDPOINT"] != v["AIS_ENDPOINT"]
    assert remote_auth.run("status").returncode == 0


def test_auth_requires_the_printed_token(remote_auth, monkeypatch):
    from aistore.sdk.errors import AISError

    monkeypatch.delenv("AIS_AUTHN_TOKEN", raising=False)
    ep, token = remote_auth.vars["AIS_ENDPOINT"], remote_auth.vars["AIS_AUTHN_TOKEN"]
    name = f"opt-auth-{uuid.uuid4().hex[:8]}"
    bck = sdk(ep, token=token).bucket(name).create(exist_ok=True)
    bck.object("o").get_writer().put_content(b"with a token")
    assert bck.object("o").get_reader().read_all() == b"with a token"
    with pytest.raises(AISError) as err:
        sdk(ep).bucket(name).object("o").get_reader().read_all()
    assert err.value.status_code == 401
    # the token goes to stdout only: not in start's log lines, not in any file of the state folder
    assert token not in remote_auth.start_stderr
    for f in remote_auth.state.rglob("*"):
        if f.is_file():
            assert token.encode() not in f.read_bytes(), f


def test_remote_cluster_by_alias_and_uuid(remote_auth, monkeypatch):
    from aistore.sdk.types import Namespace

    monkeypatch.delenv("AIS_AUTHN_TOKEN", raising=False)
    v = remote_auth.vars
    main = sdk(v["AIS_ENDPOINT"], token=v["AIS_AUTHN_TOKEN"])
    remote = sdk(v["AIS_REMOTE_ENDPOINT"])  # plain http, no auth
    name = f"opt-rem-{uuid.uuid4().hex[:8]}"
    remote.bucket(name).create()
    seed = os.urandom(50_000)
    remote.bucket(name).object("seed").get_writer().put_content(seed)

    by_alias = main.bucket(name, namespace=Namespace(uuid=v["AIS_REMOTE_ALIAS"]))
    by_uuid = main.bucket(name, namespace=Namespace(uuid=v["AIS_REMOTE_UUID"]))
    data = os.urandom(123_457)
    by_alias.object("written").get_writer().put_content(data)
    assert remote.bucket(name).object("written").get_reader().read_all() == data
    for bck in (by_alias, by_uuid):
        assert bck.object("seed").get_reader().read_all() == seed
        assert bck.object("written").get_reader(byte_range="bytes=5-9").read_all() == data[5:10]
        assert sorted(e.name for e in bck.list_all_objects_iter()) == ["seed", "written"]
    # the REST form of the alias (what ais://@remote/BUCKET maps to)
    req = urllib.request.Request(f"{v['AIS_ENDPOINT']}/v1/objects/{name}/seed?provider=ais&namespace=%40remote%23",
                                 headers={"Authorization": f"Bearer {v['AIS_AUTHN_TOKEN']}"})
    assert urllib.request.urlopen(req, timeout=10).read() == seed


# ------------------------------------------------------------------------------------------------
# --tls
# ------------------------------------------------------------------------------------------------

def test_tls_https_with_the_printed_ca(tls, monkeypatch):
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's CA: keep them out
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AIS_CLIENT_CA", "AIS_SKIP_VERIFY_CRT"):
        monkeypatch.delenv(var, raising=False)
    assert set(tls.vars) == {"AIS_ENDPOINT", "AIS_CLIENT_CA"}
    ep, ca = tls.vars["AIS_ENDPOINT"], tls.vars["AIS_CLIENT_CA"]
    assert ep.startswith("https://127.0.0.1:") and Path(ca).is_file()

    with urllib.request.urlopen(f"{ep}/v1/health", timeout=5, context=ssl.create_default_context(cafile=ca)) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(f"{ep}/v1/health", timeout=5, context=ssl.create_default_context())
    assert "certificate" in str(err.value).lower()

    bck = sdk(ep, ca_cert=ca).bucket(f"opt-tls-{uuid.uuid4().hex[:8]}").create(exist_ok=True)
    data = os.urandom(200_003)
    bck.object("o").get_writer().put_content(data)
    assert bck.object("o").get_reader().read_all() == data
    assert bck.object("o").get_reader(direct=True).read_all() == data


def test_restart_proxy_keeps_ports_and_data(tls, monkeypatch):
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    ep, ca = tls.vars["AIS_ENDPOINT"], tls.vars["AIS_CLIENT_CA"]
    bck = sdk(ep, ca_cert=ca).bucket(f"opt-px-{uuid.uuid4().hex[:8]}").create(exist_ok=True)
    bck.object("o").get_writer().put_content(b"before the restart")
    old = int((tls.state / "proxy.pid").read_text())
    tls.run("restart-proxy", "--down-seconds", "0")
    assert int((tls.state / "proxy.pid").read_text()) != old and not alive(old)
    assert tls.run("endpoint").stdout.strip() == ep
    assert sdk(ep, ca_cert=ca).bucket(bck.name).object("o").get_reader().read_all() == b"before the restart"


# ------------------------------------------------------------------------------------------------
# side by side; each stop removes only its own
# ------------------------------------------------------------------------------------------------

def test_stop_wipe_removes_only_its_own(clouds, remote_auth, tls):
    endpoints = {d.vars["AIS_ENDPOINT"] for d in (clouds, remote_auth, tls)}
    assert len(endpoints) == 3
    others = clouds.pids() + remote_auth.pids()
    mine = tls.pids()
    assert mine and not set(mine) & set(others)
    tls.run("stop", "--wipe")
    assert not tls.state.exists()
    assert not [p for p in mine if alive(p)]
    assert all(alive(p) for p in others)
    assert clouds.run("status").returncode == 0
    assert remote_auth.run("status").returncode == 0

