"""What the core asks of torch.distributed and DataLoader workers, without importing torch.

The core never imports torch: a process group can only be initialised, and a DataLoader worker can
only exist, in a process that has already imported torch, so the core looks at ``sys.modules`` and
asks torch only when it is there. This keeps ``import ais_wds`` and the CLI torch-free while every
front end (which does import torch) gets the real answers.

:func:`run_on_rank0_and_share` lists once per job: it runs a listing on rank 0 and shares the result
with every DDP rank. Only active when ``torch.distributed`` is initialised with more than one rank;
otherwise the function simply runs locally. Every rank must call it (it is a collective), as DDP code
constructs its datasets on every rank. An error on rank 0 is re-raised on every rank.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, List, Optional, Tuple, TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)


def _initialised_dist() -> Any:
    """``torch.distributed`` when torch is loaded and a process group is initialised, else None."""
    if "torch" not in sys.modules:
        return None
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist
    return None


def torch_rank_world() -> Optional[Tuple[int, int]]:
    """``(rank, world_size)`` of the initialised process group, or None when there is none."""
    dist = _initialised_dist()
    return (dist.get_rank(), dist.get_world_size()) if dist is not None else None


def torch_worker() -> Optional[Tuple[int, int]]:
    """``(worker id, num_workers)`` inside a DataLoader worker, else None."""
    if "torch.utils.data" not in sys.modules:
        return None
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else None


def run_on_rank0_and_share(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0, its result broadcast to all ranks (pickled); locally when not distributed."""
    dist = _initialised_dist()
    if dist is None or dist.get_world_size() < 2:
        return fn()
    box: List[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", fn())
        except Exception as e:  # noqa: BLE001 - shipped to the other ranks, re-raised everywhere
            box[0] = ("error", e)
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise value
    return value  # type: ignore[no-any-return]  # fn()'s result, through pickle


def all_gather(value: T) -> List[T]:
    """Every rank's ``value`` (pickled), in rank order; ``[value]`` when not distributed. A collective."""
    dist = _initialised_dist()
    if dist is None or dist.get_world_size() < 2:
        return [value]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def worker_generation() -> Optional[int]:
    """An id shared by the DataLoader workers of one DataLoader iteration (its base seed), or None
    outside workers. A persistent worker keeps its id across epochs."""
    if "torch.utils.data" not in sys.modules:
        return None
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return int(info.seed) - int(info.id) if info is not None else None
