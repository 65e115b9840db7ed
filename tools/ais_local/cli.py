"""Build and run a real local AIStore cluster (1 proxy + 2 targets) on 127.0.0.1.

No Docker, no sudo, no prompts.  Standard library only (the emulators of --backends use the repo's
.venv, and install what they miss into it).

Subcommands:
  build [OPTIONS]               build/install what `start OPTIONS` needs (aisnode, authn, emulators)
  start [OPTIONS]               start the cluster (or reuse a healthy one started with the same
                                OPTIONS; one with other options is restarted from scratch) and
                                print NAME=value lines on stdout (logs go to stderr):
                                  AIS_ENDPOINT=...            always
                                  AIS_AUTHN_URL=..., AIS_AUTHN_TOKEN=...          with --auth
                                  AIS_CLIENT_CA=<ca.crt>                          with --tls
                                  AIS_REMOTE_ALIAS=remote, AIS_REMOTE_UUID=...,
                                  AIS_REMOTE_ENDPOINT=...                         with --remote
                                  AIS_LOCAL_S3_URL=..., AIS_LOCAL_GCS_URL=...,
                                  AIS_LOCAL_AZURE_URL=... (the emulators)         with --backends
  stop [--wipe]                 stop everything `start` started here (nodes, remote cluster,
                                emulators, authn; SIGKILL after a grace period); --wipe removes
                                the state folder
  status                        per-node and per-service health; exit 0 when all is healthy
  endpoint                      print the endpoint of the running local cluster
  cloud-bucket URL...           create s3://NAME, gs://NAME or az://NAME in the running emulator
  kill-target N                 SIGKILL target N (1 or 2)            (fault injection)
  start-target N [--timeout T]  start target N again with the same config and ports, wait
                                until it is ready and the proxy lists 2 targets
  restart-target N [--down-seconds S] [--timeout T]
                                kill, sleep S (default 1), start-target
  kill-proxy | start-proxy [--timeout T] | restart-proxy [--down-seconds S] [--timeout T]
                                the same for the (primary) proxy

OPTIONS (composable):
  --backends aws,gcp,azure      aisnode built with those backends (its own cached binary), the
                                backends in the cluster config, and a local emulator for each:
                                moto (aws), fake-gcs-server (gcp), Azurite (azure)
  --remote                      a second cluster (1 proxy + 1 target, plain http, no auth) attached
                                as remote AIS cluster `remote`: ais://@remote/BUCKET
  --auth                        AIS's authn server; the cluster requires its tokens
  --tls                         https with a self-signed CA made here

State: <state>/{proxy,t1,t2}/{conf,log,data}, <state>/{proxy,t1,t2}.pid, <state>/ports.json,
<state>/endpoint, <state>/options.json, and with options <state>/{emulators,authn,tls,remote}.
`start` on an unhealthy/stopped cluster wipes the state and starts clean.

Environment:
  AIS_ENDPOINT             if set, `start` without options does nothing but print
                           AIS_ENDPOINT=<value> (and `endpoint` prints it) - an external cluster
                           is in use; `start` with options ignores it
  AIS_LOCAL_PORT           public (client) port of the proxy; default: a free port
  AIS_LOCAL_PORT_BASE      first port to try for all other ports; default: free ports
                           picked by the kernel
  AIS_LOCAL_STATE_DIR      state folder (configs, logs, data, pids);
                           default <repo>/.cache/ais/state
  AIS_LOCAL_START_TIMEOUT  seconds to wait for readiness (start, start-target); default 120
  AIS_LOCAL_AISNODE        path of the aisnode binary (without --backends);
                           default <repo>/.cache/ais/bin/aisnode
  AIS_LOCAL_VENV           Python venv for the emulators; default <repo>/.venv
"""

import argparse
import os
import sys
import time
from pathlib import Path

from . import emulators
from . import stack as stk
from .common import CACHE, Fatal, die, log, start_timeout


def state_dir():
    return Path(os.environ.get("AIS_LOCAL_STATE_DIR") or (CACHE / "state")).resolve()


def options(args):
    backends = []
    for b in (args.backends or "").replace(" ", "").split(","):
        if not b:
            continue
        if b not in emulators.EMULATORS:
            die(f"--backends: unknown backend {b!r} (known: {', '.join(emulators.EMULATORS)}; "
                "oci cannot be emulated locally)")
        backends.append(b)
    return stk.normalize({"backends": backends, "remote": args.remote, "auth": args.auth, "tls": args.tls})


def cmd_build(args):
    binary = stk.prepare(options(args))
    log(f"aisnode: {binary}")
    return 0


def cmd_start(args):
    opts = options(args)
    ext = os.environ.get("AIS_ENDPOINT")
    if ext and opts == stk.DEFAULT_OPTIONS:
        print(f"AIS_ENDPOINT={ext}", flush=True)
        return 0
    if ext:
        log(f"AIS_ENDPOINT is set ({ext}) but {stk.describe(opts)} needs the local cluster: ignoring it")
    stack = stk.start_or_reuse(state_dir(), opts)
    if stack is None:
        return 1
    print("\n".join(stack.env_lines()), flush=True)
    return 0


def cmd_stop(args):
    stack = stk.Stack(state_dir())
    with stack.lock():
        stack.stop_all()
        if args.wipe:
            stack.wipe()
            log(f"removed {stack.state}")
    return 0


