"""Local cloud emulators on 127.0.0.1, one per AIS backend, and the aisnode environment that points
the backend at it (see the notes' "Backends, remote clusters, auth and TLS"):

  aws   -> moto's server (PyPI moto[server])          S3_ENDPOINT + fake AWS credentials
  gcp   -> fake-gcs-server (Go, tools/ais_local/emulators-build) STORAGE_EMULATOR_HOST
  azure -> Azurite's blob service (npm azurite)       AZURE_STORAGE_ACCOUNT/KEY + AIS_AZURE_URL
"""

import subprocess
import urllib.parse

from . import build
from .common import HOST, PACKAGE, Service, clean_env, die, http, log, wait_until

# Azurite's published development account (not a secret)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
VENV_BUCKET = PACKAGE / "venv_bucket.py"


class Emulator:
    backend = ""   # AIS backend (build tag and config key)
    name = ""      # service name (state folder, status, printed variable)
    scheme = ""    # URL scheme of its buckets in AIS
    drop_env = ()  # prefixes of inherited variables aisnode must not see with this backend

    def prepare(self):
        """Build or install what it needs (before any lock is taken)."""

    def command(self, port, workdir):
        raise NotImplementedError

    def url(self, port):
        return f"http://{HOST}:{port}"

    def ready(self, port):
        return http(self.url(port) + "/", timeout=1)[0] is not None

    def node_env(self, port):
        raise NotImplementedError

    def create_bucket(self, port, name):
        raise NotImplementedError

    def start(self, svc, port, timeout):
        env = clean_env()
        p = svc.start(self.command(port, svc.dir), env)
        wait_until(lambda: self.ready(port), timeout, f"{self.name} emulator on :{port}", proc=p)
        log(f"{self.name} emulator ready at {self.url(port)}")
        return p


def _venv_bucket(kind, endpoint, name, env=None):
    """Create a bucket with the official client library inside the venv (boto3, azure-storage-blob)."""
    cmd = [str(build.venv_python()), str(VENV_BUCKET), kind, endpoint, name]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                          env=dict(clean_env(), **(env or {})))
    if proc.returncode != 0:
        die(f"creating {kind} bucket {name!r} at {endpoint} failed:\n{proc.stderr[-2000:]}")


class S3(Emulator):
    backend, name, scheme = "aws", "s3", "s3"
    drop_env = ("AWS_",)  # AWS_CA_BUNDLE breaks every S3 call of aisnode; a profile could redirect it

    def prepare(self):
        build.ensure_venv_packages([self.backend])

    def command(self, port, workdir):
        return [build.VENV / "bin" / "moto_server", "-H", HOST, "-p", str(port)]

    def node_env(self, port):
        return {
            "S3_ENDPOINT": self.url(port),
            "AWS_ACCESS_KEY_ID": "ais-local",
            "AWS_SECRET_ACCESS_KEY": "ais-local",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # never probe the instance metadata address
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }

    def create_bucket(self, port, name):
        _venv_bucket("s3", self.url(port), name)


class GCS(Emulator):
    backend, name, scheme = "gcp", "gcs", "gs"
    drop_env = ("GOOGLE_", "GCLOUD_")  # credentials or a project id would make it look for Google

    def prepare(self):
        build.ensure_fake_gcs()

    def command(self, port, workdir):
        # -public-host must equal the Host header clients send, else XML-API reads mis-route
        return [build.BIN_DIR / "fake-gcs-server", "-scheme", "http", "-host", HOST, "-port", str(port),
                "-backend", "memory", "-public-host", f"{HOST}:{port}",
                "-external-url", self.url(port), "-log-level", "warn"]

    def ready(self, port):
        return http(self.url(port) + "/storage/v1/b", timeout=1)[0] == 200

    def node_env(self, port):
        return {"STORAGE_EMULATOR_HOST": self.url(port)}

    def create_bucket(self, port, name):
        code, body = http(self.url(port) + "/storage/v1/b", method="POST", body={"name": name}, timeout=10)
        if code == 409:
            return
        if code != 200:
            die(f"creating gs bucket {name!r} at {self.url(port)} failed: {code} {body[:500]!r}")


class Azure(Emulator):
    backend, name, scheme = "azure", "azure", "az"
    drop_env = ("AZURE_",)

    def prepare(self):
        build.ensure_azurite()
        build.ensure_venv_packages([self.backend])

    def command(self, port, workdir):
        exe = build.NODE_DIR / "node_modules" / ".bin" / "azurite-blob"
        # (--location and --inMemoryPersistence exclude each other; debug logs would go there)
        return [exe, "--blobHost", HOST, "--blobPort", str(port), "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry"]

    def account_url(self, port):
        return f"{self.url(port)}/{AZURITE_ACCOUNT}"

    def node_env(self, port):
        # AIS_AZURE_URL is an AIS_* variable: passed on purpose (the others are dropped)
        return {"AZURE_STORAGE_ACCOUNT": AZURITE_ACCOUNT, "AZURE_STORAGE_KEY": AZURITE_KEY,
                "AIS_AZURE_URL": self.account_url(port)}

    def create_bucket(self, port, name):
        _venv_bucket("az", self.account_url(port), name, {"AZURE_STORAGE_KEY": AZURITE_KEY})


EMULATORS = {e.backend: e for e in (S3(), GCS(), Azure())}
BY_SCHEME = {e.scheme: e for e in EMULATORS.values()}


def parse_cloud_url(url):
    """s3://NAME (or gs://, az://) -> (emulator, bucket name)."""
    u = urllib.parse.urlparse(url)
    emu = BY_SCHEME.get(u.scheme)
    name = u.netloc
    if emu is None or not name or u.path.strip("/"):
        die(f"expected s3://BUCKET, gs://BUCKET or az://BUCKET, got {url!r}")
    return emu, name


def node_env(base, backends, ports):
    """aisnode's environment for the enabled backends (ports: service name -> port)."""
    env = dict(base)
    for b in backends:
        emu = EMULATORS[b]
        for k in [k for k in env if k.startswith(emu.drop_env)]:
            del env[k]
        env.update(emu.node_env(ports[emu.name]))
    return env


def service(state, emu):
    return Service(f"{emu.name} emulator", state / "emulators" / emu.name)
