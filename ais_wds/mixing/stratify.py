"""Stratified batch composition: how many samples of each source one batch holds.

Largest-remainder (Hamilton) rounding of ``weights x size``: every source first gets the whole part of
its quota, then the seats left go to the largest fractional parts (ties to the lower source index).
With weights 0.5 / 0.3 / 0.2 a batch of 20 holds 10 / 6 / 4, one of 8 holds 4 / 2 / 2 (quotas 4, 2.4,
1.6). A batch never differs from its exact quota by one sample or more; where ``weights x size`` is not
whole the rounding is the same in every batch, so the realised proportions are those of the rounded
counts. Pure logic; no I/O, no torch.
"""

from __future__ import annotations

from typing import List, Sequence


def largest_remainder(weights: Sequence[float], size: int) -> List[int]:
    """Counts per source, summing to ``size``, proportional to ``weights`` (largest-remainder rounding).

    Sources of weight 0 get 0. Raises ``ValueError`` when no weight is positive and ``size > 0``.
    """
    total = float(sum(w for w in weights if w > 0))
    if size <= 0:
        return [0] * len(weights)
    if total <= 0:
        raise ValueError("largest_remainder needs a positive weight")
    quotas = [(w / total) * size if w > 0 else 0.0 for w in weights]
    counts = [int(q) for q in quotas]
    left = size - sum(counts)
    by_remainder = sorted((i for i, w in enumerate(weights) if w > 0), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[:left]:
        counts[i] += 1
    return counts


def batch_sources(weights: Sequence[float], size: int) -> List[int]:
    """The source of each of the ``size`` places of a batch: each source's count (see
    :func:`largest_remainder`), grouped, in source order (``[0]*10 + [1]*6 + [2]*4``)."""
    out: List[int] = []
    for source, count in enumerate(largest_remainder(weights, size)):
        out.extend([source] * count)
    return out
