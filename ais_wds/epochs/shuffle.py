"""``random.Random.shuffle``, bit for bit, for millions of entries in seconds.

``random.shuffle`` is a Python loop of one ``_randbelow(i + 1)`` call and one swap per entry: about
200 s for 10 million entries on a loaded 2-core machine (20-50 s unloaded). The epoch orders of
ais_wds are defined by it (``random.Random(f"ais_wds:{seed}:{epoch}").shuffle``), and saved job
states depend on those orders, so the order must not change: :func:`shuffled_range` gives exactly
the same permutation, computed with numpy.

How: CPython's ``_randbelow(m)`` draws ``k = m.bit_length()`` bits (one 32-bit Mersenne Twister output
shifted right by ``32 - k``) until the value is below ``m``. numpy's ``MT19937`` is the same
generator, so it is started from the ``random.Random``'s state and its raw outputs are screened in
vectorised chunks (:func:`_picks`). The swaps are then applied without a Python loop
(:func:`_apply_swaps`). Pure computation; thread- and process-safe.
"""

from __future__ import annotations

import random
from typing import Any, List

FAST_MIN = 1 << 16
"""Below this many entries ``random.shuffle`` itself is quick; :func:`shuffled_range` uses it."""


def shuffled_range(n: int, rng: random.Random) -> List[int]:
    """``x = list(range(n)); rng.shuffle(x); return x``: the same list, in a fraction of the time.

    ``rng`` is consumed exactly when the plain path is taken (small ``n``, no numpy, ``n >= 2**32``);
    on the fast path it is left untouched (callers discard it).
    """
    np: Any
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with torch and webdataset
        np = None
    if np is None or n < FAST_MIN or n >= 1 << 32:
        order = list(range(n))
        rng.shuffle(order)
        return order
    picks = _picks(np, n, rng)
    out: List[int] = _apply_swaps(np, picks, n).tolist()
    return out


def _picks(np: Any, n: int, rng: random.Random) -> Any:
    """``j`` of every step of ``rng.shuffle`` on ``n`` entries: ``picks[i - 1] = _randbelow(i + 1)``."""
    _, internal, _ = rng.getstate()
    gen = np.random.MT19937()
    gen.state = {"bit_generator": "MT19937",
                 "state": {"key": np.array(internal[:624], dtype=np.uint32), "pos": int(internal[624])}}
    dtype = np.int32 if n < 1 << 31 else np.int64
    picks = np.empty(n - 1, dtype=dtype)  # filled from the end: step i = n - 1 first
    raws = np.empty(0, dtype=np.uint64)
    p = 0  # the next unused raw output
    t = n - 1  # picks[:t] still to fill
    m = n  # the bound of the next step: _randbelow(m), m = i + 1

    def need(count: int) -> None:
        nonlocal raws, p
        if len(raws) - p < count:
            raws = np.concatenate([raws[p:], gen.random_raw(max(count, 1 << 16))])
            p = 0

    while m > 1:
        k = m.bit_length()
        shift = 32 - k
        low = max(1 << (k - 1), 2)  # every step of a chunk draws the same k bits
        steps = min(m - low + 1, max(64, int((1 << k) ** 0.5)))  # ~1 undecided value per chunk
        if steps < 64:  # few steps left at this k: one at a time
            for _ in range(steps):
                need(64)
                while True:
                    r = int(raws[p]) >> shift
                    p += 1
                    if r < m:
                        break
                t -= 1
                picks[t] = r
                m -= 1
            continue
        last = m - steps + 1  # the smallest bound in this chunk
        count = int(steps * (1 << k) / last * 1.2) + 64
        need(count)
        v = raws[p:p + count] >> np.uint64(shift)
        # below ``last``: accepted by whichever step meets it; at or above ``m``: rejected by every step;
        # in between it depends on how many were accepted before it: decided one at a time
        undecided = np.flatnonzero((v >= last) & (v < m))
        stop = int(undecided[0]) if len(undecided) else count
        accepted = np.flatnonzero(v[:stop] < m)
        take = min(len(accepted), steps)
        picks[t - take:t] = v[accepted[:take]][::-1]
        t, m = t - take, m - take
        if take == steps:
            p += int(accepted[steps - 1]) + 1
            continue
        p += stop
        if stop < count:  # the undecided one, against the bound it really meets
            r = int(v[stop])
            p += 1
            if r < m:
                t -= 1
                picks[t] = r
                m -= 1
    return picks


def _apply_swaps(np: Any, j: Any, n: int) -> Any:
    """The result of ``for i in range(n - 1, 0, -1): x[i], x[j[i - 1]] = x[j[i - 1]], x[i]`` on
    ``x = range(n)``, as an array, without a Python loop.

    Before step i, position i holds c(i): what the latest earlier step (the smallest i' > i) with
    target i moved there, i.e. c(i'), or i itself if no step targeted i. Step i finalises position i
    with the content of position j[i]: c of the latest earlier step that targeted j[i], or j[i].
    Chains of c are resolved by pointer jumping; the steps sorted by (target, step) give both
    "latest earlier step" lookups as neighbours.
    """
    dtype = j.dtype
    steps = np.arange(1, n, dtype=dtype)
    order = np.argsort(j.astype(np.int64) * n + steps)  # steps grouped by target, by step inside a group
    target, step = j[order], steps[order]
    same = np.zeros(n - 1, dtype=bool)  # the next entry in this order has the same target
    same[:-1] = target[1:] == target[:-1]
    following = np.full(n - 1, -1, dtype=dtype)
    following[:-1] = np.where(same[:-1], step[1:], -1)
    source = np.empty(n - 1, dtype=dtype)  # per step i: the smallest step > i with target j[i], or -1
    source[order] = following
    firsts = np.flatnonzero(np.concatenate(([True], ~same[:-1])))  # each target's smallest step
    del order, same
    parent = np.full(n, -1, dtype=dtype)  # per position p: the smallest step > p with target p, or -1
    own = step[firsts] == target[firsts]  # that smallest step is p's own (a self-swap): the next one
    parent[target[firsts]] = np.where(own, following[firsts], step[firsts])
    del target, step, following, firsts, own
    carried = np.where(parent >= 0, parent, np.arange(n, dtype=dtype))
    del parent
    while True:  # pointer jumping to each chain's start
        nxt = carried[carried]
        if np.array_equal(nxt, carried):
            break
        carried = nxt
    del nxt
    out = np.empty(n, dtype=dtype)
    out[1:] = np.where(j == steps, carried[1:], np.where(source >= 0, carried[np.maximum(source, 0)], j))
    out[0] = carried[0]
    return out
