"""``ais_wds.monitor(loader)``: wrap a DataLoader (or any iterable of batches) and measure what the
training loop gets from it: samples and batches delivered, and the time the loop waits in ``next()``
for each batch (data-wait: the number that says whether the GPU is waiting for data).

Iterating the monitor iterates the loader; nothing changes in the batches. Before the loader starts its
workers (at ``iter()``) the monitor opens a block (:func:`ais_wds.metrics.core.block_for`) that the
workers count into, so their GETs, bytes, retries and resumed streams reach this process without
anything to set up. Periodically (at batch boundaries, never from another thread) it writes a log line
(``log_every`` seconds) and TensorBoard scalars (``tensorboard=``); ``AIS_WDS_METRICS_PORT`` starts the
Prometheus endpoint (:mod:`ais_wds.metrics.prometheus`) at the first iteration.

Cost: two ``perf_counter()`` calls, a few word adds and a look at the batch's shape per batch.
"""

from __future__ import annotations

import logging
import os
import time
from bisect import bisect_left
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Union

from . import core
from .trace import TRACE_DIR_ENV, merge, now_us, span

logger = logging.getLogger(__name__)

LOG_EVERY_ENV = "AIS_WDS_METRICS_LOG"
"""Environment variable: seconds between monitor log lines (default 60; 0 turns them off)."""


def samples_in(batch: Any) -> int:
    """How many samples a batch holds, from its shape: a tensor's (or array's) first dimension; a dict
    with ``__key__`` (a list of keys, or one key: 1), else its first value's count; a list of samples
    (dicts, tuples, bytes...) its length; collated columns (a list or tuple whose first item is a list or a
    tensor) the first column's count; a tuple of fields (one sample): 1."""
    if type(batch) is list and batch and type(batch[0]) in (dict, tuple, bytes, str):  # the common case, first
        return len(batch)
    shape = getattr(batch, "shape", None)
    if shape is not None and not isinstance(batch, (bytes, str)):
        return int(shape[0]) if len(shape) else 1
    if isinstance(batch, dict):
        key = batch.get("__key__")
        if isinstance(key, (list, tuple)):
            return len(key)
        if key is not None or not batch:
            return 1
        first = next(iter(batch.values()))
        return samples_in(first) if isinstance(first, (list, tuple)) or hasattr(first, "shape") else 1
    if isinstance(batch, (list, tuple)):
        if not batch:
            return 0
        first = batch[0]
        if isinstance(first, list) or (hasattr(first, "shape") and not isinstance(first, (bytes, str))):
            return samples_in(first)
        return len(batch) if isinstance(batch, list) else 1
    return 1


