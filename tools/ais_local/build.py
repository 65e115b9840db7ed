"""Everything `start` needs on disk, built or installed on first use and cached under .cache/ais:

- aisnode: one binary per set of cloud backends (Go build tags), from tools/ais_local/aisnode-build;
- authn (AIS's authentication server), from the same module;
- fake-gcs-server, from its own tools module tools/ais_local/emulators-build (aisnode's dependencies
  never move);
- Azurite, from tools/ais_local/emulators-build/package-lock.json (npm ci);
- moto's server, boto3 and azure-storage-blob, into the repo's .venv (the `dev` extra lists them).

A cached binary is used as long as it exists: remove .cache/ais/bin to rebuild.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .common import BIN_DIR, CACHE, PACKAGE, REPO, die, find_tool, flock, log, run_quiet

AIS_BUILD_DIR = PACKAGE / "aisnode-build"
EMU_BUILD_DIR = PACKAGE / "emulators-build"
AIS_MODULE = "github.com/NVIDIA/aistore"
FAKE_GCS_PKG = "github.com/fsouza/fake-gcs-server"
NODE_DIR = CACHE / "node"  # npm prefix for Azurite
VENV = Path(os.environ.get("AIS_LOCAL_VENV") or (REPO / ".venv"))
BACKENDS = ("aws", "gcp", "azure")  # the tags this script can emulate (oci cannot be emulated)

# Python packages the emulators and `cloud-bucket` need; keep in step with pyproject's `dev` extra
VENV_PACKAGES = {
    "aws": [("moto", "moto[server]>=5.1"), ("boto3", "boto3")],
    "azure": [("azure.storage.blob", "azure-storage-blob>=12")],
}


def go():
    return find_tool("go", ("/usr/local/go/bin/go", os.path.expanduser("~/go/bin/go"), "/usr/lib/go/bin/go"),
                     "the Go toolchain is needed to build aisnode")


def aisnode_path(backends):
    """The cached aisnode for a set of backends: aisnode (none) or aisnode-aws-gcp (sorted tags)."""
    override = os.environ.get("AIS_LOCAL_AISNODE")
    if override and not backends:
        return Path(override)
    exact = BIN_DIR / "-".join(["aisnode", *sorted(backends)])
    if backends and not _ready(exact):
        # a cached binary built with more backends serves as well (unconfigured ones stay off)
        supersets = [p for p in BIN_DIR.glob("aisnode-*") if _ready(p) and not p.name.endswith(".tmp")
                     and set(backends) <= set(p.name.split("-")[1:])]
        if supersets:
            return min(supersets, key=lambda p: len(p.name))
    return exact


def _ready(path):
    return path.is_file() and os.access(path, os.X_OK)


def _go_build(out, pkg, module_dir, tags=(), what=None):
    """`go build -o out pkg` inside module_dir, under the shared build lock; no-op if out exists."""
    what = what or out.name
    if _ready(out):
        return out
    with flock(CACHE / "build.lock"):
        if _ready(out):
            return out
        if not (module_dir / "go.mod").is_file():
            die(f"missing build module {module_dir}/go.mod")
        BIN_DIR.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        cmd = [go(), "build", "-o", str(tmp)]
        if tags:
            cmd += ["-tags", " ".join(tags)]
        cmd.append(pkg)
        # written to a temporary name and renamed: a binary that exists is always complete
        env = dict(os.environ, GOFLAGS="-mod=mod")
        log(f"building {what}: (cd {module_dir} && GOFLAGS=-mod=mod {' '.join(cmd)})")
        log("this takes a few minutes the first time ...")
        t0 = time.time()
        rc = subprocess.call(cmd, cwd=module_dir, env=env, stdout=sys.stderr, stderr=sys.stderr,
                             stdin=subprocess.DEVNULL)
        if rc != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            die(f"`go build` of {what} failed (exit {rc})")
        tmp.rename(out)
        log(f"built {out} in {time.time() - t0:.0f}s")
        return out


def ensure_aisnode(backends=()):
    backends = sorted(backends)
    out = aisnode_path(backends)
    if not backends and os.environ.get("AIS_LOCAL_AISNODE"):
        if not _ready(out):
            die(f"AIS_LOCAL_AISNODE={out} does not exist / is not executable")
        return out
    return _go_build(out, f"{AIS_MODULE}/cmd/aisnode", AIS_BUILD_DIR, ("mono", *backends),
                     what=f"aisnode with backends {','.join(backends)}")


def ensure_authn():
    return _go_build(BIN_DIR / "authn", f"{AIS_MODULE}/cmd/authn", AIS_BUILD_DIR, what="authn")


def ensure_fake_gcs():
    return _go_build(BIN_DIR / "fake-gcs-server", FAKE_GCS_PKG, EMU_BUILD_DIR, what="fake-gcs-server")


def ensure_azurite():
    exe = NODE_DIR / "node_modules" / ".bin" / "azurite-blob"
    if _ready(exe):
        return exe
    with flock(CACHE / "build.lock"):
        if _ready(exe):
            return exe
        npm = find_tool("npm", hint="Node.js and npm are needed for Azurite (the azure emulator)")
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        for f in ("package.json", "package-lock.json"):
            shutil.copyfile(EMU_BUILD_DIR / f, NODE_DIR / f)
        log(f"installing Azurite into {NODE_DIR} (npm ci, pinned by {EMU_BUILD_DIR}/package-lock.json)")
        t0 = time.time()
        run_quiet([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], "npm ci (Azurite)",
                  cwd=NODE_DIR)
        if not _ready(exe):
            die(f"npm ci finished but {exe} is missing")
        log(f"installed Azurite in {time.time() - t0:.0f}s")
        return exe


def venv_python():
    py = VENV / "bin" / "python"
    if not _ready(py):
        die(f"no Python virtual environment at {VENV} (run `make install`, or set AIS_LOCAL_VENV)")
    return py


def ensure_venv_packages(backends):
    """Install what the emulators of `backends` need into the venv when it is missing."""
    need = [pair for b in sorted(backends) for pair in VENV_PACKAGES.get(b, [])]
    if not need:
        return
    py = venv_python()
    probe = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)"
    if subprocess.call([py, "-c", probe, *[m for m, _ in need]], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL) == 0:
        return
    specs = [s for _, s in need]
    with flock(CACHE / "build.lock"):
        log(f"installing {' '.join(specs)} into {VENV} (they are in the `dev` extra: `make install`)")
        run_quiet([py, "-m", "pip", "install", "-q", *specs], "pip install of the emulator packages")
