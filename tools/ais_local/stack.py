"""The whole local deployment of one state folder: the cluster, and with `start` options the cloud
emulators (--backends), the authn server (--auth), certificates (--tls) and a second cluster
attached as a remote AIS cluster (--remote).

  <state>/options.json        options it was started with, the aisnode binary, service ports
  <state>/emulators/NAME/     pid, log/ of each emulator (s3, gcs, azure)
  <state>/authn/              authn's config, secrets (0600), pid, log/
  <state>/tls/                ca.crt, node.crt, node.key
  <state>/remote/             the remote cluster's own state folder (1 proxy + 1 target)
"""

import json
import os
import time
from pathlib import Path

from . import build, emulators, tls
from .authn import Authn
from .cluster import Cluster
from .common import (
    Fatal,
    PortPicker,
    clean_env,
    flock,
    log,
    read_json,
    redirect_location,
    start_timeout,
    tail_logs,
    wait_until,
    write_json,
)

DEFAULT_OPTIONS = {"backends": [], "remote": False, "auth": False, "tls": False}
REMOTE_NTARGETS = 1
REMOTE_ALIAS = "remote"
PROBE_BUCKET = "ais-local-probe"


def normalize(opts):
    out = dict(DEFAULT_OPTIONS)
    out.update({k: v for k, v in (opts or {}).items() if k in DEFAULT_OPTIONS})
    out["backends"] = sorted(set(out["backends"]))
    return out


def describe(opts):
    parts = []
    if opts["backends"]:
        parts.append("--backends " + ",".join(opts["backends"]))
    parts += [f"--{k}" for k in ("remote", "auth", "tls") if opts[k]]
    return " ".join(parts) or "(no options)"


def prepare(opts):
    """Build and install everything `opts` needs (before the state lock: builds lock on their own)."""
    binary = build.ensure_aisnode(opts["backends"])
    if opts["auth"]:
        build.ensure_authn()
    for b in opts["backends"]:
        emulators.EMULATORS[b].prepare()
    return binary


