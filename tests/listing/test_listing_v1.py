"""Listings saved by ais_wds 0.1 (format v1: one msgpack map of two lists) load column by column, with
about the memory of the loaded listing itself. No cluster."""

from __future__ import annotations

import gc
import tracemalloc

import msgpack

from ais_wds.listing import LISTING_KIND, Listing


def _v1(path, urls, sizes, order=("kind", "urls", "sizes")):
    doc = {"kind": LISTING_KIND, "urls": urls, "sizes": sizes}
    with open(path, "wb") as f:
        f.write(msgpack.packb({k: doc[k] for k in order}))


def test_a_v1_file_loads_with_the_memory_of_the_listing_not_of_a_list_of_str(tmp_path):
    n = 200_000
    urls = [f"ais://bench-scale/train/n{i % 1000:04d}/img-{i:010d}.jpg" for i in range(n)]
    sizes = [i * 7 % 100_003 for i in range(n)]
    _v1(tmp_path / "v1.msgpack", urls, sizes)
    expected = Listing(urls, sizes)
    del urls, sizes
    gc.collect()
    tracemalloc.start()
    loaded = Listing.load(tmp_path / "v1.msgpack")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert loaded == expected
    assert peak < 1.5 * loaded.nbytes  # a list of str alone would be ~100 bytes per URL more


def test_a_v1_file_with_its_keys_in_another_order_loads(tmp_path):
    _v1(tmp_path / "v1.msgpack", ["ais://b/ü", "ais://b/x"], [3, 4], order=("sizes", "urls", "kind"))
    assert list(Listing.load(tmp_path / "v1.msgpack")) == [("ais://b/ü", 3), ("ais://b/x", 4)]
