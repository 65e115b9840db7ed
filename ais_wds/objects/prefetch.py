"""The fetch-ahead engine: fetch many small objects on a thread pool, bounded, results in order.

Work is cut into *units*: consecutive objects fetched by one call of a getter (``ais_wds.objects.fetch``): one
object per unit for per-object GETs, up to ``batch_size`` objects (and ``batch_bytes``) for batch GETs.
Results come back in input order, each as ``bytes`` or the error for its URL.

The window of ``imap``: the units in flight and the unit being handed out together hold at most
``max_bytes`` (listed sizes; an unknown size counts as the mean size fetched so far, ``unknown_size``
before that), and at most ``depth`` units are in flight. The window is shared by the threads: ``imap``
cuts a unit at ``max_bytes / threads`` bytes (or ``batch_bytes``, if smaller), so that the threads have
requests in flight while the consumer works through one. One unit is always in flight: only objects
larger than half the window overrun it (one fetched while the one before it is handed out). So a
consumer of ``imap`` holds at most ``max_bytes`` of fetched data (plus what it keeps itself): the figure
to budget memory with (docs/memory.md).

    engine = Prefetcher(BatchGetter(client, members=iter_members), batch_size=256, depth=4)
    for url, data_or_error in engine.imap(listing):   # listing: iterable of (url, size)
        ...
    results = engine.fetch_all(listing.select(indices))   # one batch, fetched in parallel

Thread safety: ``imap`` and ``fetch_all`` may be called from several threads. Process safety: the
thread pool is created lazily in the process that fetches and is not pickled, so a Prefetcher can be
part of a dataset sent to DataLoader workers (fork, spawn or forkserver).
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, cast

from .._core.process_local import ProcessLocal
from ..errors import ConfigError
from .fetch import Getter, Result

logger = logging.getLogger(__name__)

Item = Tuple[str, int]
"""(url, size in bytes; -1 when unknown), as a :class:`~ais_wds.listing.Listing` iterates."""


class Prefetcher:
    """Ordered, bounded fetch-ahead of whole objects.

    Args:
        getter: fetches one unit (``getter.fetch(urls) -> list of bytes | AISWdsError``).
        threads: fetching threads (units fetched concurrently).
        batch_size: most objects per unit (1 for per-object GETs).
        batch_bytes: most listed bytes per unit (an object larger than this is a unit by itself); ``imap``
            also cuts units at ``max_bytes / threads``.
        depth: most units in flight in ``imap`` (default ``2 * threads``).
        max_bytes: ``imap``'s window: most listed bytes in flight plus being handed out (one unit is always
            in flight, so objects larger than half of it overrun it).
        unknown_size: bytes assumed for an object whose size is unknown (-1) until some were fetched.

    Raises:
        ConfigError: a non-positive bound.
    """

    def __init__(self, getter: Getter, *, threads: int = 8, batch_size: int = 1, batch_bytes: int = 32 << 20,
                 depth: Optional[int] = None, max_bytes: int = 256 << 20, unknown_size: int = 1 << 20):
        for name, value in (("threads", threads), ("batch_size", batch_size), ("batch_bytes", batch_bytes),
                            ("max_bytes", max_bytes), ("depth", depth or 1)):
            if value <= 0:
                raise ConfigError(f"Prefetcher {name} must be positive, got {value}")
        self.getter = getter
        self.threads = threads
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.depth = depth or 2 * threads
        self.max_bytes = max_bytes
        self.unknown_size = unknown_size
        self._executor: ProcessLocal[ThreadPoolExecutor] = ProcessLocal(self._new_pool)

    # -- pickling: the pool stays in its process -------------------------------------------------
    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        del state["_executor"]
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._executor = ProcessLocal(self._new_pool)

    def close(self) -> None:
        """Stop the thread pool of this process (queued fetches are cancelled). The engine stays usable."""
        executor = self._executor.clear()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- API ---------------------------------------------------------------------------------------
    def imap(self, items: Iterable[Item]) -> Iterator[Tuple[str, Result]]:
        """Fetch ``items`` ahead of the consumer; yield ``(url, bytes | AISWdsError)`` in input order.

        At most ``max_bytes`` (listed) are in flight or waiting to be yielded at any time (see the module
        docstring); a result is let go of as it is yielded. Closing the generator (or dropping it) cancels
        the queued fetches.
        """
        executor = self._pool()
        estimate = _SizeEstimate(self.unknown_size)
        units = self._units(iter(items), unit_bytes=self.unit_bytes, estimate=estimate)
        pending: Deque[Tuple[List[Item], Future[List[Result]], int]] = deque()
        held = 0  # listed bytes of the units in flight and of the one being handed out
        ahead: Optional[List[Item]] = None  # the next unit, cut but not submitted (it did not fit yet)

        def fill() -> None:
            nonlocal held, ahead
            while len(pending) < self.depth:
                unit = ahead if ahead is not None else next(units, None)
                if unit is None:
                    return
                nbytes = sum(estimate.of(s) for _, s in unit)
                if pending and held + nbytes > self.max_bytes:  # over the window; one is always in flight
                    ahead = unit
                    return
                ahead = None
                pending.append((unit, executor.submit(self.getter.fetch, [u for u, _ in unit]), nbytes))
                held += nbytes

        try:
            fill()
            while pending:
                unit, future, nbytes = pending.popleft()
                fill()  # one in flight while this unit is waited for and handed out (held counts it until then)
                results: List[Optional[Result]] = list(future.result())
                del future  # it holds the results too
                estimate.learn(unit, results)
                for i, (url, _) in enumerate(unit):
                    result, results[i] = results[i], None  # the consumer's reference is the only one left
                    yield url, cast(Result, result)
                del result
                held -= nbytes
                fill()
        finally:
            for _, future, _ in pending:
                future.cancel()

    @property
    def unit_bytes(self) -> int:
        """Most listed bytes in one unit of :meth:`imap`: ``batch_bytes``, or the threads' share of the
        window (``max_bytes / threads``) if smaller."""
        return max(1, min(self.batch_bytes, self.max_bytes // self.threads))

    def fetch_all(self, items: Sequence[Item]) -> List[Result]:
        """Fetch every item now, units in parallel; item i of the result belongs to ``items[i]``.

        For a DataLoader batch: the units are at most ``batch_size`` objects but are cut smaller so that
        all threads get work.
        """
        return self.submit(items).result()

    def submit(self, items: Sequence[Item], *, spread: bool = True) -> Pending:
        """Start fetching ``items`` in the background; returns at once.

        Args:
            items: what to fetch.
            spread: cut the units smaller than ``batch_size`` so that every thread gets one (lowest
                latency, as :meth:`fetch_all` does); False keeps units of ``batch_size`` (fewest requests,
                for fetches started well ahead of need).
        """
        items = list(items)
        per_unit = self.batch_size
        if spread and items:
            per_unit = max(1, min(self.batch_size, -(-len(items) // self.threads)))
        units = [[u for u, _ in unit] for unit in self._units(iter(items), per_unit)]
        executor = self._pool()
        return Pending([executor.submit(self.getter.fetch, unit) for unit in units])

    # -- internals ---------------------------------------------------------------------------------
    def _pool(self) -> ThreadPoolExecutor:
        return self._executor.get()

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.threads, thread_name_prefix="ais-wds-fetch")

    def _units(self, it: Iterator[Item], per_unit: Optional[int] = None, unit_bytes: Optional[int] = None,
               estimate: Optional[_SizeEstimate] = None) -> Iterator[List[Item]]:
        """Cut ``it`` into units of at most ``per_unit`` objects and ``unit_bytes`` listed bytes (defaults:
        ``batch_size``, ``batch_bytes``)."""
        per_unit = per_unit or self.batch_size
        unit_bytes = unit_bytes or self.batch_bytes
        if per_unit == 1:
            for item in it:
                yield [item]
            return
        estimate = estimate or _SizeEstimate(self.unknown_size)
        unit: List[Item] = []
        nbytes = 0
        for item in it:
            size = estimate.of(item[1])
            if unit and (len(unit) >= per_unit or nbytes + size > unit_bytes):
                yield unit
                unit, nbytes = [], 0
            unit.append(item)
            nbytes += size
        if unit:
            yield unit


class Pending:
    """Fetches started by :meth:`Prefetcher.submit`: ``result()`` waits for them, ``cancel()`` drops them."""

    def __init__(self, futures: List[Future[List[Result]]]):
        self._futures = futures

    def done(self) -> bool:
        return all(f.done() for f in self._futures)

    def result(self) -> List[Result]:
        """Every result, in item order (waits). Raises what a getter raised (not per-object errors)."""
        out: List[Result] = []
        try:
            for future in self._futures:
                out.extend(future.result())
        finally:
            self.cancel()
        return out

    def cancel(self) -> None:
        for future in self._futures:
            future.cancel()


class _SizeEstimate:
    """Bytes to assume for an object of unknown size: ``initial`` until fetches show the mean size."""

    def __init__(self, initial: int):
        self.initial = initial
        self.total = 0
        self.count = 0

    def of(self, size: int) -> int:
        if size >= 0:
            return size
        return self.total // self.count if self.count else self.initial

    def learn(self, unit: List[Item], results: Sequence[Optional[Result]]) -> None:
        for (_, size), result in zip(unit, results):
            if size < 0 and isinstance(result, bytes):
                self.total += len(result)
                self.count += 1
