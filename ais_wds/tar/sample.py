"""One webdataset sample from the bytes of its byte range in a shard (what a shard index records: the
sample's member headers, data and padding), without webdataset or torch.

Both random-access front ends use it: the map-style dataset over a shard index
(:mod:`ais_wds.shard_index.dataset`) and the global sample shuffle's reads by reference
(:mod:`ais_wds.streaming.sample_reads`).

Plain fragments (regular files with short names, checksummed headers, one key) are split by a direct walk
of their 512-byte headers (about 3 us a member, checksums included); anything else (long names, pax headers, other
member types) goes through the tar reader's walk (:func:`ais_wds.tar.reader.walk`) and
:func:`~ais_wds.tar.reader.group_by_keys`, which name what is wrong. Members named like ``__meta__`` are
skipped, as webdataset and the tar stage skip them.

Thread safety: pure functions.
"""

from __future__ import annotations

import io
import zlib
from typing import Any, Dict, Optional, Union

from ..errors import ShardIndexError
from .names import base_plus_ext, is_meta_member
from .reader import group_by_keys, walk

Sample = Dict[str, Any]
Data = Union[bytes, bytearray, memoryview]

BLOCK = 512
_ADLER_MOD = 65521
"""Adler-32's low half is 1 + the sum of the bytes modulo this prime: a header's checksum (the sum of its
bytes, the checksum field read as spaces) is checked modulo it: 0.5 us a header here, against 3 us for sum();
a change escapes the check only if it moves the sum by a multiple of 65521, which takes at least 257 bytes
changed."""


def parse_sample(data: Data, url: str) -> Sample:
    """The one sample in ``data`` (a sample's byte range of shard ``url``): ``{"__key__", "__url__",
    lower-cased extension -> bytes}``, as the tar stage makes it.

    Raises:
        TarFormatError: the bytes are not tar headers and members (a bad header checksum, a truncated
            member; the message names the URL and the offset in the range).
        ShardIndexError: the bytes hold no sample or several (the shard changed since it was indexed).
    """
    fast = plain_sample(data, url)
    if fast is not None:
        return fast
    stream = io.BytesIO(data)
    members = walk(stream, min(max(len(data), BLOCK), 1 << 20), url, True, None)
    samples = list(group_by_keys(members, url=url))
    if len(samples) != 1:
        raise ShardIndexError(f"a sample's byte range holds {len(samples)} samples instead of one", url=url,
                              hint="the shard changed since it was indexed: index it again (`ais-wds index`)")
    return samples[0]


def plain_sample(data: Data, url: str) -> Optional[Sample]:
    """The sample in ``data`` when every member is a regular file with a short name, a right header
    checksum and the same key (webdataset's rule, :func:`~ais_wds.tar.names.base_plus_ext`), each
    extension once; None otherwise (then :func:`parse_sample` lets the tar reader decide). Stops at an
    all-zero block."""
    view = memoryview(data)
    n = len(view)
    pos = 0
    key: Optional[str] = None
    out: Sample = {}
    while pos < n:
        if pos + BLOCK > n:
            return None
        header = bytes(view[pos:pos + BLOCK])
        if not header[0]:
            break  # the end-of-archive blocks (the last sample of a shard)
        if header[156] not in (0x30, 0) or header[124] & 0x80:
            return None  # not a regular file (long name, pax, directory, link) or a base-256 size
        try:
            checksum = int(header[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
            name = header[:100].split(b"\0", 1)[0].decode()
            if header[257:262] == b"ustar" and header[345]:
                name = header[345:500].split(b"\0", 1)[0].decode() + "/" + name
        except (ValueError, UnicodeDecodeError):
            return None
        if ((zlib.adler32(header) & 0xFFFF) - 1 - sum(header[148:156]) + 256 - checksum) % _ADLER_MOD:
            return None  # a torn or altered header must not become a wrong sample
        start = pos + BLOCK
        pos = start + (size + BLOCK - 1) // BLOCK * BLOCK
        if start + size > n:
            return None
        if is_meta_member(name):
            continue
        k, ext = base_plus_ext(name)
        if k is None or ext is None or (key is not None and k != key):
            return None
        ext = ext.lower()
        if ext in out:
            return None
        key = k
        out[ext] = bytes(view[start:start + size])
    if key is None:
        return None
    return {"__key__": key, "__url__": url, **out}
