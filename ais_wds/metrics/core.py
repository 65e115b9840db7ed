"""Per-process counters and fixed-bucket latency histograms, shared with the rank's process by the
DataLoader workers through one memory-mapped file: the core of :mod:`ais_wds.metrics` (no torch).

Every process counts into one *slot*: a flat array of unsigned 64-bit words (:data:`COUNTERS`, then the
buckets of each histogram in :data:`HISTOGRAMS`, then each histogram's sum in microseconds). An event
is one call (:func:`count`, :func:`observe`, :func:`get_opened`...), an index and an add: no lock (a
slot has one writer, the process; a worker's threads may rarely lose an increment to a race, which a
counter of events tolerates).

Gathering: :func:`block_for` (called by ``ais_wds.monitor`` in the rank's process) creates a file of
``1 + workers`` slots in ``/dev/shm`` (else the temp folder); the monitor names it in
``AIS_WDS_METRICS_BLOCK`` while its DataLoader starts the workers (forked and spawned workers alike
inherit the variable), then restores the variable. A
DataLoader worker switches to slot ``1 + worker id`` of that block at its first event (after a fork it
starts from zero; a worker restarted with the same id adds to what its predecessor left). The rank's
process keeps counting into its own local slot. :func:`snapshot` adds the local slot and every slot of
the blocks this process opened. Nothing is sent anywhere: the rank's process reads the workers' words.
"""

from __future__ import annotations

import mmap
import os
import sys
import tempfile
import threading
import time
import weakref
from array import array
from bisect import bisect_left
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .._core.dist import torch_worker
from . import trace
from .trace import TRACE_DIR_ENV

BLOCK_ENV = "AIS_WDS_METRICS_BLOCK"
"""Environment variable: the path of the block the DataLoader workers of this process count into."""

COUNTERS = (
    "gets",  # GET requests answered (object streams opened or resumed, whole-object GETs)
    "gets_direct",  # ... sent straight to the target that owns the object
    "gets_gateway",  # ... sent through the gateway (redirected)
    "read_bytes",  # object bytes received from AIS
    "retries",  # waits before another attempt (any request)
    "resumed_streams",  # object streams reconnected after a failure, at the offset reached
    "shards_opened",  # object streams (shards) opened
    "shards_failed",  # object streams that failed for good (the error reached the caller)
    "batch_gets",  # batch GET requests
    "batch_get_fallbacks",  # batch GETs that fell back to per-object GETs for some or all entries
    "samples",  # samples delivered to the training loop (ais_wds.monitor)
    "batches",  # batches delivered to the training loop
)
C = {name: i for i, name in enumerate(COUNTERS)}

BOUNDS_US = (50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
             1_000_000, 2_500_000, 5_000_000, 10_000_000)
"""Upper bounds (microseconds) of the histogram buckets; a last bucket takes everything above."""
NBUCKETS = len(BOUNDS_US) + 1

HISTOGRAMS = (
    "ttfb",  # a GET: request sent -> answer's headers (time to first byte)
    "get",  # a whole-object GET: request sent -> whole body received
    "data_wait",  # the training loop waiting in next(loader) for a batch (ais_wds.monitor)
)
H = {name: i for i, name in enumerate(HISTOGRAMS)}
_HIST_AT = len(COUNTERS)
_SUM_AT = _HIST_AT + len(HISTOGRAMS) * NBUCKETS
SLOT_WORDS = _SUM_AT + len(HISTOGRAMS)
WORD = 8

_lock = threading.RLock()  # switching slots, blocks, snapshots; never per event (RLock: GC finalizers)


def _local_slot() -> memoryview:
    return memoryview(bytearray(SLOT_WORDS * WORD)).cast("Q")


def _retire_slot(words: memoryview) -> None:
    """A monitor went away: keep its numbers in the process's totals (counters never go down)."""
    with _lock:
        for i, v in enumerate(words):
            _state.retired[i] += v


class Slot:
    """A slot of its own (a monitor's: samples, batches, data-wait), part of this process's
    :func:`snapshot` while it lives."""

    def __init__(self) -> None:
        self.words = _local_slot()
        _state.own.add(self)
        weakref.finalize(self, _retire_slot, self.words)

    def count(self, name: str, n: int = 1) -> None:
        self.words[C[name]] += n

    def observe(self, histogram: str, seconds: float) -> None:
        _observe(self.words, histogram, seconds)


