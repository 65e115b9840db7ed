"""Read-ahead for the map-style dataset: predict a DataLoader worker's next batches and fetch them early.

A map-style dataset only sees the indices of the batch it is asked for, so every ``__getitems__``
pays a full round trip. When the order of indices is known (the dataset's own :class:`AISSampler`,
or plain sequential order), a batch identifies its position in that order; the DataLoader hands
batches to its workers round-robin, so a worker's next batches start ``num_workers x batch`` and
``2 x num_workers x batch`` further on. Those are fetched in the background (batch GETs) while the
current one is handed out. A wrong guess costs only wasted fetches: a batch is served from the
read-ahead only if its indices are exactly the ones predicted.

Used by ``ais_wds.datasets.map`` (whole objects) and ``ais_wds.shard_index.dataset`` (byte ranges: any
"listing" whose items are ``(key, size)`` and an engine whose getter fetches those keys).
"""

from __future__ import annotations

import threading
from array import array
from dataclasses import replace
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

from .._core.process_local import ProcessLocal
from ..objects.fetch import Result
from ..objects.prefetch import Item, Pending, Prefetcher
from .sampler import OrderSpec


class Items(Protocol):
    """What the read-ahead predicts over: ``items[i]`` is ``(key, size)`` of index ``i`` (a :class:`Listing`:
    ``(url, size)``); the engine's getter fetches lists of keys."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Tuple[Any, int]: ...


Listing = Items


MAX_BYTES = 32 << 20
"""The default window of a process's read-ahead, in listed bytes (as AISIterDataset's ``max_bytes``). Measured
with AISDataset, 2400 x 100 KiB, 2 workers: the object count alone (``read_ahead=2048``, 200 MiB of these)
under the engine's 256 MiB had each worker at 100 MiB of its own during an epoch."""


class ReadAhead:
    """Read-ahead of one dataset; its state lives per process (never pickled, empty after fork). Thread-safe; it
    reads ahead usefully when batches are asked for in sampler order.

    Args:
        engine: fetches the predicted batches (batch GETs, up to its ``batch_size`` objects per request).
        objects: objects of this worker fetched ahead, in whole batches (at least one); 0: none.
        max_bytes: the window: most listed bytes of this process's batches requested and not yet taken
            (the next batch is always requested, whatever its size); a request holds at most
            ``max_bytes / engine.threads`` (or one batch). So a worker holds at most ``max_bytes`` read
            ahead, plus the batch it is handing out.
    """

    def __init__(self, engine: Prefetcher, objects: int, max_bytes: int = MAX_BYTES):
        self.engine = engine
        self.objects = objects
        self.max_bytes = max_bytes
        self._local: ProcessLocal[_ProcessReadAhead] = ProcessLocal(self._new_state)

    def _new_state(self) -> _ProcessReadAhead:
        return _ProcessReadAhead(self.engine, self.objects, self.max_bytes)

    def __getstate__(self) -> dict:
        return {"engine": self.engine, "objects": self.objects, "max_bytes": self.max_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["engine"], state["objects"], state.get("max_bytes", MAX_BYTES))  # type: ignore[misc]

    @property
    def hits(self) -> int:
        """Batches served from the read-ahead in this process (diagnostics)."""
        state = self._local.peek()
        return state.hits if state is not None else 0

    def take(self, listing: Listing, spec: Optional[OrderSpec], indices: Sequence[int], stride: int
             ) -> Optional[List[Result]]:
        """The results for ``indices`` if they were read ahead (waits for them), else None. Either way,
        when ``indices`` sit in the known order, starts fetching this worker's next batches (``objects``).

        Args:
            listing: the dataset's listing.
            spec: the order the sampler follows (None: sequential order).
            indices: the batch asked for.
            stride: batches between two batches of this worker (the DataLoader's ``num_workers``, >= 1).
        """
        return self._local.get().take(listing, spec, indices, stride)


