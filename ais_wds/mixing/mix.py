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

import logging
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from torch.utils.data import IterableDataset

from ..epochs.plan import Epochs, rank_length
from ..errors import ConfigError
from ..partition import rank_world
from . import state as mix_state
from .draws import check_weights
from .passes import MixPass
from .sources import SOURCE_EPOCHS, Source
from .stop import ALL_EXHAUSTED, FIRST_EXHAUSTED, StopRule
from .weights import SharedWeights

logger = logging.getLogger(__name__)



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
        rank: this rank; default: the rank the sources were built with (they must agree).
        world_size: the number of ranks; default: the world size the sources were built with (they must
            agree).

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
        self._run: Optional[MixPass] = None  # the pass in progress in this process (never pickled)

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
        16 samples of each worker (``passes.CHECK_EVERY``; a few batches, counting what the workers had
        prefetched). Call it on every rank. The change and where it took effect are part of the state.

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
        run = self._run = MixPass(self, plan, loaded if self.positions.resumed else None)
        if self.batch_size is None:
            return run.samples()
        return run.batches()


__all__ = ["Mix", "ALL_EXHAUSTED", "FIRST_EXHAUSTED"]