class _State:
    """This process's slot, and whether it must look for its worker slot at the next event."""

    def __init__(self) -> None:
        self.slot = _local_slot()
        self.attach_due = BLOCK_ENV in os.environ  # a spawned worker (checked at its first event)
        self.blocks: List[Block] = []  # live blocks this process opened (a loader's workers count there)
        self.own: weakref.WeakSet[Slot] = weakref.WeakSet()  # live monitors' slots in this process
        self.retired = _local_slot()  # what monitors' slots held when they went away
        self.retired_workers: Dict[int, memoryview] = {}  # worker id -> what retired blocks held
        self.by_loader: weakref.WeakKeyDictionary[Any, Block] = weakref.WeakKeyDictionary()


_state = _State()


def _after_fork() -> None:
    """In a forked child: count from zero in a local slot until it finds its worker slot."""
    _state.slot = _local_slot()
    _state.attach_due = True
    _state.blocks, _state.own = [], weakref.WeakSet()
    _state.retired, _state.retired_workers = _local_slot(), {}
    _state.by_loader = weakref.WeakKeyDictionary()


os.register_at_fork(after_in_child=_after_fork)


def _attach() -> None:
    """Switch to this DataLoader worker's slot of the block named in the environment, if any."""
    with _lock:
        if not _state.attach_due:
            return
        _state.attach_due = False  # one look per process (or per fork): a non-worker keeps its local slot
        path = os.environ.get(BLOCK_ENV)
        worker = _worker_id()
        if worker is None or not path:
            return
        try:
            view = _map(path, writable=True)
        except (OSError, ValueError):
            return
        slots = len(view) // SLOT_WORDS
        if worker + 1 >= slots:
            return
        mine = view[(worker + 1) * SLOT_WORDS:(worker + 2) * SLOT_WORDS]
        local, _state.slot = _state.slot, mine
        for i, v in enumerate(local):  # what this worker counted before it knew its id
            mine[i] += v


def _worker_id() -> Optional[int]:
    worker = torch_worker()
    return worker[0] if worker is not None else None


