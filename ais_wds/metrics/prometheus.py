"""Prometheus text on ``http://127.0.0.1:PORT/metrics`` from the rank's process (``prometheus_client``,
the ``metrics`` extra): ``AIS_WDS_METRICS_PORT=PORT`` starts it at the first iteration of an
``ais_wds.monitor``, or call :func:`serve`. Only 127.0.0.1 is bound.

Every name starts with ``ais_wds_``. Counters carry ``rank`` and ``worker`` (``main`` for the rank's
process, else the DataLoader worker id): ``ais_wds_samples_total`` (samples delivered to the training
loop), ``ais_wds_batches_total``, ``ais_wds_bytes_total`` (bytes read from AIS), ``ais_wds_gets_total``
(with ``path`` = ``direct`` | ``gateway``), ``ais_wds_retries_total``, ``ais_wds_resumed_streams_total``,
``ais_wds_shards_opened_total``, ``ais_wds_shards_failed_total``, ``ais_wds_batch_gets_total``,
``ais_wds_batch_get_fallbacks_total``. Histograms (``rank`` only, all processes added up):
``ais_wds_data_wait_seconds`` (the loop waiting for each batch), ``ais_wds_get_ttfb_seconds``,
``ais_wds_get_seconds`` (whole-object GETs).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import ConfigError
from . import core

logger = logging.getLogger(__name__)

METRICS_PORT_ENV = "AIS_WDS_METRICS_PORT"
"""Environment variable: the port of the Prometheus endpoint (on 127.0.0.1)."""

COUNTER_NAMES = {  # snapshot key -> (metric name, help)
    "samples": ("ais_wds_samples_total", "samples delivered to the training loop"),
    "batches": ("ais_wds_batches_total", "batches delivered to the training loop"),
    "read_bytes": ("ais_wds_bytes_total", "object bytes read from AIS"),
    "retries": ("ais_wds_retries_total", "waits before another attempt of a request"),
    "resumed_streams": ("ais_wds_resumed_streams_total", "object streams reconnected after a failure"),
    "shards_opened": ("ais_wds_shards_opened_total", "object streams (shards) opened"),
    "shards_failed": ("ais_wds_shards_failed_total", "object streams (shards) that failed for good"),
    "batch_gets": ("ais_wds_batch_gets_total", "batch GET requests"),
    "batch_get_fallbacks": ("ais_wds_batch_get_fallbacks_total", "batch GETs that fell back to per-object GETs"),
}
HISTOGRAM_NAMES = {
    "data_wait": ("ais_wds_data_wait_seconds", "time the training loop waited for each batch"),
    "ttfb": ("ais_wds_get_ttfb_seconds", "GET: request sent to the answer's headers"),
    "get": ("ais_wds_get_seconds", "whole-object GET: request sent to the whole body"),
}

_served: Dict[int, Any] = {}
_lock = threading.Lock()


def _rank() -> str:
    from .._core.dist import torch_rank_world

    got = torch_rank_world()
    return str(got[0]) if got else os.environ.get("RANK", "0")


class Collector:
    """A ``prometheus_client`` collector over :func:`ais_wds.metrics.core.snapshot` (read at each scrape)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        snap = core.snapshot()
        rank = _rank()
        per: List[Tuple[str, Dict[str, Any]]] = [("main", snap["main"])]
        per += [(str(w), s) for w, s in sorted(snap["workers"].items())]
        for key, (name, doc) in COUNTER_NAMES.items():
            family = CounterMetricFamily(name[:-len("_total")], doc, labels=["rank", "worker"])
            for worker, numbers in per:
                family.add_metric([rank, worker], numbers[key])
            yield family
        gets = CounterMetricFamily("ais_wds_gets", "GET requests answered", labels=["rank", "worker", "path"])
        for worker, numbers in per:
            gets.add_metric([rank, worker, "direct"], numbers["gets_direct"])
            gets.add_metric([rank, worker, "gateway"], numbers["gets_gateway"])
        yield gets
        for key, (name, doc) in HISTOGRAM_NAMES.items():
            h = snap[key]
            cumulative, buckets = 0, []
            for bound, n in zip(core.BOUNDS_US, h["buckets"]):
                cumulative += n
                buckets.append((repr(bound / 1e6), cumulative))
            buckets.append(("+Inf", h["count"]))
            hist = HistogramMetricFamily(name, doc, labels=["rank"])
            hist.add_metric([rank], buckets, sum_value=h["sum"])
            yield hist


def serve(port: int) -> int:
    """Serve the metrics on ``http://127.0.0.1:PORT/metrics`` from this process (once per port; a daemon
    thread). Returns the port.

    Raises:
        ConfigError: ``prometheus_client`` is not installed, or the port cannot be bound.
    """
    with _lock:
        if port in _served:
            return port
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise ConfigError("serving Prometheus metrics needs prometheus_client",
                              hint="pip install 'ais-wds[metrics]' (or prometheus_client)") from None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collector())
        try:
            _served[port] = start_http_server(port, addr="127.0.0.1", registry=registry)
        except OSError as e:
            raise ConfigError(f"cannot serve metrics on 127.0.0.1:{port}: {e}",
                              hint=f"choose a free port in {METRICS_PORT_ENV}") from None
    logger.info("ais_wds metrics: Prometheus text on http://127.0.0.1:%d/metrics", port)
    return port


def serve_from_env() -> Optional[int]:
    """:func:`serve` on ``AIS_WDS_METRICS_PORT`` when it is set (in this process, not in DataLoader
    workers, which inherit the variable); the port, or None."""
    value = os.environ.get(METRICS_PORT_ENV, "").strip()
    if not value or _in_worker():
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigError(f"{METRICS_PORT_ENV}={value!r} is not a port number", hint="e.g. 9464")
    return serve(int(value))


def _in_worker() -> bool:
    from .._core.dist import torch_worker

    return torch_worker() is not None
