"""The compact Listing: storage, save/load (v2 and the v1 files of 0.x), validation, memory. No cluster."""

from __future__ import annotations

import pickle
import tracemalloc

import msgpack
import pytest

from ais_wds.errors import ListingFormatError
from ais_wds.listing import LISTING_KIND, Listing


def _listing(n: int) -> Listing:
    out = Listing()
    for i in range(n):
        out.append(f"ais://bucket/train/n{i % 1000:04d}/img-{i:09d}.jpg", i * 3)
    return out


def test_listing_keeps_the_list_api_urls_sizes_select_extend():
    lst = Listing(["ais://b/x", "ais://b/ü"], [1, -1])
    lst.append("ais://b/z", 7)
    other = Listing(["ais://c/a"], [4])
    lst.extend(other)
    assert len(lst) == 4 and lst[1] == ("ais://b/ü", -1) and lst[-1] == ("ais://c/a", 4)
    assert lst.urls == ["ais://b/x", "ais://b/ü", "ais://b/z", "ais://c/a"] and lst.sizes == [1, -1, 7, 4]
    assert lst.urls[1:3] == ["ais://b/ü", "ais://b/z"] and lst.total_size == 12
    assert lst.select([3, 0]).urls == ["ais://c/a", "ais://b/x"]
    assert list(lst.sorted().urls) == sorted(lst.urls)
    assert pickle.loads(pickle.dumps(lst)) == lst


def test_save_load_round_trip_and_v1_files_still_load(tmp_path):
    lst = _listing(1000)
    lst.save(tmp_path / "l.msgpack")
    assert Listing.load(tmp_path / "l.msgpack") == lst
    with open(tmp_path / "v1.msgpack", "wb") as f:
        msgpack.pack({"kind": LISTING_KIND, "urls": list(lst.urls), "sizes": list(lst.sizes)}, f)
    assert Listing.load(tmp_path / "v1.msgpack") == lst
    Listing().save(tmp_path / "empty.msgpack")
    assert len(Listing.load(tmp_path / "empty.msgpack")) == 0


@pytest.mark.parametrize("doc, field", [
    ({"kind": LISTING_KIND, "sizes": [1]}, "urls"),
    ({"kind": LISTING_KIND, "urls": ["a"], "sizes": ["1"]}, "sizes"),
    ({"kind": LISTING_KIND, "urls": "a", "sizes": [1]}, "urls"),
    ({"kind": LISTING_KIND, "urls": ["a", "b"], "sizes": [1]}, "sizes"),
    ({"kind": "something-else"}, "kind"),
])
def test_load_names_the_file_and_the_bad_field(tmp_path, doc, field):
    path = tmp_path / "bad.msgpack"
    path.write_bytes(msgpack.packb(doc))
    with pytest.raises(ListingFormatError) as e:
        Listing.load(path)
    assert e.value.field == field and str(path) in str(e.value) and field in str(e.value)


def test_load_v2_checks_counts_and_truncation(tmp_path):
    path = tmp_path / "l.msgpack"
    _listing(10).save(path)
    data = path.read_bytes()
    (tmp_path / "cut.msgpack").write_bytes(data[:-9])
    with pytest.raises(ListingFormatError) as e:
        Listing.load(tmp_path / "cut.msgpack")
    assert e.value.field == "sizes"
    header = msgpack.packb({"kind": "ais-wds-listing-v2", "count": 11, "fields": ["urls", "offsets", "sizes"]})
    rest = data[len(msgpack.packb({"kind": "ais-wds-listing-v2", "count": 10,
                                   "fields": ["urls", "offsets", "sizes"]})):]
    (tmp_path / "count.msgpack").write_bytes(header + rest)
    with pytest.raises(ListingFormatError) as e:
        Listing.load(tmp_path / "count.msgpack")
    assert e.value.field == "offsets"
    (tmp_path / "junk.msgpack").write_bytes(b"\x93\x01\x02")
    with pytest.raises(ListingFormatError):
        Listing.load(tmp_path / "junk.msgpack")


def test_a_listing_of_50_char_urls_holds_under_100_bytes_per_object_and_loads_without_a_second_copy(tmp_path):
    n = 200_000
    tracemalloc.start()
    try:
        lst = _listing(n)
        held, peak = tracemalloc.get_traced_memory()
        assert held / n < 100 and peak / n < 100
        lst.save(tmp_path / "l.msgpack")
        del lst
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        loaded = Listing.load(tmp_path / "l.msgpack")
        assert (tracemalloc.get_traced_memory()[1] - base) / n < 100
    finally:
        tracemalloc.stop()
    assert len(loaded) == n and loaded.urls[n - 1].endswith(f"img-{n - 1:09d}.jpg")
