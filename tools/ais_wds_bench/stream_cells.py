"""Section 1's cells: the contenders that stream tar shards, and the fresh processes that time them.

Each contender is a ``setup(cfg) -> run`` pair: ``setup`` (untimed) builds clients and URL lists,
``run()`` reads every shard of one shard set once and returns what it saw. Every (shard set,
contender) cell runs in its own fresh process, forked from a server that has already imported
torch, webdataset, aistore and ais_wds (:mod:`ais_wds_bench.preload`), so one contender's buffers never count
in another's peak RSS and no cell pays seconds of imports. The cells of one shard set stay alive
for all rounds and are driven in turn, A, B, C, A, B, C ..., the order rotating each round.

What a cell reports per run: seconds, bytes or samples seen, time to first sample (or first
chunk) from the start of the run, CPU seconds (the cell and its waited-for children), and the
process's peak RSS (VmHWM) plus its children's (curl, ais CLI). Peak RSS growth = VmHWM minus
the RSS right after setup.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

CHUNK = 1 << 20  # raw readers read 1 MiB at a time


@dataclass(frozen=True)
class Contender:
    name: str
    label: str
    group: str  # "limit" | "ais_wds" | "peer"
    setup: Callable[[Dict[str, Any]], Callable[[], Dict[str, Any]]]
    samples: bool = True  # yields samples (else raw bytes)
    needs: Optional[str] = None  # "ais_cli" | "curl"


# ------------------------------------------------------------------------------------------------
# contenders (these run in the worker processes)


def _count_samples(it, t0: float, payload=lambda s: s["bin"]) -> Dict[str, Any]:
    ttfs = None
    n = nbytes = 0
    for sample in it:
        if ttfs is None:
            ttfs = perf_counter() - t0
        n += 1
        nbytes += len(payload(sample))
    return {"samples": n, "payload_bytes": nbytes, "ttfs": ttfs}


def _raw_loop(read_into, buf: bytearray, t0: float, state: Dict[str, Any]) -> None:
    while True:
        n = read_into(buf)
        if not n:
            return
        if state["ttfs"] is None:
            state["ttfs"] = perf_counter() - t0
        state["bytes"] += n


def setup_raw_open_object(cfg):
    import ais_wds

    client = ais_wds.Client(cfg["endpoint"])
    urls = cfg["ais_urls"]

    def run():
        t0, buf, state = perf_counter(), bytearray(CHUNK), {"bytes": 0, "ttfs": None}
        for url in urls:
            with ais_wds.open_object(url, client) as f:
                _raw_loop(f.readinto, buf, t0, state)
        return state

    return run


def setup_raw_urllib3(cfg):
    import urllib3

    pool = urllib3.PoolManager(maxsize=4)
    urls = cfg["http_urls"]

    def run():
        t0, buf, state = perf_counter(), bytearray(CHUNK), {"bytes": 0, "ttfs": None}
        for url in urls:
            resp = pool.request("GET", url, preload_content=False, redirect=True)
            if resp.status != 200:
                raise RuntimeError(f"GET {url}: HTTP {resp.status}")
            _raw_loop(resp.readinto, buf, t0, state)
            resp.release_conn()
        return state

    return run


def setup_raw_http_client(cfg):
    """The floor for Python: http.client's readinto fills our buffer with no intermediate copy."""
    import http.client
    from urllib.parse import urlsplit

    conns: Dict[str, http.client.HTTPConnection] = {}
    urls = cfg["http_urls"]

    def request(netloc: str, path: str) -> http.client.HTTPResponse:
        conn = conns.get(netloc) or conns.setdefault(netloc, http.client.HTTPConnection(netloc))
        try:
            conn.request("GET", path)
            return conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()  # the server dropped the idle keep-alive connection: reconnect once, like urllib3
            conn.request("GET", path)
            return conn.getresponse()

    def get(url: str) -> http.client.HTTPResponse:
        for _ in range(3):  # the gateway answers with a redirect to the target
            u = urlsplit(url)
            resp = request(u.netloc, f"{u.path}?{u.query}")
            if resp.status in (301, 302, 307, 308):
                resp.read()
                url = resp.getheader("Location")
                continue
            if resp.status != 200:
                raise RuntimeError(f"GET {url}: HTTP {resp.status}")
            return resp
        raise RuntimeError(f"GET {url}: too many redirects")

    def run():
        t0, buf, state = perf_counter(), bytearray(CHUNK), {"bytes": 0, "ttfs": None}
        for url in urls:
            resp = get(url)
            _raw_loop(resp.readinto, buf, t0, state)
            resp.close()
        return state

    return run


