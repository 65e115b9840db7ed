"""Shared pieces of the local-cluster launcher (scripts/ais-local): paths, logging, locks, HTTP, ports
and the processes it starts.

Standard library only.
"""

import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
CACHE = REPO / ".cache" / "ais"
BIN_DIR = CACHE / "bin"
PACKAGE = Path(__file__).resolve().parent  # tools/ais_local: the build folders and venv_bucket.py
HOST = "127.0.0.1"
STOP_GRACE_S = 20.0

# environment variables no started process may inherit (aisnode's K8s detection)
K8S_VARS = {
    "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "MY_POD", "MY_NODE", "K8S_NS",
    "MY_SERVICE", "HOST_NETWORK", "ENABLE_EXTERNAL_ACCESS",
}


def log(*args):
    print("[ais-local]", *args, file=sys.stderr, flush=True)


class Fatal(Exception):
    """A clear, final error: printed as `error: ...` and exit code 1."""


def die(msg):
    raise Fatal(msg)


def env_float(name, default):
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        die(f"{name} must be a number of seconds")


def start_timeout():
    return env_float("AIS_LOCAL_START_TIMEOUT", 120)


@contextmanager
def flock(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_json(path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def write_json(path, obj, mode=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is not None:
        # create with the final mode so a secret is never readable by others, not even briefly
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(obj, indent=2) + "\n")
    else:
        path.write_text(json.dumps(obj, indent=2) + "\n")


def run_quiet(cmd, what, **kw):
    """Run a helper command; its output goes to our stderr only when it fails (then we die)."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        die(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}")


# ----------------------------------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------------------------------

def ssl_context(ca_file):
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file else None


def http(url, method="GET", body=None, headers=None, token=None, ca=None, timeout=2.0):
    """(status, body bytes) or (None, error string). `ca`: CA file for https; `token`: bearer token."""
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=body, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl_context(ca)) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        try:
            data = e.read()
        except Exception:  # noqa: BLE001
            data = b""
        return e.code, data
    except Exception as e:  # noqa: BLE001 - connection refused, timeouts, TLS errors, ...
        return None, str(e)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def redirect_location(url, method="HEAD", token=None, ca=None, timeout=5.0):
    """Where AIS redirects this request to (its Location header), or None."""
    req = urllib.request.Request(url, method=method,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=ssl_context(ca)))
    try:
        with opener.open(req, timeout=timeout):
            return None
    except urllib.error.HTTPError as e:
        return e.headers.get("Location")
    except Exception:  # noqa: BLE001
        return None


def wait_until(check, timeout, what, proc=None, interval=0.2):
    """Poll check() until it returns a truthy value; die after `timeout` s or when `proc` exits."""
    t0 = time.time()
    while True:
        got = check()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            die(f"{what}: the process exited with code {proc.returncode}")
        if time.time() - t0 > timeout:
            die(f"{what}: not ready after {timeout:.0f}s")
        time.sleep(interval)


# ----------------------------------------------------------------------------------------------
# ports
# ----------------------------------------------------------------------------------------------

def _bind(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, port))
        return s
    except OSError:
        s.close()
        return None


class PortPicker:
    """Distinct free ports on HOST: from AIS_LOCAL_PORT_BASE upwards when it is set, otherwise
    picked by the kernel. Each socket stays bound until close(), so no two picks collide."""

    def __init__(self):
        base = os.environ.get("AIS_LOCAL_PORT_BASE")
        self.next = int(base) if base else None
        self.held = []
        self.reserved = set()

    def reserve(self, port, what):
        s = _bind(port)
        if s is None:
            die(f"{what}={port}: port is busy on {HOST}")
        self.held.append(s)
        self.reserved.add(port)
        return port

    def pick(self):
        if self.next is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            self.held.append(s)
            return s.getsockname()[1]
        while self.next < 65535:
            p, self.next = self.next, self.next + 1
            if p in self.reserved:
                continue
            s = _bind(p)
            if s is not None:
                self.held.append(s)
                return p
        die("AIS_LOCAL_PORT_BASE: ran out of ports")

    def close(self):
        for s in self.held:
            s.close()
        self.held = []


# ----------------------------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------------------------

def proc_stat(pid):
    """(state letter, start time in clock ticks) of a live pid, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[0], fields[19]


def proc_argv(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def proc_running(pid):
    st = proc_stat(pid) if pid else None
    return st is not None and st[0] not in ("Z", "X")


def reap():
    """Reap our own exited children (only those this process started)."""
    try:
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
    except ChildProcessError:
        pass


def send_signal(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def clean_env(drop_ais=True):
    """Our environment without the K8s variables (and, by default, without any AIS_* variable)."""
    return {k: v for k, v in os.environ.items()
            if k not in K8S_VARS and not (drop_ais and k.startswith("AIS_"))}


def spawn(cmd, cwd, env, logdir, stamp_name=None):
    """Start `cmd` in its own session, output appended to logdir/{stdout,stderr}.log."""
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    with open(logdir / "stdout.log", "ab") as out, open(logdir / "stderr.log", "ab") as err:
        stamp = f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(map(str, cmd))}\n".encode()
        for f in (out, err):
            f.write(stamp)
            f.flush()
        return subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True, close_fds=True)


class Service:
    """A helper process (emulator, authn) started by us: <dir>/pid holds "PID STARTTIME", so that
    stop() signals exactly that process (and the process group it leads), never a reused pid."""

    def __init__(self, name, directory):
        self.name = name
        self.dir = Path(directory)
        self.pidfile = self.dir / "pid"

    def pid(self):
        """The pid when our process is alive, else None."""
        try:
            pid, start = self.pidfile.read_text().split()
            pid = int(pid)
        except (OSError, ValueError):
            return None
        st = proc_stat(pid)
        if st is None or st[0] in ("Z", "X") or st[1] != start:
            return None
        return pid

    def start(self, cmd, env, cwd=None):
        p = spawn(cmd, cwd or self.dir, env, self.dir / "log")
        st = proc_stat(p.pid)
        self.pidfile.write_text(f"{p.pid} {st[1] if st else 0}\n")
        log(f"started {self.name} pid {p.pid}: {' '.join(map(str, cmd))}")
        return p

    def stop(self, grace=10.0):
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return
        log(f"stopping {self.name} (pid {pid})")
        group = os.getpgid(pid) == pid  # we started it as a session leader
        kill = (lambda s: os.killpg(pid, s)) if group else (lambda s: os.kill(pid, s))
        try:
            kill(signal.SIGTERM)
            deadline = time.time() + grace
            while self.pid() and time.time() < deadline:
                reap()
                time.sleep(0.1)
            if self.pid():
                log(f"{self.name} (pid {pid}) still running after {grace:.0f}s: SIGKILL")
                kill(signal.SIGKILL)
                while self.pid() and time.time() < deadline + 5:
                    reap()
                    time.sleep(0.1)
        except ProcessLookupError:
            pass
        self.pidfile.unlink(missing_ok=True)


def tail_logs(dirs, n=60):
    """Print the last n lines of every log file under the given log folders to stderr."""
    for label, logd in dirs:
        logd = Path(logd)
        if not logd.is_dir():
            continue
        for f in sorted(x for x in logd.iterdir() if x.is_file() and not x.is_symlink()):
            try:
                lines = f.read_text(errors="replace").splitlines()
            except OSError:
                continue
            if not lines:
                continue
            print(f"----- {label}: {f} (last {min(n, len(lines))} of {len(lines)} lines) -----",
                  file=sys.stderr)
            for line in lines[-n:]:
                print(line, file=sys.stderr)
    sys.stderr.flush()


def find_tool(name, candidates=(), hint=""):
    path = shutil.which(name)
    if path:
        return path
    for cand in candidates:
        if os.access(cand, os.X_OK):
            return cand
    die(f"`{name}` is not on PATH{': ' + hint if hint else ''}")
