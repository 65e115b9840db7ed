"""TensorBoard scalars of an ``ais_wds.monitor`` (``torch.utils.tensorboard``; ``pip install tensorboard``).

Written from the training loop's thread at batch boundaries, at most every ``every`` seconds, and once
at the end of each epoch; the step is the number of batches delivered. Tags (all under ``ais_wds/``):
``samples_per_s``, ``read_MB_per_s``, ``data_wait_fraction`` (share of the loop's time spent waiting for
data since the last write), ``data_wait_p50_ms`` / ``data_wait_p99_ms``, ``get_ttfb_p50_ms`` /
``get_ttfb_p99_ms``, and the running totals ``samples``, ``retries``, ``resumed_streams``,
``shards_opened``, ``shards_failed``, ``gets_direct``, ``gets_gateway``, ``batch_get_fallbacks``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

from .core import totals

TOTALS = ("samples", "retries", "resumed_streams", "shards_opened", "shards_failed", "gets_direct", "gets_gateway",
          "batch_get_fallbacks")


class Scalars:
    """Writes a monitor's numbers to a ``SummaryWriter`` (given, or made for a log directory)."""

    def __init__(self, writer: Union[str, Any], every: float = 10.0):
        if isinstance(writer, str):
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=writer)
        self.writer = writer
        self.every = every
        self._last: Optional[float] = None
        self._before: Dict[str, float] = {}

    def maybe_write(self, monitor: Any, now: float, final: bool = False) -> None:
        """Write when ``every`` seconds passed since the last write (or at the end of an epoch)."""
        if self._last is None:
            self._last, self._before = now, totals(monitor.snapshot())
            if not final:
                return
        if not final and now - self._last < self.every:
            return
        snap = monitor.snapshot()
        numbers = totals(snap)
        took = max(now - self._last, 1e-9)
        step = snap["batches"]
        add = self.writer.add_scalar
        add("ais_wds/samples_per_s", (numbers["samples"] - self._before["samples"]) / took, step)
        add("ais_wds/read_MB_per_s", (numbers["read_bytes"] - self._before["read_bytes"]) / took / 1e6, step)
        add("ais_wds/data_wait_fraction", min((numbers["wait"] - self._before["wait"]) / took, 1.0), step)
        for key, hist in (("data_wait", "data_wait"), ("get_ttfb", "ttfb")):
            for q in ("p50", "p99"):
                if snap[hist][q] is not None:
                    add(f"ais_wds/{key}_{q}_ms", snap[hist][q] * 1e3, step)
        for key in TOTALS:
            add(f"ais_wds/{key}", snap[key], step)
        if final:
            self.writer.flush()
        self._last, self._before = now, numbers

    def close(self) -> None:
        self.writer.flush()
