"""Compact tar member headers for writing shards: ustar, integer mtime, pax only when a name needs it.

Layout of one member written with :func:`member_header`::

    [pax 'x' header block + records, padded to 512]   only for non-ASCII or over-long names, or
                                                      sizes of 8 GiB and more
    ustar header block (512 bytes)
    data (size bytes), then zero padding to a multiple of 512

and an archive ends with :data:`END_OF_ARCHIVE` (two zero blocks, no record padding).

The sizes are computable without encoding anything (:func:`header_size`, :func:`member_span`), which
is what lets a packing plan know every byte offset of a shard before a single byte is read.

Pure functions; no I/O. Thread- and process-safe.
"""

from __future__ import annotations

BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)
"""Two zero blocks: the end of a tar archive."""

_USTAR_NAME_MAX = 100
_USTAR_PREFIX_MAX = 155
_USTAR_SIZE_LIMIT = 8 ** 11  # 11 octal digits
_MTIME_LIMIT = 8 ** 11
_PAX_HEADER_NAME = b"././@PaxHeader"


def padding(size: int) -> int:
    """Zero bytes that follow ``size`` bytes of member data to reach a block boundary."""
    return -size & (BLOCK - 1)


def _ustar_split(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) fields for an ASCII ``name``, or None when it does not fit ustar."""
    if len(name) <= _USTAR_NAME_MAX:
        return b"", name
    # split at a '/' so that prefix <= 155 and the rest <= 100 bytes (the rest non-empty)
    cut = name.rfind(b"/", 0, _USTAR_PREFIX_MAX + 1)
    while cut > 0:
        if len(name) - cut - 1 <= _USTAR_NAME_MAX:
            return name[:cut], name[cut + 1:]
        cut = name.rfind(b"/", 0, cut)
    return None


def _needs_pax(name: str, size: int) -> bool:
    return (size >= _USTAR_SIZE_LIMIT or not name.isascii() or "\0" in name
            or _ustar_split(name.encode("ascii")) is None)


def _pax_payload(name: str, size: int) -> bytes:
    records = [("path", name)]
    if size >= _USTAR_SIZE_LIMIT:
        records.append(("size", str(size)))
    out = bytearray()
    for key, value in records:
        body = f" {key}={value}\n".encode()
        length = len(body) + 1
        while len(str(length)) + len(body) != length:  # the length counts its own digits
            length = len(str(length)) + len(body)
        out += str(length).encode("ascii") + body
    return bytes(out)


def header_size(name: str, size: int) -> int:
    """Bytes of header(s) :func:`member_header` writes before the data of ``name``."""
    if not _needs_pax(name, size):
        return BLOCK
    payload = len(_pax_payload(name, size))
    return 2 * BLOCK + payload + padding(payload)


def member_span(name: str, size: int) -> int:
    """Bytes a member occupies in the archive: header(s) + data + padding."""
    return header_size(name, size) + size + padding(size)


def _octal(value: int, width: int) -> bytes:
    """``width - 1`` octal digits and a NUL."""
    return b"%0*o\0" % (width - 1, value)


def _block(name: bytes, prefix: bytes, size: int, mtime: int, typeflag: bytes, mode: int) -> bytes:
    hdr = bytearray(BLOCK)
    hdr[0:len(name)] = name
    hdr[100:108] = _octal(mode, 8)
    hdr[108:116] = _octal(0, 8)  # uid
    hdr[116:124] = _octal(0, 8)  # gid
    hdr[124:136] = _octal(size, 12)
    hdr[136:148] = _octal(mtime, 12)
    hdr[148:156] = b" " * 8  # checksum placeholder
    hdr[156:157] = typeflag
    hdr[257:265] = b"ustar\x0000"
    hdr[345:345 + len(prefix)] = prefix
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    return bytes(hdr)


def member_header(name: str, size: int, *, mtime: int = 0, mode: int = 0o644) -> bytes:
    """The header bytes of one regular-file member (length :func:`header_size`).

    Args:
        name: the member name (any Unicode; a pax ``path`` record is added when it is not ASCII or
            does not fit the ustar name/prefix fields).
        size: the data size in bytes (a pax ``size`` record is added from 8 GiB on).
        mtime: integer modification time (clamped into the ustar field).
        mode: permission bits.

    Raises:
        ValueError: an empty name or a negative size.
    """
    if not name or size < 0:
        raise ValueError(f"invalid tar member name {name!r} or size {size}")
    mtime = min(max(int(mtime), 0), _MTIME_LIMIT - 1)
    if not _needs_pax(name, size):
        prefix, short = _ustar_split(name.encode("ascii"))  # type: ignore[misc]
        return _block(short, prefix, size, mtime, b"0", mode)
    payload = _pax_payload(name, size)
    fallback = name.encode("ascii", "replace").replace(b"\0", b"_")[-_USTAR_NAME_MAX:]
    ustar_size = size if size < _USTAR_SIZE_LIMIT else 0
    return (_block(_PAX_HEADER_NAME, b"", len(payload), mtime, b"x", 0o644) + payload + bytes(padding(len(payload)))
            + _block(fallback, b"", ustar_size, mtime, b"0", mode))
