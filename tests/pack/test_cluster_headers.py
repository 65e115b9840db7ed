"""The cluster engine's in-stream header check (``ais_wds.pack.engines.cluster._HeaderCheck``): every planned
header is judged, wherever the chunk boundaries fall, and the fast path never accepts what the index's own
check (``header_matches``) rejects. Pure functions over tars written by Python's tarfile; no cluster."""

from __future__ import annotations

import io
import random
import tarfile
from typing import List, Tuple

from ais_wds.pack.engines.cluster import _fast_header_ok, _HeaderCheck
from ais_wds.shard_index.index import header_matches
from ais_wds.tar import writer as tarwrite


def _tar(members: List[Tuple[str, int]], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as t:
        for name, size in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = size, 1_700_000_000
            t.addfile(info, io.BytesIO(bytes([len(name) % 251]) * size))
    return out.getvalue()


def _spans(members: List[Tuple[str, int]]) -> List[Tuple[str, int, int, int]]:
    spans, pos = [], 0
    for name, size in members:
        spans.append((name, pos, pos + tarwrite.BLOCK, size))
        pos += tarwrite.member_span(name, size)
    return spans


def _feed(check: _HeaderCheck, data: bytes, cuts: List[int]) -> None:
    view, start = memoryview(data), 0
    for end in cuts + [len(data)]:
        check.feed(view[start:end])
        start = end


MEMBERS = [(f"dir/s{i:05d}.{'jpg' if i % 2 else 'cls'}", (i * 977) % 3000) for i in range(60)] + [("x" * 100, 5)]


def test_every_header_is_checked_whatever_the_chunk_boundaries() -> None:
    data = _tar(MEMBERS)
    rng = random.Random(7)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 200)))
        check = _HeaderCheck(_spans(MEMBERS))
        _feed(check, data, cuts)
        assert check.mismatch is None and check.complete
    # a cut inside every header
    check = _HeaderCheck(_spans(MEMBERS))
    _feed(check, data, [off + 100 for _, off, _, _ in _spans(MEMBERS)][1:])
    assert check.complete


def test_a_wrong_name_or_size_is_found_even_across_a_boundary() -> None:
    data = _tar(MEMBERS)
    spans = _spans(MEMBERS)
    renamed = list(spans)
    name, off, data_off, size = renamed[30]
    renamed[30] = ("dir/other.jpg", off, data_off, size)
    check = _HeaderCheck(renamed)
    _feed(check, data, [off + 7])
    assert check.mismatch == f"the header at offset {off} is {name!r}, not 'dir/other.jpg' ({size} bytes)"
    resized = list(spans)
    resized[10] = (spans[10][0], spans[10][1], spans[10][2], spans[10][3] + 1)
    check = _HeaderCheck(resized)
    _feed(check, data, [])
    assert check.mismatch is not None and "offset" in check.mismatch and not check.complete


def test_a_stream_that_ends_before_the_last_header_is_not_complete() -> None:
    data = _tar(MEMBERS)
    check = _HeaderCheck(_spans(MEMBERS))
    _feed(check, data[:_spans(MEMBERS)[-1][1] + 200], [])
    assert check.mismatch is None and not check.complete


CHECKSUM_FIELD = range(148, 156)
"""Left out of the flip fuzz below and flipped bit by bit in the test after it (a non-octal byte there made
``_fast_header_ok`` raise ValueError instead of deferring; found 2026-12-06 by this fuzz)."""


