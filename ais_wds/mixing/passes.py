"""One pass of an ``ais_wds.Mix`` in one process (the main one, or a DataLoader worker): its part of the
mix epoch's positions, the draws, every source's iterator and epoch, the weights in effect, and its
state (:mod:`.state`). The dataset (:mod:`.mix`) makes one per ``iter()``.

Per sample the pass adds no Python frame of its own: each segment of ``CHECK_EVERY`` positions is one
``map(next, <the drawn sources' iterators>)``, the segments are chained and counted in C as their samples
leave. Between segments it looks at the shared weights; a segment that ends early is a source whose
share ran out (the count rule starts that source's next epoch; the exhaustion rules stop, or take the
source out of the draw and draw the position again).

Thread safety: one pass per iterator, used by one thread.
"""

from __future__ import annotations

import itertools
import logging
from operator import length_hint
from typing import Any, Dict, Iterator, List, Optional

from ..epochs.plan import PartPlan, slots
from ..streaming.pipeline import Cursor
from . import state as mix_state
from .draws import Draws
from .sources import SOURCE_EPOCHS
from .stop import FIRST_EXHAUSTED
from .stratify import batch_sources

logger = logging.getLogger(__name__)

CHECK_EVERY = 16
"""Positions between two looks at the shared weights (a change reaches a worker within that many samples)."""
_CHECK_MASK = CHECK_EVERY - 1  # (a power of two)

_STOP = object()