class _ProcessReadAhead:
    """The predictions and requests of one process (a forked copy starts empty: the parent's fetch
    threads do not exist in it)."""

    def __init__(self, engine: Prefetcher, objects: int, max_bytes: int = MAX_BYTES):
        self.engine = engine
        self.objects = objects
        self.max_bytes = max_bytes
        self._spec: Optional[OrderSpec] = None
        self._order = array("q")  # the known order (empty: sequential)
        self._inverse = array("q")  # index -> position in the order, -1 if not in it
        # first position of a batch -> (the request fetching it, its offset there, objects, listed bytes)
        self._ahead: Dict[int, Tuple[Pending, int, int, int]] = {}
        self._waiting: List[Tuple[int, List[Item], int]] = []  # predicted, not requested yet (too few)
        self._horizon = (-1, 0)  # (last position predicted, batch size)
        self._bytes = 0  # listed bytes in _ahead and _waiting
        self.hits = 0  # batches served from the read-ahead in this process (diagnostics)
        self._lock = threading.Lock()
        self._given: Optional[OrderSpec] = None  # the order the dataset was last told
        self._tried_next = False  # the next epoch's order was tried since the last batch found
        self._requests = 0  # read-ahead requests made by this process
        self._taken = -1  # the position of the last batch asked for (in the known order)

    def take(self, listing: Listing, spec: Optional[OrderSpec], indices: Sequence[int], stride: int
             ) -> Optional[List[Result]]:
        """See :meth:`ReadAhead.take`."""
        if self.objects <= 0 or not indices:
            return None
        with self._lock:
            self._sync(spec, len(listing))
            pos = self._locate(indices)
            if pos is None and self._spec is not None and not self._tried_next:
                # workers forked when an epoch starts hold the previous epoch's order (the sampler tells the
                # new one to the main process only at its first index): try the next epoch, once per miss run
                given, current = self._given, self._spec
                self._sync(replace(current, epoch=current.epoch + 1), len(listing))
                self._given, self._tried_next = given, True
                pos = self._locate(indices)
                if pos is None:  # not that either: back to the order we were told
                    self._spec = None if current is None else replace(current, epoch=-1)
                    self._sync(given, len(listing))
                    self._given, self._tried_next = given, True
            if pos is None:
                return None
            self._tried_next = False
            if pos <= self._taken:  # the same order again from an earlier place (an epoch in sequential order)
                self._forget()
            self._taken = pos
            size = len(indices)
            mine = self._ahead.pop(pos, None)
            self._drop_before(pos, mine)
            self._predict(listing, pos, size, stride)
        if mine is None or mine[2] != size:
            return None
        self.hits += 1
        group, offset, _, _ = mine
        return group.result()[offset: offset + size]

    # -- internals ---------------------------------------------------------------------------------
    def _drop_before(self, pos: int, mine: Optional[Tuple[Pending, int, int, int]]) -> None:
        """Forget predictions at or before ``pos`` (passed by); cancel requests nobody waits for."""
        dropped = [self._ahead.pop(k) for k in [k for k in self._ahead if k <= pos]]
        self._bytes -= sum(d[3] for d in dropped) + (mine[3] if mine is not None else 0)
        self._bytes -= sum(w[2] for w in self._waiting if w[0] <= pos)
        self._waiting = [w for w in self._waiting if w[0] > pos]
        live = {id(entry[0]) for entry in self._ahead.values()}
        if mine is not None:
            live.add(id(mine[0]))
        for entry in dropped:
            if id(entry[0]) not in live:
                entry[0].cancel()

    def _predict(self, listing: Listing, pos: int, size: int, stride: int) -> None:
        """Predict this worker's batches up to ``objects`` ahead (and ``max_bytes`` of listed sizes) and
        request them, several batches per request (up to the engine's ``batch_size`` objects and a thread's
        share of ``max_bytes``)."""
        end = len(self._order) if self._spec is not None else len(listing)
        step = stride * size
        last, last_size = self._horizon
        start = last + step if last_size == size and last > pos and (last - pos) % step == 0 else pos + step
        limit = min(end, pos + (-(-self.objects // size)) * step + 1)
        waiting = {w[0] for w in self._waiting}
        while start < limit:
            items = [listing[i] for i in self._slice(start, min(start + size, end))]
            nbytes = sum(s if s >= 0 else self.engine.unknown_size for _, s in items)
            if self._bytes + nbytes > self.max_bytes and start > pos + step:
                break  # at most max_bytes ahead, but always the next batch
            if start not in self._ahead and start not in waiting:
                self._waiting.append((start, items, nbytes))
                self._bytes += nbytes
            self._horizon = (start, size)
            start += step
        self._flush(urgent=pos + step)

    def _flush(self, urgent: int) -> None:
        """Request the waiting batches in groups of up to ``batch_size`` objects; a last, partial group
        waits for more batches unless the next batch of this worker is in it. The next batch itself, when it
        leads the waiting ones (a process that just started), is requested alone: it is needed first; then
        the groups double from one batch up to ``batch_size`` objects (and ``max_bytes / threads``)."""
        group: List[Tuple[int, List[Item], int]] = []
        count = nbytes = 0
        share = self.max_bytes // self.engine.threads
        for batch in self._waiting:
            if batch[0] == urgent and not group:  # needed next (a process's start): alone, so it comes back first
                self._submit([batch])
                continue
            # the first requests of a process grow from one batch to batch_size (1, 2, 4, ... batches): the
            # batches needed soonest come back soonest, the later ones in fewer, larger requests
            cap = min(self.engine.batch_size, len(batch[1]) << min(self._requests, 16))
            if group and (count + len(batch[1]) > cap or nbytes + batch[2] > share):
                self._submit(group)
                group, count, nbytes = [], 0, 0
            group.append(batch)
            count += len(batch[1])
            nbytes += batch[2]
        if group and any(start == urgent for start, _, _ in group):
            self._submit(group)
            group = []
        self._waiting = group

    def _submit(self, group: List[Tuple[int, List[Item], int]]) -> None:
        self._requests += 1
        pending = self.engine.submit([item for _, batch, _ in group for item in batch], spread=False)
        offset = 0
        for start, items, nbytes in group:
            self._ahead[start] = (pending, offset, len(items), nbytes)
            offset += len(items)

    def _sync(self, spec: Optional[OrderSpec], n: int) -> None:
        if spec != self._given:  # a new order: the old predictions are useless
            self._given = spec
            self._tried_next = False
        if spec != self._spec and (spec is None or self._spec is None or spec.epoch > self._spec.epoch
                                   or replace(spec, epoch=self._spec.epoch) != self._spec):
            self._forget()
            self._spec = spec
            self._order = array("q", spec.order(n) if spec is not None else [])
            self._inverse = array("q", [-1]) * n if spec is not None else array("q")
            for p, i in enumerate(self._order):
                self._inverse[i] = p

    def _forget(self) -> None:
        """Drop every prediction (cancel their requests) and predict afresh from the next batch asked for."""
        for entry in self._ahead.values():
            entry[0].cancel()
        self._ahead, self._waiting, self._horizon, self._bytes, self._taken = {}, [], (-1, 0), 0, -1

    def _slice(self, start: int, stop: int) -> Sequence[int]:
        return self._order[start:stop] if self._spec is not None else range(start, stop)

    def _locate(self, indices: Sequence[int]) -> Optional[int]:
        """Position of ``indices`` in the known order, if they are a run of it."""
        first = indices[0]
        pos = self._inverse[first] if self._spec is not None else first
        if pos < 0:
            return None
        run = self._slice(pos, pos + len(indices))
        if len(run) != len(indices) or any(a != b for a, b in zip(run, indices)):
            return None
        return pos
