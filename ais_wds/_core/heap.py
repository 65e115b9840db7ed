"""A DataLoader worker's own memory: what it copies from its parent and what its heap keeps.

* :func:`freeze_inherited` (on by default): a worker freezes the objects it inherited, so that its full
  garbage collections do not copy the parent's pages into it;
* :func:`bound_worker_heap` (opt-in, ``AIS_WDS_HEAP``): glibc's mmap threshold fixed, so large freed
  blocks go back to the operating system instead of staying in the worker's heap.

Both run when a process opens its connections to AIS (:class:`~ais_wds._core.connections.Connections`).
The figures: bench section 25 (``tools/ais_wds_bench/sections/memory.py``) and docs/memory.md.

The heap bound:

Why: glibc serves blocks of at least ``M_MMAP_THRESHOLD`` bytes (128 KiB at start) with their own
``mmap`` and gives them back on ``free``; but every time such a block is freed it raises the threshold to
that block's size (up to 32 MiB) and the heap's trim threshold to twice that. A DataLoader worker frees a
collated batch (32 x 100 KiB = 3.2 MiB) every step, so after the first one every later batch comes from
the heap, whose free middle is never returned. Measured on issue 25's data (6 shards x 400 samples of
100 KiB, ``.batched(32)``, 4 persistent workers): a worker's own memory was 23-46 MiB (plain webdataset
over local files: 17-39 MiB, the same allocator story), of which 10-26 MiB ``[heap]``, flat after epoch 1
within 3-6 MiB; with the threshold fixed at 1 MiB it is 18-21 MiB and flat within 0.5 MiB
(``shuffle="samples"``: 47-99 -> 21-22 MiB).

The price is CPU: every block of at least :data:`MMAP_THRESHOLD` (each collated batch, each sample of
1 MiB or more, and its tensor copy) is a fresh mapping whose pages are faulted in again. Measured with 2
workers, 3 epochs, ``.batched(32)``: worker CPU 2.5 -> 2.95 s/GB (100 KiB samples) and 3.2 -> 4.2 s/GB
(1 MiB samples). So it is off unless asked for: ``AIS_WDS_HEAP`` = ``workers`` (DataLoader workers, when
they open their connections to AIS), ``all`` (every process that opens connections, the main one
included, e.g. for ``num_workers=0``), ``off`` (the default). Nothing happens where the C library is not
glibc, or where the user set glibc's own knobs (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``GLIBC_TUNABLES``): theirs win. ``malloc_trim(0)`` at epoch ends was tried and made it worse (61 MiB:
in a forked worker it touches, and so copies, the heap pages it shares with the parent).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import platform
from typing import Optional

from .dist import torch_worker

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 1 << 20
"""Blocks of at least this many bytes get their own mapping, returned to the OS when freed. 1 MiB: a
collated batch or a sample of 1 MiB or more; smaller samples and read buffers stay in the heap (measured
the same USS as 128 KiB on the data above; 4 MiB let 3.2 MiB batches into the heap again: 27-49 MiB)."""

ENV = "AIS_WDS_HEAP"
"""``off`` (default), ``workers`` or ``all``: see the module docstring."""

_GLIBC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

GC_FREEZE_ENV = "AIS_WDS_GC_FREEZE"
"""``workers`` (default): a forked DataLoader worker freezes what it inherited (:func:`freeze_inherited`);
``off``: it does not."""

_frozen_in: Optional[int] = None
_applied_in: Optional[int] = None  # the pid that decided (a forked child decides again)
_applied = False


def bound_worker_heap() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` in this process, once, if ``AIS_WDS_HEAP``
    asks for it (``workers``: in a DataLoader worker; ``all``: in any process); called when a process
    opens its connections to AIS. Cheap (an environment lookup; one pid comparison once decided).

    Returns:
        True when this process's heap is bounded by it (now or earlier), False when left alone.
    """
    global _applied_in, _applied
    pid = os.getpid()
    if _applied_in == pid:
        return _applied
    mode = os.environ.get(ENV, "off").strip().lower()
    if mode not in ("workers", "all") or (mode == "workers" and torch_worker() is None):
        return False  # not a worker (yet): asked again next time, e.g. by the worker forked from here
    _applied_in, _applied = pid, _set_threshold(mode)
    return _applied


def freeze_inherited() -> bool:
    """In a DataLoader worker, once: move every object the worker inherited into the garbage collector's
    permanent generation (``gc.freeze()``), so that its full collections never walk them.

    Why: a full collection writes to the header of every object it walks; in a forked worker each of
    those writes copies the page (shared with the parent until then) into the worker. Measured with
    ``AISDataset`` (2400 x 100 KiB, 4 persistent workers): the first full collection, in epoch 1, took
    every worker from 23-24 to 72-75 MiB of its own (the imported torch, SDK and ais_wds objects);
    frozen, they stay at 24-31 MiB. Freezing only relinks the generations' list heads (no object is
    touched); what the worker inherited is then never collected there, which is at most what it
    inherited (the parent's objects, not a growth). Off with ``AIS_WDS_GC_FREEZE=off``. Called when a
    worker opens its connections to AIS.

    Returns:
        True when this call froze them (False: not a worker, done before, or off).
    """
    global _frozen_in
    pid = os.getpid()
    if _frozen_in == pid or os.environ.get(GC_FREEZE_ENV, "workers").strip().lower() == "off":
        return False
    if torch_worker() is None:
        return False
    _frozen_in = pid
    gc.freeze()
    logger.debug("DataLoader worker %d: %d inherited objects frozen", pid, gc.get_freeze_count())
    return True


def bounded() -> bool:
    """Whether :func:`bound_worker_heap` bounded this process's heap (without trying to)."""
    return _applied_in == os.getpid() and _applied


def _set_threshold(mode: str) -> bool:
    if platform.libc_ver()[0] != "glibc":
        return False
    mine = [name for name in _GLIBC_ENV if os.environ.get(name)]
    if mine:
        logger.debug("malloc left alone in pid %d: %s set", os.getpid(), ", ".join(mine))
        return False
    try:
        libc = ctypes.CDLL(None)
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                         128 << 10))
    except (OSError, AttributeError):
        return False
    logger.debug("malloc in pid %d (%s): mmap threshold fixed at %d bytes: %s", os.getpid(), mode,
                 MMAP_THRESHOLD, "ok" if ok else "refused")
    return ok
