"""Shard index units (pure: no cluster)."""

from __future__ import annotations

import io
import tarfile

import pytest

from ais_wds import tarwrite
from ais_wds.listing import Listing
from ais_wds.pack.plan import PackOptions, SourceObject, make_plan
from ais_wds.shard_index.dataset import AISShardDataset, parse_sample
from ais_wds.shard_index.index import (
    ShardIndex,
    ShardIndexError,
    _group_archive_listing,
    _key_then_ext_order,
    _predicted_spans,
    header_matches,
    index_from_plan,
    record_from_spans,
    wids_location,
)
from ais_wds.tar.reader import iter_member_spans


def _tar(members: list) -> bytes:
    out = io.BytesIO()
    for name, data in members:
        out.write(tarwrite.member_header(name, len(data)) + data + bytes(tarwrite.padding(len(data))))
    out.write(tarwrite.END_OF_ARCHIVE)
    return out.getvalue()


def test_spans_group_into_webdataset_samples_skipping_meta_and_unkeyed_names():
    raw = _tar([("__meta__", b"m"), ("a.jpg", b"1" * 600), ("a.CLS", b"2"), ("README", b"r"), ("b.jpg", b"3")])
    record = record_from_spans("ais://b/s.tar", len(raw), iter_member_spans(io.BytesIO(raw)))
    samples = list(record.samples())
    assert [s.key for s in samples] == ["a", "b"]
    assert [n for n, _, _ in samples[0].members] == ["a.jpg", "a.CLS"]
    # the range of "a" starts at its first header and ends after its last member's padding
    assert samples[0].offset == 1024 and samples[0].length == 512 + 1024 + 512 + 512
    assert parse_sample(raw[samples[0].offset: samples[0].offset + samples[0].length], "u") == \
        {"__key__": "a", "__url__": "u", "jpg": b"1" * 600, "cls": b"2"}


def test_a_repeated_extension_in_one_sample_is_refused_like_webdataset_does():
    raw = _tar([("a.jpg", b"1"), ("a.JPG", b"2")])
    with pytest.raises(ShardIndexError, match="repeats extension 'jpg'"):
        record_from_spans("ais://b/s.tar", len(raw), iter_member_spans(io.BytesIO(raw)))


def test_index_from_plan_is_byte_exact_against_the_written_tar():
    names = {"d/a.jpg": 700, "d/a.cls": 0, "ü/b.jpg": 5, "x" * 130 + ".png": 1024, "c.seg.png": 3}
    plan = make_plan([SourceObject(f"ais://s/{n}", n, s) for n, s in names.items()], "ais://d/s-%d.tar",
                     PackOptions(shard_size=1 << 20))
    (shard,) = plan.shards
    content = {n: bytes([i + 1]) * s for i, (n, s) in enumerate(names.items())}
    raw = _tar([(m.name, content[m.name]) for x in shard.samples for m in x.members])
    assert len(raw) == shard.size
    index = index_from_plan(plan)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        truth = {m.name: (m.offset_data, m.size) for m in tar.getmembers()}
    for _, sample in index.samples():
        for name, offset, size in sample.members:
            assert truth[name] == (offset, size) and raw[offset:offset + size] == content[name]
        assert parse_sample(raw[sample.offset:sample.offset + sample.length], "u")["__key__"] == sample.key
    assert len(index) == 4 and index.plan == plan.fingerprint()


def test_index_round_trips_through_msgpack_and_rejects_other_files():
    raw = _tar([("a.jpg", b"1"), ("b.jpg", b"2")])
    index = ShardIndex([record_from_spans("ais://b/s.tar", len(raw), iter_member_spans(io.BytesIO(raw)))], "abc")
    again = ShardIndex.from_bytes(index.to_bytes())
    assert again == index
    with pytest.raises(ShardIndexError):
        ShardIndex.from_bytes(b"\x81\xa4kind\xa5other")
    with pytest.raises(ShardIndexError):
        ShardIndex.from_bytes(b"not msgpack at all \xc1")