def setup_raw_curl(cfg):
    import subprocess

    urls = cfg["http_urls"]

    def run():
        t0, state = perf_counter(), {"bytes": 0, "ttfs": None}
        for url in urls:
            started = perf_counter()
            out = subprocess.run(["curl", "-sSfL", "-o", "/dev/null", "-w", "%{time_starttransfer} %{size_download}",
                                  url], capture_output=True, text=True, check=True).stdout.split()
            if state["ttfs"] is None:
                state["ttfs"] = started - t0 + float(out[0])
            state["bytes"] += int(out[1])
        return state

    return run


def setup_ais_wds_webdataset(cfg):
    import ais_wds

    client = ais_wds.Client(cfg["endpoint"])
    urls = cfg["ais_urls"]

    def run():
        t0 = perf_counter()
        return _count_samples(ais_wds.WebDataset(urls, client=client, shuffle=False), t0)

    return run


def setup_wds_ais_gopen(cfg):
    import webdataset as wds

    import ais_wds
    from ais_wds.streaming.gopen import is_registered

    ais_wds.register(ais_wds.Client(cfg["endpoint"]))
    assert is_registered()
    urls = cfg["ais_urls"]

    def run():
        t0 = perf_counter()
        return _count_samples(wds.WebDataset(urls, shardshuffle=False), t0)

    return run


def setup_wds_curl(cfg):
    import webdataset as wds
    from webdataset.gopen import gopen_curl, gopen_schemes

    assert gopen_schemes["http"] is gopen_curl, "ais_wds must not take over http://"
    urls = cfg["http_urls"]

    def run():
        t0 = perf_counter()
        return _count_samples(wds.WebDataset(urls, shardshuffle=False), t0)

    return run


def setup_wds_ais_cli(cfg):
    import shlex

    import webdataset as wds

    os.environ["AIS_ENDPOINT"] = cfg["endpoint"]
    ais = shlex.quote(cfg["ais_cli"])
    urls = [f"pipe:{ais} get {shlex.quote(u)} -" for u in cfg["ais_urls"]]

    def run():
        t0 = perf_counter()
        return _count_samples(wds.WebDataset(urls, shardshuffle=False), t0)

    return run


def setup_ais_shard_reader(cfg):
    from aistore.pytorch import AISShardReader

    import ais_wds

    sdk = ais_wds.Client(cfg["endpoint"]).sdk
    bucket = sdk.bucket(cfg["bucket"])
    prefix = cfg["prefix"]

    def run():
        t0 = perf_counter()
        reader = AISShardReader(bucket_list=bucket, prefix_map={bucket: prefix})
        return _count_samples(reader, t0, payload=lambda s: s[1]["bin"])

    return run


CONTENDERS: Dict[str, Contender] = {c.name: c for c in [
    Contender("raw_http_client", "raw GET: http.client readinto (no copy)", "limit", setup_raw_http_client, False),
    Contender("raw_urllib3", "raw GET: urllib3 readinto, follows redirect", "limit", setup_raw_urllib3, False),
    Contender("raw_open_object", "raw GET: ais_wds.open_object readinto", "limit", setup_raw_open_object, False),
    Contender("raw_curl", "raw GET: curl -sL -o /dev/null", "limit", setup_raw_curl, False, "curl"),
    Contender("ais_wds_webdataset", "ais_wds.WebDataset (fast tar path)", "ais_wds", setup_ais_wds_webdataset),
    Contender("wds_ais_gopen", "wds.WebDataset + ais_wds gopen", "ais_wds", setup_wds_ais_gopen),
    Contender("wds_curl", "wds.WebDataset, http URL (curl pipe)", "peer", setup_wds_curl, needs="curl"),
    Contender("wds_ais_cli", "wds.WebDataset, pipe:ais get (CLI)", "peer", setup_wds_ais_cli, needs="ais_cli"),
    Contender("ais_shard_reader", "aistore.pytorch.AISShardReader", "peer", setup_ais_shard_reader),
]}


# ------------------------------------------------------------------------------------------------
# the worker process


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _cpu_seconds() -> float:
    """CPU time of this process and of its waited-for children (curl, ais), user + system."""
    t = os.times()  # children: clock-tick resolution; this process: process_time's finer clock
    return time.process_time() + t.children_user + t.children_system