class Stack:
    def __init__(self, state):
        self.state = Path(state)
        self.load()

    # ------------------------------------------------------------------------------------------
    # what is (or was last) started here
    # ------------------------------------------------------------------------------------------

    def load(self):
        saved = read_json(self.state / "options.json") or {}
        self.opts = normalize(saved.get("options"))
        self.services = saved.get("services") or {}  # service name -> port
        self.remote_alias = REMOTE_ALIAS
        binary = Path(saved["binary"]) if saved.get("binary") else build.aisnode_path(())
        self.authn = Authn(self.state)
        self._token = None
        https = self.opts["tls"]
        self.cluster = Cluster(self.state, 2, "", binary, "https" if https else "http",
                               ca=self.ca() if https else None,
                               token=self.token if self.opts["auth"] else None)
        self.remote = Cluster(self.state / "remote", REMOTE_NTARGETS, "remote ", binary)

    def save(self, opts, binary, services):
        write_json(self.state / "options.json", {"options": opts, "binary": str(binary),
                                                 "services": services})
        self.load()

    def lock(self):
        # sibling of the state folder, so that wiping the folder does not drop the lock
        return flock(self.state.parent / (self.state.name + ".lock"))

    def ca(self):
        return tls.paths(self.state / "tls")["ca"]

    def token(self):
        if self._token is None and "authn" in self.services:
            self._token = self.authn.login(self.services["authn"], quiet=True)
        return self._token

    def emulator_services(self):
        return [(emu, emulators.service(self.state, emu)) for emu in emulators.EMULATORS.values()]

    def node_env(self):
        return emulators.node_env(clean_env(), self.opts["backends"], self.services)

    # ------------------------------------------------------------------------------------------
    # health
    # ------------------------------------------------------------------------------------------

    def problems(self):
        """What is not healthy, as a list of strings (empty: all healthy)."""
        out = []
        for b in self.opts["backends"]:
            emu = emulators.EMULATORS[b]
            svc = emulators.service(self.state, emu)
            port = self.services.get(emu.name)
            if not svc.pid():
                out.append(f"{emu.name} emulator not running")
            elif not emu.ready(port):
                out.append(f"{emu.name} emulator on :{port} does not answer")
        if self.opts["auth"]:
            if not self.authn.svc.pid():
                out.append("authn not running")
            elif not self.token():
                out.append("authn login failed")
        main_ok, why = self.cluster.healthy()
        if not main_ok:
            out.append(why)
        if self.opts["remote"]:
            ok, why = self.remote.healthy()
            if not ok:
                out.append("remote cluster: " + why)
            elif main_ok and not self.remote_info():
                out.append(f"remote cluster is not attached as {self.remote_alias!r}")
        return out

    def remote_info(self):
        """The main cluster's record of the attached remote cluster (alias, uuid, url) or None."""
        code, body = self.cluster.get(self.cluster.endpoint() + "/v1/cluster?what=remote", timeout=5)
        if code != 200:
            return None
        try:
            recs = json.loads(body).get("a") or []
        except (ValueError, AttributeError):
            return None
        for rec in recs:
            if rec.get("alias") == self.remote_alias and rec.get("uuid"):
                return rec
        return None

    # ------------------------------------------------------------------------------------------
    # start / stop
    # ------------------------------------------------------------------------------------------

    def env_lines(self):
        """The NAME=value lines `start` prints (stdout: never logged)."""
        lines = [f"AIS_ENDPOINT={self.cluster.endpoint()}"]
        if self.opts["auth"]:
            lines.append(f"AIS_AUTHN_URL={self.authn.url(self.services['authn'])}")
            lines.append(f"AIS_AUTHN_TOKEN={self.authn.login(self.services['authn'])}")
        if self.opts["tls"]:
            lines.append(f"AIS_CLIENT_CA={self.ca()}")
        if self.opts["remote"]:
            rec = self.remote_info() or {}
            lines.append(f"AIS_REMOTE_ALIAS={self.remote_alias}")
            lines.append(f"AIS_REMOTE_UUID={rec.get('uuid', '')}")
            lines.append(f"AIS_REMOTE_ENDPOINT={self.remote.endpoint()}")
        for b in self.opts["backends"]:
            emu = emulators.EMULATORS[b]
            url = emu.account_url(self.services[emu.name]) if b == "azure" else emu.url(self.services[emu.name])
            lines.append(f"AIS_LOCAL_{emu.name.upper()}_URL={url}")
        return lines

    def anything_running(self):
        return bool(self.cluster.alive_nodes() or self.remote.alive_nodes() or self.authn.svc.pid()
                    or any(svc.pid() for _, svc in self.emulator_services()))

    def stop_all(self):
        self.cluster.stop_nodes()
        self.remote.stop_nodes()
        for _, svc in self.emulator_services():
            svc.stop()
        self.authn.svc.stop()

    def wipe(self):
        self.cluster.wipe()  # the whole state folder, the remote's and the services' included

    def start(self, opts, binary):
        """Start everything from scratch (the caller holds the lock); True when all is ready."""
        timeout = start_timeout()
        t0 = time.time()
        self.stop_all()
        self.wipe()
        picker = PortPicker()
        try:
            want_proxy = os.environ.get("AIS_LOCAL_PORT")
            if want_proxy:
                picker.reserve(int(want_proxy), "AIS_LOCAL_PORT")
            ports = self.cluster.pick_ports(picker, int(want_proxy) if want_proxy else None)
            rports = self.remote.pick_ports(picker) if opts["remote"] else None
            services = {emulators.EMULATORS[b].name: picker.pick() for b in opts["backends"]}
            if opts["auth"]:
                services["authn"] = picker.pick()
        finally:
            picker.close()
        self.state.mkdir(parents=True, exist_ok=True)
        self.save(opts, binary, services)

        extra = {"backend": {b: {} for b in opts["backends"]}}
        if "aws" in opts["backends"]:
            extra["features"] = "16384"  # S3-Use-Path-Style: must be there before a bucket is touched
        if opts["auth"]:
            key = self.authn.configure(services["authn"])
            extra["auth"] = {"client_auth_required": True, "signature": {"key": key, "method": "HMAC"}}
        if opts["tls"]:
            certs = tls.make_certs(self.state / "tls")
            extra["net"] = {"http": {"use_https": True, "server_crt": str(certs["crt"]),
                                     "server_key": str(certs["key"]), "skip_verify": True}}
        self.cluster.write_state(ports, extra)
        if rports:
            self.remote.write_state(rports)

        try:
            for b in opts["backends"]:
                emu = emulators.EMULATORS[b]
                emu.start(emulators.service(self.state, emu), services[emu.name], timeout)
            if opts["auth"]:
                self.authn.start(services["authn"], timeout)
            env = self.node_env()
            t1 = time.time()
            rprocs = self.remote.launch_all(rports, clean_env()) if rports else {}
            procs = self.cluster.launch_all(ports, env)
            ok, why = self.cluster.wait_ready(ports, procs, t1, timeout)
            if ok and rports:
                ok, why = self.remote.wait_ready(rports, rprocs, t1, timeout)
                if ok:
                    ok, why = self.attach_remote()
        except Exception as e:  # noqa: BLE001 - report, clean up, and re-raise below
            ok, why, err = False, str(e), e
        else:
            err = None
        if not ok:
            log(f"did not become ready: {why}")
            # stop first: aisnode flushes its log files on exit (otherwise every few seconds)
            self.stop_all()
            self.cluster.tail_logs()
            if opts["remote"]:
                self.remote.tail_logs()
            tail_logs([(svc.name, svc.dir / "log") for _, svc in self.emulator_services()]
                      + [("authn", self.authn.dir / "log")])
            log(f"did not become ready: {why} (logs above; state kept in {self.state})")
            if err is not None and not isinstance(err, Fatal):
                raise err
            return False
        ep = self.cluster.endpoint(ports)
        (self.state / "endpoint").write_text(ep + "\n")
        log(f"ready in {time.time() - t0:.1f}s at {ep}" + (f" ({describe(opts)})" if opts != DEFAULT_OPTIONS else ""))
        return True

    def attach_remote(self):
        """Attach the remote cluster at run time (an alias in the initial config never resolves in
        AIS 5.0: the remais version stays 0) and wait until the primary resolves the alias."""
        url = self.remote.endpoint()
        code, body = self.cluster.get(self.cluster.endpoint() + "/v1/cluster/attach?what=remote",
                                      method="PUT", timeout=30,
                                      headers={"Ais-Remote-Ais-Alias": self.remote_alias,
                                               "Ais-Remote-Ais-Url": url})
        if code != 200:
            return False, f"attaching the remote cluster failed: {code} {body[:300]!r}"
        ok, why = self.wait_alias()
        if ok:
            log(f"remote cluster {url} attached as {self.remote_alias!r}")
        return ok, why

    def wait_alias(self):
        """Wait until the primary resolves the remote alias (after an attach or its own restart)."""
        rec = wait_until(self.remote_info, 30, "the attached remote cluster in /v1/cluster?what=remote")
        uuid = rec["uuid"]
        # The primary learns the alias asynchronously, 2-10 s after the attach; a bucket touched by
        # alias before that is added under the uuid while its requests still carry the alias, and
        # then fails ("remote bucket ais://@remote/B does not exist") for a long while. So: wait
        # until the primary redirects a request for a probe bucket with the uuid, then remove it.
        probe = f"{self.cluster.endpoint()}/v1/objects/{PROBE_BUCKET}/x?provider=ais&namespace=%40"
        code, body = self.remote.get(f"{self.remote.endpoint()}/v1/buckets/{PROBE_BUCKET}?provider=ais",
                                     method="POST", body={"action": "create-bck"}, timeout=30)
        if code != 200:
            return False, f"creating the probe bucket on the remote cluster failed: {code} {body[:300]!r}"
        ca, tok = self.cluster.ca, self.cluster._token()
        wait_until(lambda: f"%40{uuid}" in (redirect_location(probe + self.remote_alias + "%23", token=tok,
                                                                 ca=ca) or ""),
                   60, f"the primary resolving the remote alias {self.remote_alias!r}", interval=0.5)
        code, body = self.cluster.get(f"{self.cluster.endpoint()}/v1/buckets/{PROBE_BUCKET}?provider=ais"
                                      f"&namespace=%40{uuid}%23", method="DELETE",
                                      body={"action": "destroy-bck"}, timeout=30)
        if code != 200:
            return False, f"removing the probe bucket failed: {code} {body[:300]!r}"
        log(f"the primary resolves {self.remote_alias!r} to uuid {uuid}")
        return True, "ok"

    # ------------------------------------------------------------------------------------------
    # status
    # ------------------------------------------------------------------------------------------

    def status_lines(self):
        lines = [f"options: {describe(self.opts)}"]
        for label, cl in (("", self.cluster), ("remote ", self.remote if self.opts["remote"] else None)):
            ports = cl.read_ports() if cl else None
            if not ports:
                continue
            for n in cl.nodes:
                pid = cl.read_pid(n)
                alive = cl.is_our_node(pid, n)
                port = ports[n]["port"]
                code = cl.node_health(n, ports) if alive else None
                lines.append(f"{label}{n:6s} pid={pid or '-':<8} alive={'yes' if alive else 'no ':3s} "
                             f"public=:{port} health={code if code is not None else '-'}")
        for emu, svc in self.emulator_services():
            if emu.backend in self.opts["backends"]:
                port = self.services.get(emu.name)
                pid = svc.pid()
                ready = bool(pid) and emu.ready(port)
                lines.append(f"{emu.name} emulator pid={pid or '-'} url={emu.url(port)} "
                             f"ready={'yes' if ready else 'no'}")
        if self.opts["auth"]:
            pid = self.authn.svc.pid()
            lines.append(f"authn pid={pid or '-'} url={self.authn.url(self.services.get('authn'))} "
                         f"login={'ok' if pid and self.token() else 'failed'}")
        if self.opts["tls"]:
            lines.append(f"tls: CA {self.ca()}")
        if self.opts["remote"]:
            rec = self.remote_info()
            lines.append(f"remote: alias {self.remote_alias!r} -> "
                         + (f"uuid {rec['uuid']} url {rec.get('url')}" if rec else "NOT attached"))
        return lines


def start_or_reuse(state, opts):
    """`start`: reuse a healthy deployment with the same options, else start over. Returns the Stack
    when ready, None when not."""
    opts = normalize(opts)
    binary = prepare(opts)
    stack = Stack(state)
    with stack.lock():
        stack.load()  # a state without options.json (an older ais-local's) has the default options
        if stack.opts == opts and stack.cluster.read_ports():
            problems = stack.problems()
            if not problems:
                log(f"local cluster already running and healthy at {stack.cluster.endpoint()}")
                (stack.state / "endpoint").write_text(stack.cluster.endpoint() + "\n")
                return stack
            log(f"existing local cluster is not healthy ({'; '.join(problems)}): starting over")
        elif stack.anything_running():
            log(f"the running local cluster has other options ({describe(stack.opts)}); "
                f"restarting it from scratch with {describe(opts)} (its data is wiped)")
        return stack if stack.start(opts, binary) else None