def test_wids_descriptor_lists_urls_sample_counts_and_sizes():
    raw = _tar([("a.jpg", b"1"), ("b.jpg", b"2")])
    index = ShardIndex([record_from_spans("ais://b/s.tar", len(raw), iter_member_spans(io.BytesIO(raw)))])
    descriptor = index.wids_descriptor()
    assert descriptor.pop("note").startswith("wids fetches these shard URLs only in a Python process that has imp")
    assert descriptor == {"__kind__": "wids-shard-index-v1", "wids_version": 1, "requires": "ais_wds",
                          "shardlist": [{"url": "ais://b/s.tar", "nsamples": 2, "filesize": len(raw)}]}
    assert wids_location("ais://b/train.index.msgpack") == "ais://b/train.wids.json"
    assert wids_location("/tmp/x.bin") == "/tmp/x.bin.wids.json"


def test_listing_prediction_and_header_check_agree_with_a_real_ustar():
    members = [("a.jpg", b"1" * 3000), ("a.txt", b"22"), ("b.jpg", b"")]
    raw = _tar(members)
    spans = _predicted_spans([(n, len(d)) for n, d in members])
    assert spans == list(iter_member_spans(io.BytesIO(raw)))
    assert all(header_matches(raw[h:h + 512], n, s) for n, h, _, s in spans)
    assert not header_matches(raw[0:512], "a.jpg", 2999)
    assert not header_matches(raw[0:512], "b.jpg", 3000)
    assert _predicted_spans([("ü.jpg", 3)]) is None  # its header is not predictable


def test_archive_listing_entries_are_grouped_under_their_shard():
    listing = Listing(["ais://b/a.tar", "ais://b/a.tar-x.tar", "ais://b/a.tar/y.jpg", "ais://b/a.tar/x.jpg",
                       "ais://b/notes.txt", "ais://b/a.tar-x.tar/z.cls"], [100, 50, 3, 4, 9, 1])
    assert _group_archive_listing(listing) == [("ais://b/a.tar", 100, [("x.jpg", 4), ("y.jpg", 3)]),
                                               ("ais://b/a.tar-x.tar", 50, [("z.cls", 1)])]


def test_dataset_keeps_only_compact_arrays_and_locates_samples():
    raw = _tar([("a.jpg", b"1"), ("b.jpg", b"2"), ("c.jpg", b"3")])
    index = ShardIndex([record_from_spans("ais://b/s.tar", len(raw), iter_member_spans(io.BytesIO(raw)))])
    ds = AISShardDataset(index, "http://127.0.0.1:1")
    assert len(ds) == 3
    assert ds.locate(-1) == ("ais://b/s.tar", 2048, 1024)
    with pytest.raises(IndexError):
        ds.locate(3)
    runs = ds._runs([ds.locate(2), ds.locate(0), ds.locate(1)])
    assert [(start, end, [slot for slot, _, _ in members]) for _, start, end, members in runs] == [(0, 3072, [1, 2, 0])]


def test_key_then_extension_order_reproduces_a_writer_that_does_not_sort_member_names():
    members = [("b.jpg", b"1" * 700), ("b.cls", b"2"), ("a-x.jpg", b"3"), ("a-x.cls", b"4")]
    members = sorted(members, key=lambda m: (m[0].split(".")[0], m[0].endswith(".cls")))  # key order, jpg first
    raw = _tar(members)
    listed = sorted((n, len(d)) for n, d in members)  # what AIS lists: names sorted
    assert _predicted_spans(listed) != list(iter_member_spans(io.BytesIO(raw)))
    guessed = _key_then_ext_order(listed, {"jpg": 0, "cls": 1})
    assert _predicted_spans(guessed) == list(iter_member_spans(io.BytesIO(raw)))
    assert _key_then_ext_order([("README", 3)], {}) is None
