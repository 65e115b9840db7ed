"""A sample as a reference: (shard number in the job's shard list, sample number in the shard) packed in
one integer, ``shard << 32 | sample``; what a shuffle keeps in its state instead of a sample's bytes.

A shard holds fewer than 2**32 samples (AIS's own shard index stops at 2**20 members). Pure logic.
"""

from __future__ import annotations

from typing import Tuple

SAMPLE_BITS = 32
SAMPLE_MASK = (1 << SAMPLE_BITS) - 1


def pack_ref(shard: int, sample: int) -> int:
    """One integer for sample ``sample`` of shard ``shard``."""
    return (shard << SAMPLE_BITS) | sample


def unpack_ref(ref: int) -> Tuple[int, int]:
    """``(shard, sample)`` of a packed reference."""
    return ref >> SAMPLE_BITS, ref & SAMPLE_MASK
