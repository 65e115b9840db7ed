"""One local AIS cluster (1 proxy + N targets, testing mountpaths) in a state folder:

  <state>/{proxy,t1,...}/{conf,log,data}, <state>/{proxy,t1,...}.pid, <state>/ports.json, <state>/endpoint

A node is ours when its pid from the pid file runs aisnode with -local_config=<that node's config>.
"""

import json
import os
import shutil
import signal
import time

from .common import (
    HOST,
    STOP_GRACE_S,
    http,
    log,
    proc_argv,
    proc_running,
    read_json,
    reap,
    send_signal,
    spawn,
    tail_logs,
    write_json,
)


def merge(base, extra):
    """Deep-merge dict `extra` into dict `base` (in place); return base."""
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


def ais_pct_used(path):
    """disk usage percent the way aisnode computes it: (blocks - bavail) / blocks."""
    st = os.statvfs(path)
    if not st.f_blocks:
        return 0
    return (st.f_blocks - st.f_bavail) * 100 // st.f_blocks


def space_conf(path):
    pct = ais_pct_used(path)
    # AIS defaults: 65/75/90/95. Note: usage counts reserved blocks (bavail, not bfree) so a
    # half-empty disk can already look 70% full to aisnode. Above `highwm` the target raises
    # alerts/cleanup, above `out_of_space` writes are refused: keep both above current usage.
    cleanup, low, high, oos = 65, 75, 90, 95
    if pct + 10 > high:
        high = min(97, pct + 10)
        oos = min(99, max(oos, high + 2))
        low = min(high - 1, max(low, pct + 5))
        cleanup = min(low - 1, max(cleanup, pct + 3))
    elif pct + 5 > low:
        low = pct + 5
        cleanup = min(low - 1, max(cleanup, pct + 3))
    if pct >= oos:
        log(f"warning: disk at {path} is {pct}% used (as aisnode counts it); writes may be refused")
    return pct, {
        "cleanupwm": cleanup,
        "lowwm": low,
        "highwm": high,
        "out_of_space": oos,
        "batch_size": 32768,
        "dont_cleanup_time": "120m",
    }


