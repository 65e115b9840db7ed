"""The tar layer's parser of one sample's byte range (ais_wds.tar.sample), used by both random-access front ends."""

from __future__ import annotations

import io
import tarfile

import pytest

from ais_wds.errors import ShardIndexError, TarFormatError
from ais_wds.tar.reader import iter_member_spans
from ais_wds.tar.sample import parse_sample, plain_sample
from tests.support.tars import tar_bytes


def _ranges(raw: bytes):
    """Each sample's byte range: from its first header to the end of its last member's padding."""
    spans = list(iter_member_spans(io.BytesIO(raw)))
    out, key = [], None
    for name, header, data, size in spans:
        k = name.split("/")[-1].split(".")[0]
        end = data + (size + 511) // 512 * 512
        if k == key:
            out[-1][1] = end
        else:
            out.append([header, end])
            key = k
    return [raw[a:b] for a, b in out]


def test_a_plain_range_gives_the_exact_bytes_of_every_member():
    body = bytes(range(256)) * 3 + b"x"  # 769 bytes: padding after it
    raw = tar_bytes([("d/a.jpg", body), ("d/a.CLS", b"7"), ("d/a.json", b""), ("d/b.jpg", b"b")])
    first, second = _ranges(raw)
    assert plain_sample(first, "ais://b/s.tar") == {"__key__": "d/a", "__url__": "ais://b/s.tar", "jpg": body,
                                                     "cls": b"7", "json": b""}
    assert parse_sample(memoryview(second), "u") == {"__key__": "d/b", "__url__": "u", "jpg": b"b"}


def test_the_last_sample_with_the_end_blocks_is_one_sample():
    raw = tar_bytes([("a.txt", b"hello")])
    assert parse_sample(raw, "u") == {"__key__": "a", "__url__": "u", "txt": b"hello"}


def test_a_long_name_goes_through_the_tar_reader_with_the_same_result():
    name = "p" * 120 + "/k.bin"  # ustar prefix field
    long = "q" * 150 + ".bin"  # longer than 100 bytes in one component: not ustar, a pax header
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(long)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    assert plain_sample(buf.getvalue(), "u") is None
    assert parse_sample(buf.getvalue(), "u") == {"__key__": "q" * 150, "__url__": "u", "bin": b"abc"}
    assert parse_sample(tar_bytes([(name, b"z")]), "u")["__key__"] == "p" * 120 + "/k"


def test_a_member_split_across_the_range_end_is_a_truncated_member():
    raw = tar_bytes([("a.jpg", b"1" * 1000), ("a.cls", b"2")])
    cut = raw[:512 + 700]  # the header and 700 of the 1000 bytes of a.jpg
    assert plain_sample(cut, "ais://b/s.tar") is None
    with pytest.raises(TarFormatError, match="truncated") as e:
        parse_sample(cut, "ais://b/s.tar")
    assert "ais://b/s.tar" in str(e.value)


def test_a_range_that_starts_inside_a_member_is_a_tar_format_error():
    raw = tar_bytes([("a.jpg", b"\x07" * 2048)])
    with pytest.raises(TarFormatError, match="checksum"):
        parse_sample(raw[1024:], "u")


def test_a_corrupt_header_is_a_tar_format_error_not_a_wrong_sample():
    raw = bytearray(tar_bytes([("a.jpg", b"1"), ("a.cls", b"2")]))
    raw[0:1] = b"b"  # the name, magic and size intact: only the checksum tells
    assert plain_sample(bytes(raw), "u") is None
    with pytest.raises(TarFormatError, match="bad tar header checksum"):
        parse_sample(bytes(raw), "u")


def test_a_range_of_two_samples_or_of_none_is_a_stale_index():
    raw = tar_bytes([("a.jpg", b"1"), ("b.jpg", b"2")])
    with pytest.raises(ShardIndexError, match="holds 2 samples instead of one"):
        parse_sample(raw, "u")
    with pytest.raises(ShardIndexError, match="holds 0 samples"):
        parse_sample(b"\0" * 1024, "u")


def test_meta_members_are_skipped_as_the_tar_stage_skips_them():
    raw = tar_bytes([("__meta__", b"m"), ("a.jpg", b"1")])
    assert parse_sample(raw, "u") == {"__key__": "a", "__url__": "u", "jpg": b"1"}
