"""``ais_wds.Mix``: weighted mixing of ais_wds sources, with exact and elastic resume, weights that change
mid-run and stratified batches.

Each position ``p`` of a mix epoch reads the source that the seeded draw of ``p`` picks
(:mod:`.draws`: a pure function of seed, epoch, ``p`` and the weights in effect). The positions of an
epoch are split over ranks and DataLoader workers as ais_wds splits any epoch (contiguous, balanced
shares; :mod:`ais_wds.epochs.plan`), and every source is split by its own rules: a worker reads its own
share of each source's epoch, in order, starting the source's next epoch when its share runs out (count
rule). So the mix is exactly-once per source epoch across the job, and its state is small: the
positions read, each source's own state, the weights (:mod:`.state`).
"""

from __future__ import annotations

import itertools
import logging
from operator import length_hint
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from torch.utils.data import IterableDataset

from ..epochs.plan import Epochs, PartPlan, rank_length, slots
from ..errors import ConfigError
from ..partition import rank_world
from ..streaming.pipeline import Cursor
from . import state as mix_state
from .draws import Draws, check_weights
from .sources import SOURCE_EPOCHS, Source
from .stop import ALL_EXHAUSTED, FIRST_EXHAUSTED, StopRule
from .stratify import batch_sources
from .weights import SharedWeights

logger = logging.getLogger(__name__)

CHECK_EVERY = 16
"""Positions between two looks at the shared weights (a change reaches a worker within that many samples)."""
_CHECK_MASK = CHECK_EVERY - 1  # (a power of two)

_STOP = object()


