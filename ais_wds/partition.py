"""Deterministic splitting of a listing across DDP ranks and DataLoader workers, and epoch shuffles.

Every entry goes to exactly one (rank, worker) part. The split is first by rank (strided), then, inside
a rank, by worker (strided), so a rank's workers together see exactly the rank's share. With
``even="drop"`` or ``even="repeat"`` every rank gets the same count (needed by DDP collectives):
``drop`` leaves out the last ``n % world_size`` entries of the (shuffled) order, ``repeat`` reuses
entries from the start of that order, as ``torch.utils.data.DistributedSampler`` does.

Pure logic; no I/O. Thread- and process-safe.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import List, Optional, Sequence

from ._core.dist import torch_rank_world, torch_worker
from .errors import ConfigError

EVEN_MODES = (None, "drop", "repeat")


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


def dist_rank_world() -> tuple[int, int]:
    """(rank, world_size) from ``torch.distributed`` when initialised, else RANK / WORLD_SIZE, else (0, 1)."""
    from_torch = torch_rank_world()
    if from_torch is not None:
        return from_torch
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def current_part() -> Part:
    """The :class:`Part` of the calling process: DDP rank and DataLoader worker (if inside one)."""
    rank, world = dist_rank_world()
    worker, num_workers = torch_worker() or (0, 1)
    return Part(rank, world, worker, num_workers)


def epoch_order(n: int, *, seed: Optional[int], epoch: int = 0) -> List[int]:
    """The order of ``n`` entries for ``epoch``: ``range(n)`` when ``seed`` is None, else a permutation
    that depends only on (seed, epoch) and is the same in every process."""
    order = list(range(n))
    if seed is not None:
        random.Random(f"ais_wds:{seed}:{epoch}").shuffle(order)
    return order


def partition(order: Sequence[int], part: Part, *, even: Optional[str] = None) -> List[int]:
    """The entries of ``order`` that belong to ``part``.

    Args:
        order: the epoch's order of entry indices (from :func:`epoch_order`).
        part: which rank and worker is asking.
        even: None (ranks may differ by one entry), ``"drop"`` or ``"repeat"`` (equal counts per rank).

    Returns:
        Indices, in epoch order, for this part only.
    """
    if even not in EVEN_MODES:
        raise ConfigError(f"even must be one of {EVEN_MODES}, got {even!r}")
    order = list(order)
    world = part.world_size
    if even == "drop":
        order = order[: len(order) - len(order) % world]
    elif even == "repeat" and order and len(order) % world:
        pad = world - len(order) % world
        order = order + (order * (pad // len(order) + 1))[:pad]
    rank_share = order[part.rank::world]
    return rank_share[part.worker::part.num_workers]