def cmd_status(_args):
    stack = stk.Stack(state_dir())
    if not stack.cluster.read_ports():
        print("local cluster: not started (no state)")
        return 1
    print("\n".join(stack.status_lines()))
    problems = stack.problems()
    print(f"endpoint: {stack.cluster.endpoint()}")
    print(f"cluster: {'healthy' if not problems else 'NOT healthy (' + '; '.join(problems) + ')'}")
    return 0 if not problems else 1


def cmd_endpoint(_args):
    ext = os.environ.get("AIS_ENDPOINT")
    if ext:
        print(ext)
        return 0
    stack = stk.Stack(state_dir())
    if not stack.cluster.read_ports():
        log("no local cluster (run `scripts/ais-local start`)")
        return 1
    print(stack.cluster.endpoint())
    ok, why = stack.cluster.healthy()
    if not ok:
        log(f"warning: local cluster is not healthy ({why})")
        return 1
    return 0


def cmd_cloud_bucket(args):
    stack = stk.Stack(state_dir())
    for url in args.urls:
        emu, name = emulators.parse_cloud_url(url)
        if emu.backend not in stack.opts["backends"] or not emulators.service(stack.state, emu).pid():
            die(f"{url}: no {emu.name} emulator runs here (start with --backends {emu.backend})")
        emu.create_bucket(stack.services[emu.name], name)
        log(f"created {url} in the {emu.name} emulator")
    return 0


def _node_name(args):
    return "proxy" if args.cmd.endswith("-proxy") else f"t{args.n}"


def _need_state():
    stack = stk.Stack(state_dir())
    if not stack.cluster.read_ports():
        die("no local cluster state (run `scripts/ais-local start` first)")
    return stack


def cmd_kill(args):
    name = _node_name(args)
    if not _need_state().cluster.kill(name):
        log(f"{name} is not running")
    return 0


def cmd_start_node(args):
    stack = _need_state()
    name = _node_name(args)
    if not stack.cluster.start_node(name, stack.node_env(), args.timeout):
        return 1
    if name == "proxy" and stack.opts["remote"]:
        ok, why = stack.wait_alias()  # a restarted primary learns the alias again, asynchronously
        if not ok:
            log(why)
            return 1
    return 0


def cmd_restart_node(args):
    cmd_kill(args)
    time.sleep(max(0.0, args.down_seconds))
    return cmd_start_node(args)


def add_options(p):
    p.add_argument("--backends", metavar="LIST", default="",
                   help="comma-separated cloud backends to build in and emulate: aws,gcp,azure")
    p.add_argument("--remote", action="store_true", help="attach a second local cluster as remote AIS")
    p.add_argument("--auth", action="store_true", help="run authn and require its tokens")
    p.add_argument("--tls", action="store_true", help="https with a self-signed CA")


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="ais-local",
        description="Build and run a local AIStore cluster (1 proxy + 2 targets) on 127.0.0.1.",
        epilog="Subcommands:" + __doc__.split("Subcommands:", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = sub.add_parser("build", help="build/install what `start` with the same options needs")
    add_options(p)
    p.set_defaults(fn=cmd_build)
    p = sub.add_parser("start", help="start the cluster (idempotent); prints AIS_ENDPOINT=... and more")
    add_options(p)
    p.set_defaults(fn=cmd_start)
    p = sub.add_parser("stop", help="stop everything `start` started")
    p.add_argument("--wipe", action="store_true", help="also remove the state folder")
    p.set_defaults(fn=cmd_stop)
    sub.add_parser("status", help="per-node health; exit 0 iff healthy").set_defaults(fn=cmd_status)
    sub.add_parser("endpoint", help="print the cluster endpoint").set_defaults(fn=cmd_endpoint)
    p = sub.add_parser("cloud-bucket", help="create buckets in the running emulators")
    p.add_argument("urls", nargs="+", metavar="URL", help="s3://NAME, gs://NAME or az://NAME")
    p.set_defaults(fn=cmd_cloud_bucket)
    for node, what in (("target", "target N"), ("proxy", "the proxy")):
        for verb, fn, helptext in (
            ("kill", cmd_kill, f"SIGKILL {what}"),
            ("start", cmd_start_node, f"start {what} again (same config and ports)"),
            ("restart", cmd_restart_node, f"kill {what}, sleep, start it again"),
        ):
            p = sub.add_parser(f"{verb}-{node}", help=helptext)
            if node == "target":
                p.add_argument("n", type=int, choices=(1, 2), metavar="N", help="target number: 1 or 2")
            if verb != "kill":
                p.add_argument("--timeout", type=float, default=None,
                               help=f"seconds to wait for {what} to rejoin "
                                    "(default: AIS_LOCAL_START_TIMEOUT or 120)")
            if verb == "restart":
                p.add_argument("--down-seconds", type=float, default=1.0,
                               help="seconds to stay down between kill and start (default 1)")
            p.set_defaults(fn=fn)
    args = ap.parse_args(argv)
    try:
        if getattr(args, "timeout", None) is None and hasattr(args, "timeout"):
            args.timeout = start_timeout()
        return args.fn(args)
    except Fatal as e:
        log("error:", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