class Mix(IterableDataset):
    """An iterable dataset that draws each sample from one of ``sources`` with probability ``weights[i]``.

    Args:
        sources: ais_wds front ends: :class:`ais_wds.WebDataset` pipelines (their own decode / map
            stages, no ``.batched``) and :class:`ais_wds.AISIterDataset` datasets, built on this rank
            (each keeps its own split over ranks and workers, shuffle and seed).
        weights: one number per source, >= 0 (normalised).
        seed: seed of the draws; the same on every rank.
        stop: when an epoch of the mix ends:

            * an ``int`` N: after exactly N samples per rank (split over its DataLoader workers);
              ``len()`` is N, the same on every rank, so DDP never waits. A source whose share runs
              out in a worker starts its next epoch there (a new order). The usual choice.
            * ``"first_exhausted"`` (default): a worker stops when it draws a source whose share it has
              read to the end. Nothing repeats; counts may differ by rank and worker.
            * ``"all_exhausted"``: an exhausted source leaves the draw (the other weights are
              renormalised); a worker stops when all sources of positive weight are exhausted: every
              sample of every source once per epoch; counts may differ by rank and worker.
        batch_size: yield lists of ``batch_size`` samples, made in the worker (use a DataLoader with
            ``batch_size=None``); a rank's last batch per worker may be shorter.
        stratified: every batch holds the weights' proportions exactly (largest-remainder rounding of
            ``weights x batch_size``: 10/6/4 of 20 for 0.5/0.3/0.2; samples grouped by source) instead
            of leaving them to the draws. Needs ``batch_size``.
        rank, world_size: default: those the sources were built with (they must agree).

    Each mix epoch starts a new epoch of every source. Epochs advance by themselves (as in the other
    ais_wds datasets); :meth:`set_epoch` fixes the next one. :meth:`set_weights` changes the weights
    while the DataLoader's workers run; the change is part of the state.

    State: ``state_dict()`` / ``load_state_dict()`` (torchdata's ``StatefulDataLoader``: exact resume at
    the same shape, same order); ``ais_wds.job_state(...)`` over every rank's loader state resumes at
    another world size or worker count: per source, the rest of each epoch in progress is read exactly
    once, the rest of the mix epoch's sample count is split evenly (``stop=<count>``), and draws follow
    the latest weights. Small plain data (``torch.save`` / json).

    Raises:
        ConfigError: a source that is not an ais_wds front end, known to be empty (named), or built for
            another rank; weights that are not one non-negative number per source with a positive sum;
            a bad ``stop``, ``batch_size`` or ``stratified`` without ``batch_size``.

    Process safety: picklable (fork, spawn, forkserver workers). Thread safety: one iterator at a time.
    """

    def __init__(self, sources: Sequence[Any], weights: Sequence[float], *, seed: int = 0,
                 stop: Union[int, str] = "first_exhausted", batch_size: Optional[int] = None,
                 stratified: bool = False, rank: Optional[int] = None, world_size: Optional[int] = None):
        super().__init__()
        if not sources:
            raise ConfigError("a mix needs at least one source")
        self.sources = [Source(ds, i) for i, ds in enumerate(sources)]
        self._shared = SharedWeights(check_weights(weights, len(self.sources)))
        self.rule = StopRule.parse(stop)
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size <= 0):
            raise ConfigError(f"batch_size={batch_size!r}: a positive int, or None for single samples")
        if stratified and batch_size is None:
            raise ConfigError("stratified=True needs batch_size= (the batch whose proportions are exact)")
        self.batch_size = batch_size
        self.stratified = bool(stratified)
        self.seed = int(seed)
        built = {s.rank_world() for s in self.sources}
        if len(built) > 1:
            raise ConfigError(f"the sources were built for different ranks / world sizes: {sorted(built)}",
                              hint="build every source on its rank with the same rank= / world_size=")
        source_rank, source_world = built.pop()
        rank, world_size = (source_rank, source_world) if rank is None and world_size is None else \
            rank_world(rank, world_size)
        if (rank, world_size) != (source_rank, source_world):
            raise ConfigError(f"the mix is for rank {rank}/{world_size} but its sources for "
                              f"{source_rank}/{source_world}", hint="give the sources the same rank= / world_size=")
        self.positions = Epochs(rank, world_size, self.rule.even, "ais_wds.Mix")
        self._loaded: Optional[Dict[str, Any]] = None  # a state waiting for the next pass
        self._run: Optional[_Run] = None  # the pass in progress in this process (never pickled)

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_run"] = None
        return state

    # -- settings -----------------------------------------------------------------------------------
    @property
    def weights(self) -> List[float]:
        """The current weights (normalised): the last :meth:`set_weights`, else the constructor's (or a
        loaded state's)."""
        return self._shared.read()[1]

    def set_weights(self, weights: Sequence[float]) -> None:
        """New weights, in effect in this process and in every DataLoader worker started from it within
        ``CHECK_EVERY`` samples of each worker (a few batches, counting what workers have prefetched).
        Call it on every rank. The change and where it took effect are part of the state.

        Raises:
            ConfigError: not one non-negative number per source with a positive sum.
        """
        values = check_weights(weights, len(self.sources))
        version = self._shared.set(values)
        logger.info("ais_wds.Mix weights -> %s (version %d)", [round(w, 4) for w in values], version)

    @property
    def rank(self) -> int:
        return self.positions.rank

    @property
    def world_size(self) -> int:
        return self.positions.world_size

    @property
    def epoch(self) -> int:
        """The mix epoch in progress in this process, else the next one."""
        return self.positions.epoch

    def set_epoch(self, epoch: int) -> None:
        """Start mix ``epoch`` at the next iteration (optional: epochs advance by themselves)."""
        self.positions.set_epoch(int(epoch))

    def _identity(self) -> Dict[str, Any]:
        return {"dataset": "ais_wds.Mix", "num_sources": len(self.sources), "seed": self.seed,
                "stop": self.rule.to_value(), "batch_size": self.batch_size or 0, "stratified": self.stratified}

    def _align(self) -> int:
        return self.batch_size or 1

    def _n(self) -> int:
        return self.rule.positions(self.positions.world_size)

    def __len__(self) -> int:
        """Items this rank yields in a whole epoch (``stop=<count>`` only): the count, or with
        ``batch_size=b`` the number of batches, ``ceil(count / b)``.

        Raises:
            TypeError: ``stop="first_exhausted"`` / ``"all_exhausted"``: the count depends on the draws.
        """
        if self.rule.count is None:
            raise TypeError(f"ais_wds.Mix(stop={self.rule.mode!r}) has no len(): the count depends on the draws; "
                            "use stop=<samples per rank>")
        samples = rank_length(self._n(), self.positions.world_size, self.positions.rank, self.rule.even)
        return -(-samples // self.batch_size) if self.batch_size else samples

    # -- state --------------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """This process's position (in a DataLoader worker: that worker's): see :mod:`ais_wds.mixing.state`."""
        if self._run is not None:
            return self._run.state()
        if self._loaded is not None:
            return dict(self._loaded)
        version, latest = self._shared.read()
        return {**self._identity(), "kind": mix_state.PART_KIND, "version": mix_state.VERSION,
                "positions": self.positions.state(self._n(), self._identity(), align=self._align()),
                "sources": [{"state": s.fresh(self.positions.epoch * SOURCE_EPOCHS), "queue": []}
                            for s in self.sources],
                "weights": latest, "latest": latest, "latest_version": version, "changes": [], "exhausted": []}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume at the next iteration, from a part state (same rank and worker: exact, same order) or a
        job state (``ais_wds.job_state``: any world size and worker count).

        Raises:
            ConfigError: not a state of this mix (other sources, seed, stop or batch settings).
        """
        identity = {**self._identity(), "version": mix_state.VERSION}
        loaded = mix_state.check(state, identity)
        weights = check_weights(loaded["latest"], len(self.sources))
        self.positions.load(loaded["positions"], {**self._identity()})
        from .._core.dist import torch_worker

        if torch_worker() is None:
            self._shared.set(weights)
        else:
            self._shared.seed_if_untouched(weights)
        self._loaded = dict(loaded)

    def __repr__(self) -> str:
        return (f"Mix({len(self.sources)} sources, weights {[round(w, 4) for w in self.weights]}, "
                f"stop={self.rule.to_value()!r}, epoch {self.epoch})")

    # -- iteration ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        plan = self.positions.begin(self._n(), self._identity(), align=self._align())
        loaded, self._loaded = self._loaded, None
        run = self._run = _Run(self, plan, loaded if self.positions.resumed else None)
        if self.batch_size is None:
            return run.samples()
        return run.batches()


class _Run:
    """One pass of a mix in one process: the positions plan, the draws, every source's iterator."""

    def __init__(self, mix: Mix, plan: PartPlan, loaded: Optional[Dict[str, Any]]):
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


__all__ = ["Mix", "ALL_EXHAUSTED", "FIRST_EXHAUSTED"]