def _reset_peak_rss() -> None:
    """Start VmHWM afresh from the current RSS (Linux >= 4.0), so a peak is this run's own."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class _ChildrenPeak:
    """Peak summed RSS of this process's children (curl, ais CLI), sampled every 10 ms.

    ``getrusage(RUSAGE_CHILDREN)`` cannot be used: it counts a child's RSS from before its exec,
    i.e. a copy of this whole Python process.
    """

    def __init__(self, interval: float = 0.01):
        import threading

        import psutil

        self._me = psutil.Process()
        self._interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import psutil

        while not self._stop.wait(self._interval):
            total = 0
            for child in self._me.children(recursive=True):
                try:
                    # a child between fork and exec is still a copy of this Python process: not curl's cost
                    if not child.name().startswith("python"):
                        total += child.memory_info().rss
                except psutil.Error:  # gone between the listing and the read
                    pass
            self.peak_kb = max(self.peak_kb, total // 1024)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kb


def _profile(run: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """One extra, untimed run under pyinstrument; returns its text report (file:line per frame)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return {"error": "pyinstrument is not installed"}
    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        run()
    except Exception:  # noqa: BLE001
        return {"error": traceback.format_exc(limit=8)}
    finally:
        profiler.stop()
    return {"text": profiler.output_text(unicode=False, color=False, show_all=False, timeline=False)}


def worker_main(conn, cfg: Dict[str, Any]) -> None:
    """Entry point of one (shard set, contender) cell: set up, then run on every "run" message."""
    if "ais_wds_bench.preload" not in sys.modules:
        conn.send({"error": "the fork server did not preload ais_wds_bench.preload (is ais-wds-tools installed? make install)"})
        return
    contender = CONTENDERS[cfg["contender"]]
    try:
        run = contender.setup(cfg)
    except Exception:  # noqa: BLE001 - reported to the parent
        conn.send({"error": traceback.format_exc(limit=8)})
        return
    import ais_wds

    conn.send({"ready": True, "baseline_rss_kb": _status_kb("VmRSS"), "ais_wds": ais_wds.__file__})
    while True:
        cmd = conn.recv()
        if cmd == "profile":
            conn.send(_profile(run))
            continue
        if cmd != "run":
            return
        gc.collect()
        _reset_peak_rss()
        children = _ChildrenPeak() if contender.needs else None
        cpu0 = _cpu_seconds()
        t0 = perf_counter()
        try:
            out = run()
        except Exception:  # noqa: BLE001
            conn.send({"error": traceback.format_exc(limit=8)})
            continue
        finally:
            children_kb = children.stop() if children else 0
        out["seconds"] = perf_counter() - t0
        out["cpu_seconds"] = _cpu_seconds() - cpu0
        out["peak_rss_kb"] = _status_kb("VmHWM")
        out["children_peak_rss_kb"] = children_kb
        conn.send(out)


# ------------------------------------------------------------------------------------------------
# the orchestrator (runs in the main process)


def availability(ais_cli: Optional[str]) -> Dict[str, str]:
    """Contenders that cannot run here, with the reason."""
    missing = {}
    for c in CONTENDERS.values():
        if c.needs == "curl" and not shutil.which("curl"):
            missing[c.name] = "curl not found on PATH"
        if c.needs == "ais_cli" and not ais_cli:
            missing[c.name] = "ais CLI not available (see `scripts/bench --build-cli`)"
    return missing


def _context():
    # The fork server is a fresh interpreter of this venv: it finds ais_wds and ais_wds_bench through their
    # editable installs (Python 3.11's fork server ignores the sys.path it is sent and swallows preload
    # ImportErrors; measure_set checks which ais_wds each cell imported).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["ais_wds_bench.preload", "ais_wds_bench.stream_cells"])
    return ctx


def _warm(shard_set, endpoint: str) -> None:
    """Read every shard once so that no contender pays for a cold page cache on the targets."""
    import urllib3

    pool = urllib3.PoolManager()
    for url in shard_set.http_urls(endpoint):
        resp = pool.request("GET", url, preload_content=False)
        for _ in resp.stream(CHUNK):
            pass
        resp.release_conn()