def test_fast_path_agrees_with_the_index_check_and_defers_other_formats() -> None:
    rng = random.Random(5)
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT):
        data = _tar(MEMBERS, fmt)
        fast = flips = 0
        for name, off, _, size in _spans(MEMBERS):
            block = data[off:off + tarwrite.BLOCK]
            assert header_matches(block, name, size)
            fast += _fast_header_ok(memoryview(block), name, size)
            # one flipped bit anywhere (but in the checksum field, see below): the fast path may defer, never
            # accept what the index's check rejects
            for pos in (p for p in range(tarwrite.BLOCK) if p not in CHECKSUM_FIELD):
                flipped = bytearray(block)
                flipped[pos] ^= 1 << rng.randrange(8)
                if _fast_header_ok(memoryview(bytes(flipped)), name, size):
                    assert header_matches(bytes(flipped), name, size), (fmt, name, pos)
                flips += 1
            assert not _fast_header_ok(memoryview(block), name + "x", size)
            assert not _fast_header_ok(memoryview(block), name, size + 1)
            broken = bytearray(block)
            broken[200] ^= 1  # one bit outside the compared fields: only the checksum can see it
            assert not _fast_header_ok(memoryview(bytes(broken)), name, size)
            assert not header_matches(bytes(broken), name, size)
        # tarfile writes these headers (USTAR and GNU) in the form the fast path takes: every one of them
        # went through it, and so did every flipped copy
        assert fast == len(MEMBERS) and flips == len(MEMBERS) * (tarwrite.BLOCK - len(CHECKSUM_FIELD))
    ustar = _tar(MEMBERS[:1])
    assert _fast_header_ok(memoryview(ustar[:tarwrite.BLOCK]), *MEMBERS[0])


def test_every_bit_flip_in_the_checksum_field_is_judged_without_raising() -> None:
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT):
        data = _tar(MEMBERS, fmt)
        for name, off, _, size in _spans(MEMBERS):
            block = data[off:off + tarwrite.BLOCK]
            judged = 0
            for pos in CHECKSUM_FIELD:
                for bit in range(8):
                    flipped = bytearray(block)
                    flipped[pos] ^= 1 << bit
                    if _fast_header_ok(memoryview(bytes(flipped)), name, size):  # never raises
                        # (bytes after the field's NUL are not part of the checksum: still the same header)
                        assert header_matches(bytes(flipped), name, size), (fmt, name, pos, bit)
                    judged += 1
            assert judged == 64


def _check(data: bytes, spans: List[Tuple[str, int, int, int]], chunk: int) -> _HeaderCheck:
    check = _HeaderCheck(spans)
    _feed(check, data, list(range(chunk, len(data), chunk)))
    return check


def test_block_aligned_chunks_pass_every_header_at_once(monkeypatch) -> None:
    """Chunks that start and end on block boundaries (the relay's) are checked by one numpy pass: no header
    goes through the one-by-one check, and a chunk of other lengths still checks them all one by one."""
    from ais_wds.pack.engines import cluster

    rng = random.Random(7)
    members = [(f"d/s{i:05d}.{rng.choice(['jpg', 'cls', 'json'])}", rng.randint(0, 3000)) for i in range(400)]
    data, spans = _tar(members), _spans(members)
    calls: List[str] = []
    monkeypatch.setattr(cluster, "_fast_header_ok", lambda block, name, size: calls.append(name) or
                        _fast_header_ok(block, name, size))
    assert _check(data, spans, 1024 * tarwrite.BLOCK).complete and calls == []
    assert _check(data, spans, 1024 * tarwrite.BLOCK + 1).complete and len(calls) == len(members)


def test_the_numpy_pass_judges_every_changed_byte_as_the_one_by_one_check_does() -> None:
    rng = random.Random(11)
    members = [(f"k/{i:04d}.{'bin' if i % 2 else 'txt'}", rng.randint(1, 2000)) for i in range(120)]
    data, spans = _tar(members), _spans(members)
    positions = [0, 5, 99, 100, 124, 130, 135, 136, 148, 153, 154, 155, 156, 257, 262, 345, 400, 511]
    for k in range(300):
        _, offset, _, _ = spans[rng.randrange(len(spans))]
        changed = bytearray(data)
        where = offset + (positions[k] if k < len(positions) else rng.randrange(tarwrite.BLOCK))
        changed[where] = (changed[where] + rng.randint(1, 255)) % 256
        aligned = _check(bytes(changed), spans, 256 * tarwrite.BLOCK)  # the numpy pass, then one by one
        one_by_one = _check(bytes(changed), spans, 256 * tarwrite.BLOCK + 3)  # one by one only
        assert (aligned.mismatch, aligned.complete) == (one_by_one.mismatch, one_by_one.complete), where - offset
        if where - offset < 100 or 124 <= where - offset < 136:  # the name or the size field
            assert aligned.mismatch and f"offset {offset}" in aligned.mismatch
