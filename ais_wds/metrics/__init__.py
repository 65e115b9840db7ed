"""Metrics of a running job: is the training loop waiting for data, and on what?

Per process (the rank's and each DataLoader worker's): GET requests (direct to a target or through the
gateway), bytes read from AIS, time to first byte and whole-object GET latency histograms, retries,
resumed streams, shards (object streams) opened and failed, batch GETs and their fallbacks; in the
rank's process, through :func:`monitor`: samples and batches delivered to the training loop and the
time the loop waited for each batch (data-wait). The workers' numbers reach the rank's process through
a memory-mapped block the monitor creates before its DataLoader starts them (see
:mod:`ais_wds.metrics.core`): nothing to set up.

* ``for batch in ais_wds.monitor(loader): ...`` wraps any DataLoader (or iterable) and measures;
* :func:`snapshot` (and ``monitor(...).snapshot()``): a dict, readable at any time;
* ``AIS_WDS_METRICS_PORT=PORT``: Prometheus text on ``http://127.0.0.1:PORT/metrics`` from the rank's
  process (``pip install 'ais-wds[metrics]'``); see :mod:`ais_wds.metrics.prometheus`;
* ``monitor(loader, tensorboard=DIR_OR_WRITER)``: TensorBoard scalars; ``log_every=SECONDS``: a log line.

This package's core (counters, histograms, the block) imports neither torch nor webdataset and is
what the reader core calls (one call per event); :func:`monitor` and the exporters load on first use.
"""

import importlib
from typing import Any

from .core import BOUNDS_US, COUNTERS, HISTOGRAMS, snapshot

__all__ = ["BOUNDS_US", "COUNTERS", "HISTOGRAMS", "monitor", "serve", "snapshot"]


def monitor(loader: Any, **options: Any) -> Any:
    """``for batch in ais_wds.monitor(loader): ...``: see :class:`ais_wds.metrics.loop.Monitor` (the
    same function as ``ais_wds.monitor``; it loads on first use)."""
    return importlib.import_module(f"{__name__}.loop").monitor(loader, **options)


def serve(port: int) -> int:
    """Prometheus text on ``http://127.0.0.1:PORT/metrics`` from this process: see
    :func:`ais_wds.metrics.prometheus.serve` (loads ``prometheus_client`` on first use)."""
    return int(importlib.import_module(f"{__name__}.prometheus").serve(port))