class MixPass:
    """One pass of a mix in one process: the positions plan, the draws, every source's iterator."""

    def __init__(self, mix: Any, plan: PartPlan, loaded: Optional[Dict[str, Any]]):
        """``mix``: the :class:`ais_wds.Mix` (its sources, rule, seed, batch settings, shared weights);
        ``plan``: this part's positions; ``loaded``: the state to resume, or None (a fresh pass)."""
        self.mix = mix
        self.plan = plan
        self.sources = mix.sources
        self.rule = mix.rule
        count = len(self.sources)
        self.seen = mix._shared.version
        if loaded is not None:
            self.weights = list(loaded["weights"])
            self.changes: List[List[Any]] = [list(c) for c in loaded.get("changes", [])]
            exhausted = set(int(i) for i in loaded.get("exhausted", []))
            pending_latest: Optional[List[float]] = list(loaded["latest"])
            entries = loaded["sources"]
        else:
            self.seen, self.weights = mix._shared.read()
            self.changes, exhausted, pending_latest = [], set(), None
            entries = [None] * count
        self.active = [i not in exhausted for i in range(count)]
        base = plan.epoch * SOURCE_EPOCHS
        self.base = base
        self.queues: List[List[Dict[str, Any]]] = []
        self.iters: List[Any] = [None] * count + [iter(())]  # the last one, always empty, ends each segment
        self.epochs = [base] * count
        self.fresh = [False] * count  # the source's current epoch began fresh here and yielded nothing yet
        for i, entry in enumerate(entries):
            if entry is None:
                self.queues.append([])
                self._start(i, base)
            elif "state" in entry:  # a part state: exactly where this part stood
                self.queues.append([dict(q) for q in entry.get("queue", [])])
                self.epochs[i] = int(entry["state"]["epoch"])
                self.iters[i] = self.sources[i].start(entry["state"])
            else:  # a job state: the rest of each epoch in progress, then fresh ones
                self.queues.append([dict(q) for q in entry["queue"]])
                first = int(entry.get("epoch", base))
                if self.rule.count is None and first != base:
                    self.active[i] = False  # (exhaustion rules read one epoch of a source) nothing left
                    self.epochs[i] = first
                else:
                    self._start(i, first)
        self.draws = Draws(mix.seed, plan.epoch, self.weights, self.active) if any(self.active) else None
        self.cursor: Optional[Cursor] = None  # counts the samples of samples() (None: batches count themselves)
        # a change this part's state had seen but not applied: applied where the uninterrupted pass would
        # have (its next look at the weights: a segment or batch start)
        self.pending = pending_latest if pending_latest is not None and pending_latest != self.weights else None
        self.starts = {first for first, _, _ in plan.runs}

    def _start(self, i: int, epoch: int) -> None:
        queue = self.queues[i]
        while queue and int(queue[0]["epoch"]) < epoch:
            queue.pop(0)
        if queue and int(queue[0]["epoch"]) == epoch:
            state, self.fresh[i] = queue.pop(0), False
        else:
            state, self.fresh[i] = self.sources[i].fresh(epoch), True
        self.epochs[i] = epoch
        self.iters[i] = self.sources[i].start(state)

    # -- state --------------------------------------------------------------------------------------
    def state(self) -> Dict[str, Any]:
        mix = self.mix
        sources: List[Dict[str, Any]] = []
        for i, source in enumerate(self.sources):
            if self.iters[i] is None:  # left the draw before it began (job state: nothing left)
                sources.append({"state": source.fresh(self.epochs[i]), "queue": []})
            else:
                sources.append({"state": source.state(), "queue": self.queues[i]})
        version, latest = mix._shared.read()
        if self.pending is not None:  # (a resumed change not applied yet: still the one to apply)
            latest = list(self.pending)
        if self.cursor is not None:
            self.plan.progress = (self.cursor.done + self.cursor.count, 0)
        return {**mix._identity(), "kind": mix_state.PART_KIND, "version": mix_state.VERSION,
                "positions": self.plan.state(), "sources": sources, "weights": list(self.weights),
                "latest": latest, "latest_version": version, "changes": self.changes[-mix_state.MAX_CHANGES:],
                "exhausted": [i for i, a in enumerate(self.active) if not a]}

    # -- weights and exhaustion ---------------------------------------------------------------------
    def _check_weights(self, p: int, boundary: bool = False) -> None:
        """Take new weights, if any, from position ``p`` (a segment start; ``boundary``: a batch start)."""
        if self.pending is not None and (boundary or not p & _CHECK_MASK or p in self.starts):
            self._apply(self.pending, p)
            self.pending = None
        version = self.mix._shared.version
        if version == self.seen:
            return
        self.seen, weights = self.mix._shared.read()
        self._apply(weights, p)

    def _apply(self, weights: List[float], p: int) -> None:
        if weights != self.weights:
            self.weights = weights
            self.changes.append([self.plan.epoch, p, list(weights)])
            self._remap()

    def _remap(self) -> bool:
        """Redraw over the active sources; False when none of positive weight is left."""
        if not any(a and w > 0 for a, w in zip(self.active, self.weights)):
            return False
        if self.draws is None:
            self.draws = Draws(self.mix.seed, self.plan.epoch, self.weights, self.active)
        else:
            self.draws.remap(self.weights, self.active)
        return True

    def _take(self, i: int) -> Any:
        """The next sample of source ``i``; None when ``i`` left the draw (then redraw); ``_STOP``: end the pass."""
        try:
            return next(self.iters[i])
        except StopIteration:
            return self._refill(i)

    def _refill(self, i: int) -> Any:
        """Source ``i``'s share ran out: (count rule) its next epoch's first sample, else leave the draw."""
        while True:
            if self.rule.count is not None and not self._empty(i):
                self._start(i, self.epochs[i] + 1)  # its next epoch, a new order
                try:
                    return next(self.iters[i])
                except StopIteration:
                    continue
            if self.rule.mode == FIRST_EXHAUSTED:
                return _STOP
            if self.rule.count is not None:
                logger.warning("ais_wds.Mix: %s has no sample for rank %d worker %d of %d (epoch %d is split "
                               "over more parts than it has samples): it leaves this worker's draw",
                               self.sources[i].name, self.plan.rank, self.plan.worker, self.plan.num_workers,
                               self.epochs[i])
            self.active[i] = False
            return None if self._remap() else _STOP

    def _empty(self, i: int) -> bool:
        """Whether source ``i``'s current epoch began fresh here and gave this part nothing (an empty share)."""
        return self.fresh[i] and not any(self.sources[i].state()["progress"])

    # -- the two iterators --------------------------------------------------------------------------
    def samples(self) -> Iterator[Any]:
        """The pass's samples, with no Python frame per sample of the mix's own: each segment of
        ``CHECK_EVERY`` positions is ``map(next, <the drawn sources' iterators>)``, chained, and counted
        by a C counter as they leave (``itertools.compress`` with the counter as its always-true
        selectors, as ``ais_wds.WebDataset`` counts). A segment that ends early is a source whose share
        ran out: :meth:`_segments` handles it and goes on."""
        cursor = self.cursor = Cursor(self.plan.progress[0], 0)
        return itertools.compress(itertools.chain.from_iterable(self._segments()), cursor.counting())

    def _segments(self) -> Iterator[Iterator[Any]]:
        plan, get, shared, end_mark = self.plan, self.iters.__getitem__, self.mix._shared, len(self.sources)
        if self.draws is None or not self._remap():
            return
        draws = self.draws  # (remap changes the draws in place)
        for first, end, _ in plan.left():
            p = first
            while p < end:  # one look at the weights, one slice of draws per segment
                if self.pending is not None or shared.changed(self.seen):
                    self._check_weights(p)
                picks = draws.sources(p, min(end, (p | _CHECK_MASK) + 1))
                size = len(picks)
                picks.append(end_mark)  # its iterator is empty: the map ends there, or where a share ran out
                order = iter(picks)
                yield map(next, map(get, order))
                done = size - length_hint(order)  # the picks the map went through (not the one it stopped at)
                p += done
                if done == size:
                    continue
                sample = self._refill(picks[done])  # the source of position p ran out
                while sample is None:  # it left the draw: p draws again among the others
                    sample = self._take(draws.source(p))
                if sample is _STOP:
                    return
                yield iter((sample,))
                p += 1

    def batches(self) -> Iterator[List[Any]]:
        plan, size = self.plan, self.mix.batch_size or 1
        if self.draws is None or not self._remap():
            return
        done = plan.progress[0]
        positions = slots(plan.left())
        while True:
            batch_positions = [p for _, p in zip(range(size), positions)]
            if not batch_positions:
                return
            self._check_weights(batch_positions[0], boundary=True)
            batch = self._stratified(len(batch_positions)) if self.mix.stratified else \
                self._drawn(batch_positions)
            if batch is _STOP:
                return
            done += len(batch_positions)
            plan.progress = (done, 0)
            yield batch
            if len(batch) < len(batch_positions):  # every source left the draw
                return

    def _drawn(self, positions: List[int]) -> Any:
        batch: List[Any] = []
        for p in positions:
            while True:
                sample = self._take(self.draws.source(p))  # type: ignore[union-attr]
                if sample is not None:
                    break
            if sample is _STOP:
                return _STOP if self.rule.mode == FIRST_EXHAUSTED or not batch else batch
            batch.append(sample)
        return batch

    def _stratified(self, size: int) -> Any:
        batch: List[Any] = []
        while len(batch) < size:
            weights = [w if a else 0.0 for w, a in zip(self.weights, self.active)]
            if not any(w > 0 for w in weights):
                break
            for i in batch_sources(weights, size - len(batch)):
                sample = self._take(i)
                if sample is _STOP:
                    if self.rule.mode == FIRST_EXHAUSTED or not batch:
                        return _STOP
                    return batch
                if sample is None:
                    break  # source i left: share out the rest of the batch again
                batch.append(sample)
        return batch if batch else _STOP