def measure_set(shard_set, contenders: Sequence[str], *, endpoint: str, rounds: int, ais_cli: Optional[str],
                profile: Sequence[str] = (), timeout: float = 900, log=print) -> List[Dict[str, Any]]:
    """Run ``contenders`` over one shard set, interleaved for ``rounds`` rounds; one result per contender.

    Contenders named in ``profile`` get one more run after the rounds, under pyinstrument; its text
    report lands in the result as ``profile``.
    """
    ctx = _context()
    base_cfg = {"endpoint": endpoint, "bucket": shard_set.bucket, "prefix": shard_set.prefix,
                "ais_urls": shard_set.ais_urls(), "http_urls": shard_set.http_urls(endpoint), "ais_cli": ais_cli}
    results = {name: {"contender": name, "label": CONTENDERS[name].label, "group": CONTENDERS[name].group,
                      "set": shard_set.label, "runs": [], "errors": []} for name in contenders}
    _warm(shard_set, endpoint)
    cells: Dict[str, Tuple[Any, Any]] = {}
    try:
        for name in contenders:  # start all cells, then wait: the fork server makes this cheap
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child, {**base_cfg, "contender": name}), daemon=True)
            proc.start()
            child.close()
            cells[name] = (proc, parent)
        live = []
        for name, (proc, conn) in cells.items():
            msg = _recv(conn, proc, timeout)
            if "error" in msg:
                results[name]["errors"].append(msg["error"])
                log(f"    {name}: setup failed: {msg['error'].strip().splitlines()[-1]}")
            elif msg["ais_wds"] != _ais_wds_file():
                results[name]["errors"].append(f"the cell imported {msg['ais_wds']}, not {_ais_wds_file()}")
                log(f"    {name}: wrong ais_wds in the cell: {msg['ais_wds']}")
            else:
                results[name]["baseline_rss_kb"] = msg["baseline_rss_kb"]
                live.append(name)
        for r in range(rounds):
            order = live[r % len(live):] + live[:r % len(live)] if live else []
            for name in order:
                proc, conn = cells[name]
                conn.send("run")
                msg = _recv(conn, proc, timeout)
                if "error" in msg:
                    results[name]["errors"].append(msg["error"])
                    log(f"    {name}: run failed: {msg['error'].strip().splitlines()[-1]}")
                else:
                    results[name]["runs"].append(msg)
            log(f"    round {r + 1}/{rounds} done")
        for name in (n for n in live if n in profile):
            proc, conn = cells[name]
            conn.send("profile")
            msg = _recv(conn, proc, timeout)
            results[name]["profile"] = msg.get("text") or msg.get("error")
    finally:
        for proc, conn in cells.values():
            try:
                conn.send("exit")
            except (BrokenPipeError, OSError):
                pass
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    return [_summarize(results[name], shard_set) for name in contenders]


def _ais_wds_file() -> str:
    import ais_wds

    return ais_wds.__file__


def _recv(conn, proc, timeout: float) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not conn.poll(1.0):
        if not proc.is_alive():
            return {"error": f"worker died (exit code {proc.exitcode})"}
        if time.monotonic() > deadline:
            proc.kill()
            return {"error": f"no answer within {timeout:.0f}s"}
    try:
        return conn.recv()
    except EOFError:
        return {"error": f"worker died (exit code {proc.exitcode})"}


def _summarize(res: Dict[str, Any], shard_set) -> Dict[str, Any]:
    """Medians over the runs, and checks that every run saw the whole shard set."""
    runs = res["runs"]
    if not runs:
        res["status"] = "error"
        return res
    is_samples = CONTENDERS[res["contender"]].samples
    bad = []
    for run in runs:
        if is_samples and (run["samples"] != shard_set.total_samples
                           or run["payload_bytes"] != shard_set.total_samples * shard_set.sample_size):
            bad.append(f"saw {run['samples']} samples / {run['payload_bytes']} payload bytes, expected "
                       f"{shard_set.total_samples} / {shard_set.total_samples * shard_set.sample_size}")
        if not is_samples and run["bytes"] != shard_set.total_bytes:
            bad.append(f"read {run['bytes']} bytes, expected {shard_set.total_bytes}")
    seconds = [r["seconds"] for r in runs]
    med = statistics.median(seconds)
    peak_kb = max(r["peak_rss_kb"] for r in runs)
    children_kb = max(r["children_peak_rss_kb"] for r in runs)
    res.update(
        status="ok" if not bad else "wrong result",
        runs_ok=len(runs),
        problems=sorted(set(bad)),
        seconds_median=med,
        mb_s=shard_set.total_bytes / med / 1e6,
        mb_s_min=shard_set.total_bytes / max(seconds) / 1e6,
        mb_s_max=shard_set.total_bytes / min(seconds) / 1e6,
        samples_s=shard_set.total_samples / med,
        cpu_s_per_gb=statistics.median(r["cpu_seconds"] for r in runs) / (shard_set.total_bytes / 1e9),
        samples_s_equivalent=not is_samples,  # raw readers: the shard set's samples over their time
        ttfs_median_ms=1000 * statistics.median(r["ttfs"] for r in runs if r["ttfs"] is not None),
        ttfs_first_ms=1000 * runs[0]["ttfs"] if runs[0]["ttfs"] is not None else None,  # cold: first run of the cell
        peak_rss_mib=(peak_kb + children_kb) / 1024,
        rss_growth_mib=(peak_kb - res.get("baseline_rss_kb", peak_kb) + children_kb) / 1024,
        children_peak_rss_mib=children_kb / 1024,
    )
    return res
