"""Pack engines: what builds the planned shards of one run. One interface, :class:`Engine`; one module
per engine:

* :mod:`ais_wds.pack.engines.client`: members are fetched into this process and streamed into each
  shard's all-or-nothing upload;
* :mod:`ais_wds.pack.engines.cluster`: AIS assembles each shard (archive job or get-batch); a shard
  whose get-batch relay keeps breaking is built by the client engine it was given.

:func:`ais_wds.pack.engine_choice.choose_engine` says which; :func:`ais_wds.pack.pack` runs it.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future, as_completed
from typing import Any, Callable, Dict, List, Optional

from ..plan import PlannedShard
from ..report import PackReport

Progress = Callable[[int, int], None]
"""``progress(samples_done, bytes_done)``: running totals of this run, called from worker threads."""


class Stopped(Exception):
    """Another shard failed; this one stops without committing."""


class Engine(ABC):
    """Builds planned shards, each whole or not at all, in the plan's exact layout.

    An engine owns its threads; use it as a context manager (or call :meth:`close`) to release them.
    """

    name: str = ""
    """``"client"`` or ``"cluster"`` (what :attr:`PackReport.engine` says)."""

    @abstractmethod
    def build(self, shards: List[PlannedShard], report: PackReport) -> None:
        """Build ``shards`` (none of which exists), counting each in ``report`` as it completes
        (:meth:`PackReport.count`, plus the engine's own lists).

        Raises: the first failure (an :class:`~ais_wds.errors.AISWdsError`), after the other shards in
        flight stopped; no partial shard is left behind."""

    @abstractmethod
    def build_shard(self, shard: PlannedShard, stop: threading.Event) -> None:
        """Build and commit one shard in the calling thread.

        Raises: :class:`Stopped` when it sees ``stop`` set; AISWdsError on failure. Commits nothing then."""

    def reconcile(self, mine: List[PlannedShard], existing: Dict[str, int], todo: List[PlannedShard],
                  report: PackReport) -> List[PlannedShard]:
        """The shards to build, given ``todo`` (this run's part ``mine`` less the shards found complete,
        ``report.skipped``) and ``existing`` (URL -> size at the destination). Default: ``todo``."""
        return todo

    def close(self) -> None:
        """Release the engine's threads (waits for running work)."""
        return None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def first_failure(futures: Dict[Future[Any], PlannedShard], stop: threading.Event,
                  on_ok: Callable[[PlannedShard], None]) -> None:
    """Wait for the shard jobs ``futures``; call ``on_ok`` (in this thread) for each that succeeds.

    At the first failure ``stop`` is set and the jobs not started are cancelled (running ones raise
    :class:`Stopped` when they see ``stop``); once all have ended the first failure is raised.
    """
    error: Optional[BaseException] = None
    try:
        for fut in as_completed(futures):
            try:
                fut.result()
            except Stopped:
                continue
            except Exception as e:  # noqa: BLE001 - the first failure stops the others
                if error is None:
                    error = e
                    stop.set()
                    for other in futures:
                        other.cancel()
                continue
            on_ok(futures[fut])
    except BaseException:
        stop.set()
        for other in futures:
            other.cancel()
        raise
    if error is not None:
        raise error


class Totals:
    """Running (samples, bytes) totals of a run, reported to a :data:`Progress` callback (thread-safe)."""

    def __init__(self, progress: Optional[Progress]):
        self._lock = threading.Lock()
        self._progress = progress
        self.samples = 0
        self.bytes = 0

    def add(self, samples: int, nbytes: int) -> None:
        with self._lock:
            self.samples += samples
            self.bytes += nbytes
            if self._progress:
                self._progress(self.samples, self.bytes)
