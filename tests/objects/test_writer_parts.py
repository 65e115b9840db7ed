"""The writer's multipart path against the live cluster: a write of a whole part goes up as it is, before the
call returns (the caller may reuse its buffer at once), and mixed writes keep every byte in order."""

import hashlib

from ais_wds import read_bytes
from ais_wds.writer import open_writer

KiB = 1 << 10


def _pattern(size: int, seed: int) -> bytearray:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return out[:size]


def test_a_reused_buffer_of_whole_parts_uploads_each_parts_bytes_as_written(client, bucket):
    part = 256 * KiB
    url = f"ais://{bucket}/parts/reused.bin"
    buffer = bytearray(part)
    expected = bytearray()
    with open_writer(url, client, part_size=part) as w:
        for seed in range(5):
            buffer[:] = _pattern(part, seed)  # the same bytearray, refilled after each write returns
            w.write(buffer)
            expected += buffer
            assert w._buf == b""  # sent, not buffered
        w.write(b"tail")
        expected += b"tail"
    assert read_bytes(url, client) == bytes(expected)


def test_small_large_and_memoryview_writes_keep_every_byte_in_order(client, bucket):
    part = 128 * KiB
    url = f"ais://{bucket}/parts/mixed.bin"
    pieces = [_pattern(1000, 1), bytes(_pattern(3 * part, 2)), memoryview(_pattern(part, 3)), _pattern(part, 4),
              _pattern(part + 7, 5), b"", _pattern(17, 6)]
    with open_writer(url, client, part_size=part) as w:
        for piece in pieces:
            w.write(piece)
    assert read_bytes(url, client) == b"".join(bytes(p) for p in pieces)