def _map(path: str, writable: bool) -> memoryview:
    with open(path, "r+b" if writable else "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
    return memoryview(m).cast("Q")


# -- events (one call each) ---------------------------------------------------------------------------

def count(name: str, n: int = 1) -> None:
    """Add ``n`` to counter ``name`` (one of :data:`COUNTERS`) in this process's slot."""
    if _state.attach_due:
        _attach()
    _state.slot[C[name]] += n


def observe(histogram: str, seconds: float) -> None:
    """Record one duration in ``histogram`` (one of :data:`HISTOGRAMS`)."""
    if _state.attach_due:
        _attach()
    _observe(_state.slot, histogram, seconds)


def _observe(slot: memoryview, histogram: str, seconds: float) -> None:
    us = int(seconds * 1e6) if seconds > 0 else 0
    h = H[histogram]
    slot[_HIST_AT + h * NBUCKETS + bisect_left(BOUNDS_US, us)] += 1
    slot[_SUM_AT + h] += us


def hist_index(histogram: str) -> Tuple[int, int]:
    """``(index of the first bucket, index of the sum)`` of ``histogram`` in a slot (for inlined hot paths)."""
    h = H[histogram]
    return _HIST_AT + h * NBUCKETS, _SUM_AT + h


_READ_BYTES = C["read_bytes"]


def read(nbytes: int) -> None:
    """``nbytes`` object bytes received (the reader's per-read event: :func:`count` without the name lookup)."""
    if _state.attach_due:
        _attach()
    _state.slot[_READ_BYTES] += nbytes


def get_opened(started: float, direct: bool, resumed: bool = False, url: str = "") -> None:
    """A GET answered (its headers arrived); ``started`` is its ``time.perf_counter()`` at sending."""
    elapsed = time.perf_counter() - started
    observe("ttfb", elapsed)
    slot = _state.slot
    slot[C["gets"]] += 1
    slot[C["gets_direct" if direct else "gets_gateway"]] += 1
    slot[C["resumed_streams" if resumed else "shards_opened"]] += 1
    if TRACE_DIR_ENV in os.environ:
        _trace("GET resume" if resumed else "GET open", elapsed, url=url, direct=direct)


def get_done(started: float, nbytes: int, direct: bool, url: str = "") -> None:
    """A whole-object GET received its body (``nbytes``), ``started`` as for :func:`get_opened`."""
    elapsed = time.perf_counter() - started
    observe("get", elapsed)
    slot = _state.slot
    slot[C["gets"]] += 1
    slot[C["gets_direct" if direct else "gets_gateway"]] += 1
    slot[C["read_bytes"]] += nbytes
    if TRACE_DIR_ENV in os.environ:
        _trace("GET whole", elapsed, url=url, direct=direct, bytes=nbytes)


def _trace(name: str, elapsed: float, **args: Any) -> None:
    end = trace.now_us()
    trace.span(name, end - int(elapsed * 1e6), end, **args)


# -- blocks: the workers' slots, read by the rank's process -------------------------------------------

class Block:
    """A memory-mapped file of ``1 + workers`` slots that DataLoader workers count into. :meth:`close`
    keeps its numbers in the process's totals and removes the file."""

    def __init__(self, workers: int):
        folder = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        fd, self.path = tempfile.mkstemp(prefix=f"ais_wds-metrics-{os.getpid()}-", dir=folder or tempfile.gettempdir())
        try:
            os.ftruncate(fd, (1 + max(workers, 0)) * SLOT_WORDS * WORD)
        finally:
            os.close(fd)
        self.workers = workers
        self.view = _map(self.path, writable=False)
        self._finalizer = weakref.finalize(self, _remove, self.path)

    def slots(self) -> List[memoryview]:
        """The workers' slots (worker id order)."""
        return [self.view[i * SLOT_WORDS:(i + 1) * SLOT_WORDS] for i in range(1, 1 + self.workers)]

    def close(self) -> None:
        """Fold the numbers into the process's totals (per worker id) and remove the file; workers still
        running keep counting into their mapping, unseen from now on."""
        with _lock:
            if self in _state.blocks:
                _state.blocks.remove(self)
                for wid, slot in enumerate(self.slots()):
                    kept = _state.retired_workers.setdefault(wid, _local_slot())
                    for i, v in enumerate(slot):
                        kept[i] += v
        self.view = memoryview(bytearray(self.view)).cast("Q")  # the numbers stay readable here
        self._finalizer()


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def block_for(loader: Any, workers: int) -> Block:
    """The block of ``loader``'s ``workers`` DataLoader workers: one per loader while it lives (so that
    persistent workers, started once, keep counting where every monitor of that loader reads), closed
    when the loader is garbage-collected. Workers count into it when its path is in :data:`BLOCK_ENV`
    while their loader starts them (``ais_wds.monitor`` does that)."""
    with _lock:
        block = _state.by_loader.get(loader)
        if block is not None and block.workers >= workers:
            return block
    if block is not None:
        block.close()
    block = Block(workers)
    with _lock:
        _state.blocks.append(block)
        _state.by_loader[loader] = block
    weakref.finalize(loader, block.close)
    return block


# -- reading -------------------------------------------------------------------------------------------

def local_slot() -> Sequence[int]:
    """This process's own slot (not its workers')."""
    return _state.slot


def quantile(buckets: Sequence[int], q: float) -> Optional[float]:
    """The ``q`` quantile (0..1) in seconds from bucket counts, interpolated inside its bucket (the last,
    open bucket answers its lower bound); None without observations."""
    total = sum(buckets)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(buckets):
        if n and seen + n >= rank:
            lo = BOUNDS_US[i - 1] if i > 0 else 0
            if i >= len(BOUNDS_US):
                return lo / 1e6
            return (lo + (BOUNDS_US[i] - lo) * max(rank - seen, 0) / n) / 1e6
        seen += n
    return BOUNDS_US[-1] / 1e6


def summarize(words: Sequence[int]) -> Dict[str, Any]:
    """A slot's words as a dict: every counter, and per histogram its count, sum (s), p50/p95/p99 (s) and
    ``buckets`` (counts per :data:`BOUNDS_US` bucket)."""
    out: Dict[str, Any] = {name: int(words[i]) for i, name in enumerate(COUNTERS)}
    for h, name in enumerate(HISTOGRAMS):
        buckets = [int(x) for x in words[_HIST_AT + h * NBUCKETS:_HIST_AT + (h + 1) * NBUCKETS]]
        out[name] = {"count": sum(buckets), "sum": words[_SUM_AT + h] / 1e6, "buckets": buckets,
                     **{f"p{int(q * 100)}": quantile(buckets, q) for q in (0.5, 0.95, 0.99)}}
    return out


def add_slots(slots: Sequence[Sequence[int]]) -> array:
    """The word-by-word sum of slots."""
    total = array("Q", bytes(SLOT_WORDS * WORD))
    for slot in slots:
        for i in range(len(slot)):
            total[i] += slot[i]
    return total


class Baseline:
    """What this process's own slot and some blocks' worker slots held at one moment, to report what
    happened since (a monitor's numbers start at its first iteration)."""

    def __init__(self, blocks: Sequence[Block] = ()):
        self.main = array("Q", bytes(_state.slot))
        self.workers: Dict[int, array] = {}
        for block in blocks:
            for wid, slot in enumerate(block.slots()):
                self.workers[wid] = add_slots([self.workers.get(wid, ()), slot])


def _minus(words: Sequence[int], base: Sequence[int]) -> array:
    out = array("Q", bytes(SLOT_WORDS * WORD))
    for i in range(SLOT_WORDS):
        out[i] = max(words[i] - (base[i] if i < len(base) else 0), 0)
    return out


def snapshot(blocks: Optional[Sequence[Block]] = None, extra: Sequence[Sequence[int]] = (),
             since: Optional[Baseline] = None) -> Dict[str, Any]:
    """This process's metrics and its DataLoader workers' added up, with ``workers``: the numbers per
    worker id (over the loaders), and ``main``: this process's own.

    Args:
        blocks: whose workers to add (default: every block this process opened, those closed included,
            and then every monitor's numbers are in ``main`` too).
        extra: more slots to add to ``main`` (a monitor's own).
        since: subtract what this process's slot and the blocks' slots held then (``extra`` is not
            subtracted).
    """
    per_worker: Dict[int, List[Sequence[int]]] = {}
    with _lock:
        if blocks is None:
            blocks = list(_state.blocks)
            extra = [*extra, *(s.words for s in list(_state.own)), _state.retired]
            for wid, slot in _state.retired_workers.items():
                per_worker.setdefault(wid, []).append(slot)
    for block in blocks:
        for wid, slot in enumerate(block.slots()):
            per_worker.setdefault(wid, []).append(slot)
    workers = {wid: add_slots(slots) for wid, slots in sorted(per_worker.items())}
    own: Sequence[int] = _state.slot
    if since is not None:
        own = _minus(own, since.main)
        workers = {wid: _minus(w, since.workers.get(wid, ())) for wid, w in workers.items()}
    main = add_slots([own, *extra])
    out = summarize(add_slots([main, *workers.values()]))
    out["main"] = summarize(main)
    out["workers"] = {wid: summarize(w) for wid, w in workers.items() if any(w)}
    return out


def totals(snap: Dict[str, Any]) -> Dict[str, float]:
    """The running totals that rates are computed from: samples, bytes read, seconds waited for data."""
    return {"samples": snap["samples"], "read_bytes": snap["read_bytes"], "wait": snap["data_wait"]["sum"]}


# -- switching the events off ---------------------------------------------------------------------------

SWITCH_ENV = "AIS_WDS_METRICS"
"""Environment variable: ``off`` (or ``0``) makes every event a no-op in this process and its workers."""

_EVENTS = {"count": count, "observe": observe, "read": read, "get_opened": get_opened, "get_done": get_done}


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def set_enabled(enabled: bool) -> None:
    """Turn this process's events on or off (callers look the functions up at each call, so an off
    switch costs them one call to a function that does nothing)."""
    module = sys.modules[__name__]
    for name, fn in _EVENTS.items():
        setattr(module, name, fn if enabled else _noop)


if os.environ.get(SWITCH_ENV, "").strip().lower() in ("off", "0", "false", "no"):
    set_enabled(False)
