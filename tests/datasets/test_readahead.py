"""The map-style read-ahead's window (``ais_wds.datasets.readahead.ReadAhead``): a worker holds at most
``max_bytes`` of batches requested ahead, in requests of at most a thread's share of it, whatever the
object count it may read ahead (issue 25: ``read_ahead=2048`` objects of 100 KiB held 100 MiB a worker).
Pure logic over a recording getter: no cluster needed."""

from __future__ import annotations

from typing import Any, List, Sequence

from ais_wds.datasets.readahead import MAX_BYTES, ReadAhead
from ais_wds.objects.prefetch import Prefetcher
from tests.support.getters import RecordingGetter


def test_read_ahead_holds_at_most_max_bytes_whatever_the_object_count():
    listing = [(f"k{i}", 100) for i in range(200)]
    getter = RecordingGetter()
    ahead = ReadAhead(Prefetcher(getter, threads=4, batch_size=256), objects=1000, max_bytes=1000)
    batch, served, over = 4, 0, []
    for start in range(0, len(listing), batch):
        indices = list(range(start, start + batch))
        got = ahead.take(listing, None, indices, stride=1)
        if got is not None:
            assert got == [f"k{i}".encode() for i in indices]
            served += 1
        over.append(getter.started - (start + batch))  # requested, not yet asked for: ahead of the reader
    assert served == len(listing) // batch - 1  # every batch but the first came from the read-ahead
    assert max(over) <= 1000 // 100  # 2 batches of 400 bytes ahead; a third would pass 1000
    assert max(len(c) for c in getter.calls) == batch  # 400 > 1000 / 4 threads: one batch per request


def test_read_ahead_always_requests_the_next_batch():
    listing = [(f"k{i}", 5000) for i in range(20)]
    getter = RecordingGetter()
    ahead = ReadAhead(Prefetcher(getter, threads=4, batch_size=256), objects=1000, max_bytes=1000)
    assert ahead.take(listing, None, [0, 1], stride=1) is None
    assert ahead.take(listing, None, [2, 3], stride=1) == [b"k2", b"k3"]  # 10000 bytes, over the window


class _Plain:
    def fetch(self, keys: Sequence[str]) -> List[Any]:
        return [k.encode() for k in keys]


def test_read_ahead_keeps_its_window_when_pickled():
    import pickle

    ahead = ReadAhead(Prefetcher(_Plain(), threads=2), objects=64, max_bytes=4096)
    assert pickle.loads(pickle.dumps(ahead)).max_bytes == 4096
    assert ReadAhead(Prefetcher(_Plain()), objects=64).max_bytes == MAX_BYTES == 32 << 20


def test_read_ahead_starts_again_when_the_order_starts_again():
    """Persistent workers in sequential order (no sampler spec): each epoch asks for the same positions
    again from the first; the read-ahead must predict in every epoch, not only the first."""
    listing = [(f"k{i}", 100) for i in range(120)]
    ahead = ReadAhead(Prefetcher(RecordingGetter(), threads=4, batch_size=256), objects=64, max_bytes=4000)
    for epoch in range(3):
        served = 0
        for start in range(0, len(listing), 8):
            got = ahead.take(listing, None, list(range(start, start + 8)), stride=1)
            if got is not None:
                assert got == [f"k{i}".encode() for i in range(start, start + 8)]
                served += 1
        assert served >= len(listing) // 8 - 1, epoch