class Cluster:
    def __init__(self, state, ntargets=2, label="", binary=None, scheme="http", ca=None, token=None):
        self.state = state
        self.ntargets = ntargets
        self.nodes = ["proxy"] + [f"t{i}" for i in range(1, ntargets + 1)]  # == folder names
        self.label = label      # prefix in log lines ("remote " for the attached cluster)
        self.binary = binary    # the aisnode it runs
        self.scheme = scheme    # http or https
        self.ca = ca            # CA file for https
        self.token = token      # callable returning a bearer token (or None) for --auth

    # ------------------------------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------------------------------

    def node_dir(self, name):
        return self.state / name

    def local_conf_path(self, name):
        return self.node_dir(name) / "conf" / "ais_local.json"

    def pid_path(self, name):
        return self.state / f"{name}.pid"

    def read_pid(self, name):
        try:
            return int(self.pid_path(name).read_text().strip())
        except (OSError, ValueError):
            return None

    def read_ports(self):
        return read_json(self.state / "ports.json")

    def url(self, port):
        return f"{self.scheme}://{HOST}:{port}"

    def endpoint(self, ports=None):
        ports = ports or self.read_ports()
        return self.url(ports["proxy"]["port"]) if ports else None

    def _token(self):
        return self.token() if self.token else None

    def get(self, url, timeout=2.0, **kw):
        return http(url, token=self._token(), ca=self.ca, timeout=timeout, **kw)

    # ------------------------------------------------------------------------------------------
    # processes
    # ------------------------------------------------------------------------------------------

    def is_our_node(self, pid, name):
        """pid is alive (not a zombie) and is the aisnode we started for `name`."""
        if not proc_running(pid):
            return False
        argv = proc_argv(pid)
        exe = os.path.basename(argv[0]) if argv else b""
        if not (exe.startswith(b"aisnode") or (self.binary and exe == self.binary.name.encode())):
            return False
        return ("-local_config=" + str(self.local_conf_path(name))).encode() in argv

    def alive_nodes(self):
        return {n: self.read_pid(n) for n in self.nodes if self.is_our_node(self.read_pid(n), n)}

    def launch(self, name, ports, env, rejoin=False):
        """Start node ``name``. ``rejoin``: the cluster already runs (a node started again after a kill).

        A primary started again with ``rejoin`` takes ``-skip_startup``: it serves at once with the cluster
        map it saved, instead of waiting for its targets to register again and then for ``startup_time / 4 x
        4`` of quiet (~12 s more with the 30 s minimum); the targets, still running, keep it current.
        """
        nd = self.node_dir(name)
        role = "proxy" if name == "proxy" else "target"
        cmd = [str(self.binary), f"-role={role}", f"-config={nd / 'conf' / 'ais.json'}",
               f"-local_config={self.local_conf_path(name)}"]
        if role == "proxy":
            cmd.append(f"-ntargets={self.ntargets}")
            if rejoin and (nd / "conf" / ".ais.smap").exists():
                cmd.append("-skip_startup")
        p = spawn(cmd, nd, env, nd / "log")
        self.pid_path(name).write_text(f"{p.pid}\n")
        log(f"started {self.label}{name} ({role}) pid {p.pid}: public :{ports[name]['port']}, "
            f"control :{ports[name]['port_intra_control']}, data :{ports[name]['port_intra_data']}")
        return p

    def stop_nodes(self, names=None, grace=STOP_GRACE_S, sig=signal.SIGTERM):
        names = names or self.nodes
        live = {n: p for n in names if self.is_our_node(p := self.read_pid(n), n)}
        for n, p in live.items():
            log(f"stopping {self.label}{n} (pid {p}) with {signal.Signals(sig).name}")
            send_signal(p, sig)
        deadline = time.time() + grace
        while live and time.time() < deadline:
            reap()
            live = {n: p for n, p in live.items() if self.is_our_node(p, n)}
            if live:
                time.sleep(0.2)
        for n, p in live.items():
            log(f"{self.label}{n} (pid {p}) still running after {grace:.0f}s: SIGKILL")
            send_signal(p, signal.SIGKILL)
        t0 = time.time()
        while live and time.time() - t0 < 5:
            reap()
            live = {n: p for n, p in live.items() if self.is_our_node(p, n)}
            time.sleep(0.1)
        for n in names:
            self.pid_path(n).unlink(missing_ok=True)

    def kill(self, name):
        """SIGKILL one node; wait until it is gone. False when it was not running."""
        pid = self.read_pid(name)
        if not self.is_our_node(pid, name):
            return False
        log(f"SIGKILL {self.label}{name} (pid {pid})")
        send_signal(pid, signal.SIGKILL)
        t0 = time.time()
        while self.is_our_node(pid, name) and time.time() - t0 < 10:
            reap()
            time.sleep(0.05)
        return True

    def tail_logs(self, names=None, n=60):
        tail_logs([(self.label + x, self.node_dir(x) / "log") for x in (names or self.nodes)], n)

    # ------------------------------------------------------------------------------------------
    # health
    # ------------------------------------------------------------------------------------------

    def get_smap(self, ports):
        code, body = self.get(self.endpoint(ports) + "/v1/daemon?what=smap")
        if code != 200:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    @staticmethod
    def smap_target_ports(smap):
        out = set()
        for node in (smap.get("tmap") or {}).values():
            pub = node.get("public_net") or {}
            try:
                out.add(int(pub.get("daemon_port")))
            except (TypeError, ValueError):
                pass
        return out

    def healthy(self, ports=None):
        ports = ports or self.read_ports()
        if not ports:
            return False, "no state (not started?)"
        alive = self.alive_nodes()
        missing = [n for n in self.nodes if n not in alive]
        if missing:
            return False, f"not running: {', '.join(missing)}"
        code, _ = self.get(self.endpoint(ports) + "/v1/health?prr=true")
        if code != 200:
            return False, f"proxy /v1/health?prr=true -> {code}"
        smap = self.get_smap(ports)
        if smap is None:
            return False, "cannot read smap from the proxy"
        tports = self.smap_target_ports(smap)
        want = {int(ports[n]["port"]) for n in self.nodes[1:]}
        if len(smap.get("tmap") or {}) != self.ntargets or tports != want:
            return False, f"smap lists targets on ports {sorted(tports)}, expected {sorted(want)}"
        return True, "ok"

    def node_health(self, name, ports):
        """HTTP status of the node's /v1/health, or None."""
        return self.get(self.url(ports[name]["port"]) + "/v1/health")[0]

    def uuid(self, ports=None):
        smap = self.get_smap(ports or self.read_ports())
        return (smap or {}).get("uuid")

    # ------------------------------------------------------------------------------------------
    # config and start
    # ------------------------------------------------------------------------------------------

    def pick_ports(self, picker, proxy_port=None):
        ports = {}
        for n in self.nodes:
            pub = proxy_port if (n == "proxy" and proxy_port) else picker.pick()
            ports[n] = {"port": pub, "port_intra_control": picker.pick(), "port_intra_data": picker.pick()}
        return ports

    def cluster_config(self, ports, space, extra=None):
        primary = self.endpoint(ports)
        # Based on deploy/dev/local/aisnode_config.sh (AIS v1.5.0); sections left out get defaults.
        conf = {
            "backend": {},
            "auth": {},
            "timeout": {
                "cplane_operation": "2s",
                "max_keepalive": "5s",  # must be >= 2 x cplane_operation
                "cold_get_conflict": "5s",
                "max_host_busy": "20s",  # >= 10s
                # >= 30s; the primary waits ~startup_time/4 of quiet after the last join before it
                # declares the cluster up, so the minimum (30s) starts ~8s faster than 1m
                "startup_time": "30s",
                "join_startup_time": "3m",
                "send_file_time": "5m",  # >= 1m
                "ec_streams_time": "10m",
                "object_md": "2h",
            },
            "proxy": {
                "primary_url": primary,
                "original_url": primary,
                "discovery_url": "",
                "non_electable": False,
            },
            "space": space,
            "resilver": {"enabled": True},
            "memsys": {
                # default 2gb only produces low-memory warnings on small boxes; >= 100mb is required
                "min_free": "256mb",
                "default_buf": "32kb",
                "to_gc": "2gb",
                "hk_time": "3m",
                "min_pct_total": 0,
                "min_pct_free": 0,
            },
            "versioning": {"enabled": True, "validate_warm_get": False},
            "net": {
                "l4": {"proto": "tcp", "sndrcv_buf_size": 131072},
                "http": {
                    "use_https": False,
                    "server_crt": "server.crt",
                    "server_key": "server.key",
                    "domain_tls": "",
                    "client_ca_tls": "",
                    "client_auth_tls": 0,
                    "idle_conn_time": "6s",
                    "idle_conns_per_host": 32,
                    "idle_conns": 256,
                    "write_buffer_size": 65536,
                    "read_buffer_size": 65536,
                    "chunked_transfer": True,
                    "skip_verify": False,
                },
                "use_ipv6": False,
            },
            # smaller logs, flushed often enough that a failed start shows something useful
            "log": {
                "level": "3",
                "max_size": "16mb",
                "max_total": "128mb",
                "flush_time": "5s",
                "stats_time": "1m",
            },
        }
        return merge(conf, extra or {})

    def local_config(self, name, ports):
        nd = self.node_dir(name)
        p = ports[name]
        return {
            "confdir": str(nd / "conf"),
            "log_dir": str(nd / "log"),
            "host_net": {
                "hostname": HOST,
                "hostname_intra_control": HOST,
                "hostname_intra_data": HOST,
                "port": str(p["port"]),
                "port_intra_control": str(p["port_intra_control"]),
                "port_intra_data": str(p["port_intra_data"]),
            },
            "fspaths": {},
            # testing mode: mountpaths <data>/mp1, <data>/mp2 on whatever filesystem holds them
            "test_fspaths": {"root": str(nd / "data"), "count": 2, "instance": 0},
        }

    def wipe(self):
        if self.state.exists():
            shutil.rmtree(self.state)

    def write_state(self, ports, extra=None):
        self.state.mkdir(parents=True, exist_ok=True)
        pct, space = space_conf(self.state)
        log(f"disk usage at {self.state}: {pct}% (as aisnode computes it); space watermarks "
            f"cleanup={space['cleanupwm']} low={space['lowwm']} high={space['highwm']} "
            f"oos={space['out_of_space']}")
        cconf = self.cluster_config(ports, space, extra)
        for n in self.nodes:
            nd = self.node_dir(n)
            for sub in ("conf", "log", "data"):
                (nd / sub).mkdir(parents=True, exist_ok=True)
            # the config can hold the auth signing key: readable by the owner only
            write_json(nd / "conf" / "ais.json", cconf, mode=0o600)
            write_json(self.local_conf_path(n), self.local_config(n, ports))
        write_json(self.state / "ports.json", ports)

    def launch_all(self, ports, env):
        """Start the primary, give it a moment to open its port, then the targets."""
        t0 = time.time()
        procs = {"proxy": self.launch("proxy", ports, env)}
        pub = self.endpoint(ports)
        while time.time() - t0 < 10 and procs["proxy"].poll() is None:
            if self.get(pub + "/v1/health", timeout=1)[0] is not None:
                break
            time.sleep(0.1)
        for n in self.nodes[1:]:
            procs[n] = self.launch(n, ports, env)
        return procs

    def wait_ready(self, ports, procs, t0, timeout):
        while True:
            for n, p in procs.items():
                rc = p.poll()
                if rc is not None:
                    return False, f"{self.label}{n} exited with code {rc}"
            ok, why = self.healthy(ports)
            if ok:
                return True, "ok"
            if time.time() - t0 > timeout:
                return False, f"timed out after {timeout:.0f}s ({why})"
            time.sleep(0.25)

    def start_node(self, name, env, timeout):
        """Start one stopped node again with its config and ports; wait until the cluster is whole."""
        ports = self.read_ports()
        pid = self.read_pid(name)
        if self.is_our_node(pid, name):
            log(f"{self.label}{name} already running (pid {pid})")
            proc = None
        else:
            proc = self.launch(name, ports, env, rejoin=True)
        t0 = time.time()
        url = self.url(ports[name]["port"]) + "/v1/health?readiness=true"
        while True:
            if proc is not None and proc.poll() is not None:
                why = f"{name} exited with code {proc.returncode}"
                break
            code, _ = self.get(url)
            if code == 200:
                ok, why = self.healthy(ports)
                if ok:
                    log(f"{self.label}{name} is back in {time.time() - t0:.1f}s")
                    return True
            else:
                why = f"{name} /v1/health?readiness=true -> {code}"
            if time.time() - t0 > timeout:
                why = f"timed out after {timeout:.0f}s ({why})"
                break
            time.sleep(0.25)
        log(f"{self.label}{name} did not come back: {why}")
        self.tail_logs(sorted({name, "proxy"}))
        return False
