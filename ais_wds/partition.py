"""Deterministic splitting of a listing across DDP ranks and DataLoader workers, and epoch shuffles: the
public face of the epoch plans (:mod:`ais_wds.epochs.plan`).

Every entry goes to exactly one (rank, worker) part, by the one rule every front end uses: the epoch's
order is cut into contiguous, balanced runs, first by rank (rank r of W gets positions
``[r*n//W, (r+1)*n//W)``), then, inside a rank, by worker the same way, so a rank's workers together
see exactly the rank's share. With ``even="drop"`` or ``even="repeat"`` every rank gets the same count
(needed by DDP collectives): ``drop`` leaves out the last ``n % world_size`` entries of the (shuffled)
order, ``repeat`` reuses entries from the start of that order, as ``torch.utils.data.DistributedSampler``
does.

Pure logic; no I/O. Thread- and process-safe.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._core.dist import torch_rank_world, torch_worker
from .epochs.plan import EVEN_MODES, check_even, part_runs, slots
from .epochs.shuffle import shuffled_range
from .errors import ConfigError

__all__ = ["EVEN_MODES", "Part", "current_part", "dist_rank_world", "epoch_order", "job_state", "partition",
           "rank_world", "worker_part"]


@dataclass(frozen=True)
class Part:
    """Where this iterator runs: DDP rank / world size and DataLoader worker / worker count."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    @property
    def index(self) -> int:
        """This part's number among ``count`` parts (rank-major)."""
        return self.rank * self.num_workers + self.worker

    @property
    def count(self) -> int:
        return self.world_size * self.num_workers

    def __post_init__(self) -> None:
        if not (0 <= self.rank < self.world_size) or not (0 <= self.worker < self.num_workers):
            raise ConfigError(f"invalid part {self}: need 0 <= rank < world_size and 0 <= worker < num_workers")


def dist_rank_world() -> Tuple[int, int]:
    """(rank, world_size) of the calling process, from the first of:

    1. ``torch.distributed`` when a process group is initialised (any launcher, ``mp.spawn`` included);
    2. ``RANK`` / ``WORLD_SIZE`` (torchrun, and most launchers);
    3. ``SLURM_PROCID`` / ``SLURM_STEP_NUM_TASKS`` inside an ``srun`` job step;
    4. (0, 1).

    Call it in the rank's own process (where the dataset is built), never inside a DataLoader worker:
    a spawned worker has no process group. The datasets do so and carry the answer to their workers.

    Raises:
        ConfigError: the environment gives an impossible rank or world size.
    """
    from_torch = torch_rank_world()
    if from_torch is not None:
        return from_torch
    env = os.environ
    if "RANK" in env or "WORLD_SIZE" in env:
        found, source = (_env_int("RANK", 0), _env_int("WORLD_SIZE", 1)), "RANK/WORLD_SIZE"
    elif "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
        found, source = (_env_int("SLURM_PROCID", 0), _env_int("SLURM_STEP_NUM_TASKS", 1)), "SLURM"
    else:
        return 0, 1
    if not 0 <= found[0] < found[1]:
        raise ConfigError(f"{source} in the environment give rank {found[0]} of world size {found[1]}",
                          hint="set RANK < WORLD_SIZE, or pass rank= and world_size= explicitly")
    return found


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise ConfigError(f"{name}={value!r} in the environment is not an integer") from None


def rank_world(rank: Optional[int] = None, world_size: Optional[int] = None) -> Tuple[int, int]:
    """(rank, world_size): the explicit values when both are given, else :func:`dist_rank_world`.

    Raises:
        ConfigError: only one of the two is given, or they are inconsistent.
    """
    if rank is None and world_size is None:
        return dist_rank_world()
    if rank is None or world_size is None:
        raise ConfigError("give both rank= and world_size= (or neither, to detect them)")
    Part(int(rank), int(world_size))  # validates
    return int(rank), int(world_size)


def worker_part(rank: int, world_size: int) -> Part:
    """The :class:`Part` of the caller for a rank known in advance: the DataLoader worker is detected here
    (this is safe inside a worker; the rank never is)."""
    worker, num_workers = torch_worker() or (0, 1)
    return Part(rank, world_size, worker, num_workers)


def current_part() -> Part:
    """The :class:`Part` of the calling process: DDP rank (see :func:`dist_rank_world`) and DataLoader worker.

    Inside a DataLoader worker the rank is only right where the launcher set RANK / WORLD_SIZE: datasets
    capture the rank when they are built and use :func:`worker_part` instead.
    """
    return worker_part(*dist_rank_world())


def epoch_order(n: int, *, seed: Optional[int], epoch: int = 0) -> List[int]:
    """The order of ``n`` entries for ``epoch``: ``range(n)`` when ``seed`` is None, else a permutation
    that depends only on (seed, epoch) and is the same in every process: the permutation that
    ``random.Random(f"ais_wds:{seed}:{epoch}").shuffle`` makes, computed with numpy for large ``n``
    (10 million entries in seconds instead of minutes; :mod:`ais_wds.epochs.shuffle`)."""
    if seed is None:
        return list(range(n))
    return shuffled_range(n, random.Random(f"ais_wds:{seed}:{epoch}"))


def partition(order: Sequence[int], part: Part, *, even: Optional[str] = None) -> List[int]:
    """The entries of ``order`` that belong to ``part``: its contiguous run of the epoch plan, exactly the
    entries a front end with the same shape reads (see the module docstring).

    Args:
        order: the epoch's order of entry indices (from :func:`epoch_order`).
        part: which rank and worker is asking.
        even: None (ranks may differ by one entry), ``"drop"`` or ``"repeat"`` (equal counts per rank).

    Returns:
        Indices, in epoch order, for this part only (only this part's share is built).

    Raises:
        ConfigError: an unknown ``even``.
    """
    check_even(even)
    runs = part_runs([(0, len(order), 0)], part.world_size, part.num_workers, part.rank, part.worker, even)
    return [order[i] for i in slots(runs)]


def job_state(loader_state: Any) -> Dict[str, Any]:
    """The state of the whole job, for resuming at another world size or worker count (elastic resume).

    A collective when ``torch.distributed`` is initialised: every rank calls it with its own
    ``StatefulDataLoader.state_dict()`` (or a dataset's / sampler's ``state_dict()``, or a list of
    them); every rank gets the same job state back (save it on rank 0). Without a process group, pass
    the loader states of every rank in a list.

    Load it with ``dataset.load_state_dict(state)`` (or ``sampler.load_state_dict``) on every rank of the
    new job, before the loader starts; the new job needs the same listing (or index) and seed. Every
    sample not consumed before is read exactly once after, split over the new ranks and workers.

    Returns:
        Small plain data (``torch.save`` / json): the epoch, and per earlier shape every part's progress.

    Raises:
        ConfigError: no ais_wds state in ``loader_state``, a rank's or worker's state is missing, or the
            states come from different epochs or datasets; a loader state taken between snapshots.
    """
    from ._core.dist import all_gather
    from .epochs.plan import find_part_states, merge_job_state

    gathered = all_gather(find_part_states(loader_state))
    return merge_job_state([state for rank in gathered for state in rank])