class Monitor:
    """An iterable over ``loader``'s batches that measures them; see the module docstring.

    Args:
        loader: a DataLoader, StatefulDataLoader or any iterable of batches.
        samples: ``f(batch) -> int`` samples in a batch (default :func:`samples_in`).
        log_every: seconds between INFO log lines (default ``AIS_WDS_METRICS_LOG`` or 60; 0: none).
        tensorboard: a ``torch.utils.tensorboard.SummaryWriter`` or a log directory for one.
        tensorboard_every: seconds between TensorBoard writes (always one at the end of an epoch).
        trace: write a Chrome trace (Perfetto) of the GETs of every process and the loop's waits to this
            JSON file at the end of each epoch and at :meth:`close` (see :mod:`ais_wds.metrics.trace`).

    Other attributes (``state_dict``, ``load_state_dict``, ``dataset``, ``__len__``...) are the loader's,
    so a monitored StatefulDataLoader still checkpoints.
    """

    def __init__(self, loader: Any, *, samples: Optional[Callable[[Any], int]] = None,
                 log_every: Optional[float] = None, tensorboard: Union[str, Any, None] = None,
                 tensorboard_every: float = 10.0, trace: Optional[str] = None):
        self.loader = loader
        self._trace = trace
        self._trace_env: Optional[str] = None
        if trace is not None:  # this process and the workers it starts append their events there
            self._trace_env = os.environ.get(TRACE_DIR_ENV)
            os.environ[TRACE_DIR_ENV] = f"{os.path.abspath(trace)}.parts"
        self._samples = samples or samples_in
        self._slot = core.Slot()
        self._block: Optional[core.Block] = None
        self._since: Optional[core.Baseline] = None  # taken at the first iteration
        self._since_block: Optional[core.Block] = None
        env_log = os.environ.get(LOG_EVERY_ENV, "").strip()
        self.log_every = float(log_every if log_every is not None else (env_log or 60.0))
        self._tb: Any = None
        if tensorboard is not None:
            from .tensorboard import Scalars

            self._tb = Scalars(tensorboard, every=tensorboard_every)
        self._last_log: Optional[Tuple[float, Dict[str, float]]] = None  # set at the first iteration

    # -- iteration ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        from .prometheus import serve_from_env

        serve_from_env()
        workers = int(getattr(self.loader, "num_workers", 0) or 0)
        if workers:
            self._block = core.block_for(self.loader, workers)
        if self._since is None or (self._block is not None and self._block is not self._since_block):
            self._since = core.Baseline([self._block] if self._block is not None else [])
            self._since_block = self._block
            self._last_log = (time.monotonic(), core.totals(self.snapshot()))
        it = self._start(workers)
        words, clock, samples_of, bounds = self._slot.words, time.perf_counter, self._samples, core.BOUNDS_US
        i_samples, i_batches = core.C["samples"], core.C["batches"]
        i_wait, i_wait_sum = core.hist_index("data_wait")
        ticking = self._tb is not None or self.log_every > 0
        while True:
            started = clock()
            try:
                batch = next(it)
            except StopIteration:
                self._slot.observe("data_wait", clock() - started)  # the wait for the end counts too
                self._tick(final=True)
                self._write_trace()
                return
            waited = int((clock() - started) * 1e6)  # the hot path of observe("data_wait", ...), inline
            if self._trace is not None:
                end = now_us()
                span("wait for a batch", end - waited, end)
            words[i_wait + bisect_left(bounds, waited)] += 1
            words[i_wait_sum] += waited
            words[i_samples] += samples_of(batch)
            words[i_batches] += 1
            if ticking:
                self._tick()
            yield batch

    def _start(self, workers: int) -> Iterator[Any]:
        """``iter(loader)`` with the block named in the environment while it starts its workers."""
        if not workers or self._block is None:
            return iter(self.loader)
        before = os.environ.get(core.BLOCK_ENV)
        os.environ[core.BLOCK_ENV] = self._block.path
        try:
            return iter(self.loader)
        finally:
            if before is None:
                os.environ.pop(core.BLOCK_ENV, None)
            else:
                os.environ[core.BLOCK_ENV] = before

    # -- reading -------------------------------------------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        """This loop's numbers since its first iteration: what this process and this loader's workers read,
        the samples and batches this monitor delivered and its data-wait (see
        :func:`ais_wds.metrics.core.snapshot`; ``ais_wds.metrics.snapshot()`` has the whole process's)."""
        return core.snapshot(blocks=[self._block] if self._block is not None else [], extra=[self._slot.words],
                             since=self._since)

    def _tick(self, final: bool = False) -> None:
        now = time.monotonic()
        if self._tb is not None:
            self._tb.maybe_write(self, now, final)
        last = self._last_log
        if self.log_every > 0 and last is not None and (now - last[0] >= self.log_every or (final and now > last[0])):
            self._log(now, last)

    def _log(self, now: float, last: Tuple[float, Dict[str, float]]) -> None:
        then, before = last
        snap = self.snapshot()
        took = max(now - then, 1e-9)
        wait = snap["data_wait"]
        logger.info("ais_wds: %.0f samples/s, %.1f MB/s from AIS, the loop waited for data %.0f%% of the time "
                    "(per batch p50 %s, p99 %s); GET time to first byte p50 %s, p99 %s; %d retries, %d resumed "
                    "streams, %d of %d GETs through the gateway",
                    (snap["samples"] - before["samples"]) / took, (snap["read_bytes"] - before["read_bytes"]) / took
                    / 1e6, 100 * min((wait["sum"] - before["wait"]) / took, 1.0), _ms(wait["p50"]), _ms(wait["p99"]),
                    _ms(snap["ttfb"]["p50"]), _ms(snap["ttfb"]["p99"]), snap["retries"], snap["resumed_streams"],
                    snap["gets_gateway"], snap["gets"])
        self._last_log = (now, core.totals(snap))

    def close(self) -> None:
        """Flush TensorBoard, write the trace and stop tracing. (The workers' block belongs to the loader:
        it is removed, its numbers kept, when the loader is garbage-collected.)"""
        if self._tb is not None:
            self._tb.close()
        if self._trace is not None:
            self._write_trace()
            if self._trace_env is None:
                os.environ.pop(TRACE_DIR_ENV, None)
            else:
                os.environ[TRACE_DIR_ENV] = self._trace_env
            self._trace = None

    def _write_trace(self) -> None:
        if self._trace is not None:
            merge(f"{os.path.abspath(self._trace)}.parts", self._trace)

    # -- the loader's other attributes ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("loader", "_slot", "_block", "_tb", "_since", "_since_block",
                                                   "_last_log", "_trace", "_trace_env"):
            raise AttributeError(name)
        return getattr(self.loader, name)


def _ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f} ms"


def monitor(loader: Any, **options: Any) -> Monitor:
    """Wrap ``loader`` in a :class:`Monitor`: ``for batch in ais_wds.monitor(loader): ...``."""
    return Monitor(loader, **options)
