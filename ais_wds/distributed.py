"""List once per job: run a listing on rank 0 and share the result with every DDP rank.

Only active when ``torch.distributed`` is initialised with more than one rank; otherwise the function
simply runs locally. Every rank must call it (it is a collective), as DDP code constructs its datasets
on every rank. An error on rank 0 is re-raised on every rank.
"""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)


def run_on_rank0_and_share(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0, its result broadcast to all ranks (pickled); locally when not distributed."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return fn()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return fn()
    box: list = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", fn())
        except Exception as e:  # noqa: BLE001 - shipped to the other ranks, re-raised everywhere
            box[0] = ("error", e)
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise value
    return value
