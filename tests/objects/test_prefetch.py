"""The fetch-ahead engine's window (``ais_wds.objects.prefetch.Prefetcher.imap``): what a consumer holds is
bounded by ``max_bytes``, whatever the object size (issue 25: AISIterDataset's workers held and kept up
to 256 MiB each). Pure logic over a recording getter: no cluster needed."""

from __future__ import annotations

import time
import weakref
from typing import Any

from ais_wds.objects.prefetch import Prefetcher
from tests.support.getters import RecordingGetter


class _Blob:
    """A fetched object that can be watched with a weak reference (``bytes`` cannot)."""

    def __init__(self, url: str):
        self.url = url


def _wait_for(condition: Any, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_imap_cuts_units_at_the_threads_share_of_the_window():
    getter = RecordingGetter(_Blob)
    engine = Prefetcher(getter, threads=4, batch_size=100, max_bytes=1000)
    assert engine.unit_bytes == 250  # 1000 bytes shared by 4 threads (batch_bytes, 32 MiB, is larger)
    out = list(engine.imap((f"u{i}", 100) for i in range(40)))
    assert [b.url for _, b in out] == [f"u{i}" for i in range(40)]
    assert {len(c) for c in getter.calls} == {2}  # 2 x 100 bytes per request: all 4 threads get one
    assert Prefetcher(getter, threads=4, batch_size=100, batch_bytes=150, max_bytes=1000).unit_bytes == 150


def test_imap_holds_at_most_max_bytes_fetched_and_not_handed_out():
    getter = RecordingGetter(_Blob)
    engine = Prefetcher(getter, threads=4, batch_size=100, max_bytes=1000, depth=16)
    it = engine.imap((f"u{i}", 100) for i in range(60))
    next(it)
    # the window fills: 1000 bytes = 10 objects, the unit being handed out included ...
    assert _wait_for(lambda: getter.started >= 10)
    time.sleep(0.2)
    assert getter.started == 10  # ... and no further while the consumer holds on
    ahead = []
    for k, _ in enumerate(it, start=2):  # the k-th object is being handed out: k-1 were before it
        ahead.append(getter.started - (k - 1))
    assert max(ahead) <= 10 and getter.started == 60


def test_imap_keeps_one_object_larger_than_the_window_in_flight():
    getter = RecordingGetter(_Blob)
    engine = Prefetcher(getter, threads=4, batch_size=100, max_bytes=1000)
    it = engine.imap((f"big{i}", 5000) for i in range(6))
    next(it)
    assert _wait_for(lambda: getter.started >= 2)
    time.sleep(0.2)
    assert getter.started == 2  # the one handed out and the next; not 8 x 5000 bytes ahead
    assert len(list(it)) == 5 and {len(c) for c in getter.calls} == {1}


def test_imap_lets_go_of_each_result_once_handed_out():
    getter = RecordingGetter(_Blob)
    engine = Prefetcher(getter, threads=1, batch_size=10, max_bytes=1 << 20)
    it = engine.imap((f"u{i}", 100) for i in range(10))  # one unit of 10
    _, first = next(it)
    watch = weakref.ref(first)
    del first
    _, second = next(it)  # the engine's own reference to the first went when it was handed out
    assert watch() is None and second.url == "u1"
    assert len(list(it)) == 8
