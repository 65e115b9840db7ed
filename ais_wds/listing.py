"""The listing core: turn prefixes, URLs and aistore SDK sources into a compact list of (url, size).

A job lists once (``list_objects``), saves the result (``Listing.save``), and every rank and worker
loads it (``Listing.load``) or receives it pickled; nothing below lists per worker.

A prefix is listed from AIS's msgpack pages straight into the compact columns
(:func:`ais_wds.objects.list_pages.list_pages`; the backend's largest page size), with no per-entry
Python object: as fast as a bare loop that only fetches and decodes the pages.
"""

from __future__ import annotations

import logging
import os
import sys
from array import array
from itertools import accumulate, islice, repeat
from operator import itemgetter
from typing import Any, BinaryIO, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union, overload

import msgpack

from ._core.retry import translate
from .client import Client
from .errors import EmptyListingError, ListingFormatError
from .objects.list_pages import ENTRY_IS_DIR, LS_ARCH_DIR, list_pages
from .urls import PROVIDER_TO_SCHEME, AISUrl, expand_urls, parse_url

logger = logging.getLogger(__name__)

LISTING_KIND = "ais-wds-listing-v1"
"""The first file format: ``{"kind", "urls": [str...], "sizes": [int...]}`` (still loaded)."""
LISTING_KIND_V2 = "ais-wds-listing-v2"
"""The compact file format :meth:`Listing.save` writes (see :meth:`Listing.save`)."""
UNKNOWN_SIZE = -1

Source = Union[str, AISUrl, "Listing", Any]
"""What ``list_objects`` accepts: a URL or prefix string (braces expanded), an AISUrl, a Listing,
a path to a saved listing (``*.msgpack``), an aistore SDK ``Bucket`` or ``ObjectGroup``."""

_LITTLE = sys.byteorder == "little"


def _int64(data: Union[bytes, bytearray, Iterable[int]] = b"") -> array[int]:
    out = array("q")
    if isinstance(data, (bytes, bytearray)):
        out.frombytes(data)
        if not _LITTLE:
            out.byteswap()
    else:
        out.extend(data)
    return out


def _le_bytes(values: array[int]) -> bytes:
    if _LITTLE:
        return values.tobytes()
    copy = array("q", values)
    copy.byteswap()
    return copy.tobytes()


class UrlColumn(Sequence[str]):
    """The URLs of a :class:`Listing`: a read-only sequence of ``str`` over one UTF-8 blob.

    ``column[i]`` decodes one URL; a slice returns a ``list``; equality compares with any sequence
    (``listing.urls == ["ais://b/x", ...]``). Each access builds a new ``str``: copy into a list once
    (``list(listing.urls)``) for loops that read every URL many times.
    """

    __slots__ = ("_blob", "_offsets")

    def __init__(self, blob: bytearray, offsets: array[int]):
        self._blob = blob
        self._offsets = offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> List[str]: ...

    def __getitem__(self, i: Union[int, slice]) -> Union[str, List[str]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"listing index {i} out of range")
        o = self._offsets
        return self._blob[o[i]:o[i + 1]].decode()

    def __iter__(self) -> Iterator[str]:
        blob, o = self._blob, self._offsets
        start = o[0]
        for end in islice(o, 1, None):
            yield blob[start:end].decode()
            start = end

    def __eq__(self, other: object) -> bool:
        if isinstance(other, UrlColumn):
            return len(self) == len(other) and list(self) == list(other)
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        head = ", ".join(repr(u) for u in self[:3])
        return f"UrlColumn([{head}{', ...' if len(self) > 3 else ''}] {len(self)} urls)"

    __hash__ = None  # type: ignore[assignment]


class SizeColumn(Sequence[int]):
    """The sizes of a :class:`Listing`: a read-only sequence of ``int`` over an ``array('q')``;
    a slice returns a ``list``; equality compares with any sequence."""

    __slots__ = ("_values",)

    def __init__(self, values: array[int]):
        self._values = values

    def __len__(self) -> int:
        return len(self._values)

    @overload
    def __getitem__(self, i: int) -> int: ...

    @overload
    def __getitem__(self, i: slice) -> List[int]: ...

    def __getitem__(self, i: Union[int, slice]) -> Union[int, List[int]]:
        if isinstance(i, slice):
            return self._values[i].tolist()
        return self._values[i]

    def __iter__(self) -> Iterator[int]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SizeColumn):
            return self._values == other._values
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self._values, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"SizeColumn({self._values[:3].tolist()}{'...' if len(self) > 3 else ''} {len(self)} sizes)"

    __hash__ = None  # type: ignore[assignment]


class Listing:
    """An ordered list of objects: URL strings and sizes (``-1``: unknown), stored compactly.

    ``Listing(urls, sizes)`` takes any two parallel iterables. Storage is one UTF-8 blob of the URLs
    plus ``array('q')`` offsets and sizes: about ``len(url) + 16`` bytes per object (a list of
    ``str`` costs ``len(url) + 65``), so 10 million objects with 40-character names fit in well
    under 1 GB. ``urls`` and ``sizes`` are read-only sequence views (:class:`UrlColumn`,
    :class:`SizeColumn`); grow a listing with :meth:`append` / :meth:`extend`.

    Cheap to pickle (three byte buffers); safe to share read-only between threads; not safe to
    append to from several threads at once.
    """

    __slots__ = ("_blob", "_offsets", "_sizes")

    def __init__(self, urls: Iterable[str] = (), sizes: Iterable[int] = ()):
        self._blob = bytearray()
        self._offsets = _int64([0])
        self._sizes = _int64(sizes)
        for url in urls:
            self._blob += url.encode()
            self._offsets.append(len(self._blob))
        if len(self._offsets) - 1 != len(self._sizes):
            raise ValueError(f"Listing: {len(self._offsets) - 1} urls but {len(self._sizes)} sizes")

    @classmethod
    def _from_columns(cls, blob: bytearray, offsets: array[int], sizes: array[int]) -> Listing:
        out = cls.__new__(cls)
        out._blob, out._offsets, out._sizes = blob, offsets, sizes
        return out

    @property
    def urls(self) -> UrlColumn:
        """The URLs, in order (a read-only view; see :class:`UrlColumn`)."""
        return UrlColumn(self._blob, self._offsets)

    @property
    def sizes(self) -> SizeColumn:
        """The sizes, in order (a read-only view)."""
        return SizeColumn(self._sizes)

    def __len__(self) -> int:
        return len(self._sizes)

    def __iter__(self) -> Iterator[Tuple[str, int]]:
        return zip(self.urls, self._sizes)

    def __getitem__(self, i: int) -> Tuple[str, int]:
        return self.urls[i], self._sizes[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Listing):
            return NotImplemented
        return self._sizes == other._sizes and self._offsets == other._offsets and self._blob == other._blob

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Listing({len(self)} objects, {self.total_size} bytes)"

    def __getstate__(self) -> Dict[str, bytes]:
        return {"blob": bytes(self._blob), "offsets": self._offsets.tobytes(), "sizes": self._sizes.tobytes()}

    def __setstate__(self, state: Dict[str, bytes]) -> None:
        offsets, sizes = array("q"), array("q")
        offsets.frombytes(state["offsets"])
        sizes.frombytes(state["sizes"])
        self._blob, self._offsets, self._sizes = bytearray(state["blob"]), offsets, sizes

    @property
    def total_size(self) -> int:
        """Sum of the known sizes."""
        return sum(s for s in self._sizes if s > 0)

    @property
    def nbytes(self) -> int:
        """Bytes held by the listing's buffers (URLs, offsets, sizes)."""
        return len(self._blob) + self._offsets.itemsize * len(self._offsets) + self._sizes.itemsize * len(self._sizes)

    def append(self, url: str, size: int = UNKNOWN_SIZE) -> None:
        self._blob += url.encode()
        self._offsets.append(len(self._blob))
        self._sizes.append(size)

    def extend(self, other: Listing) -> None:
        base = len(self._blob)
        self._blob += other._blob
        if len(self._offsets) == 1:  # empty (base 0): the first part's offsets as they are (most listings have one)
            self._offsets[1:] = other._offsets[1:]
        else:
            self._offsets.fromlist([o + base for o in islice(other._offsets, 1, None)])
        self._sizes.extend(other._sizes)

    def select(self, indices: Iterable[int]) -> Listing:
        """A new Listing of the entries at ``indices``, in that order."""
        blob, o, sizes = self._blob, self._offsets, self._sizes
        out_blob, out_off, out_sizes = bytearray(), _int64([0]), array("q")
        for i in indices:
            out_blob += blob[o[i]:o[i + 1]]
            out_off.append(len(out_blob))
            out_sizes.append(sizes[i])
        return Listing._from_columns(out_blob, out_off, out_sizes)

    def filter(self, keep: Callable[[str], bool]) -> Listing:
        """A new Listing of the entries whose URL satisfies ``keep``."""
        return self.select(i for i, u in enumerate(self.urls) if keep(u))

    def sorted(self) -> Listing:
        """A new Listing sorted by URL (byte order of the UTF-8 names, the order AIS lists in)."""
        blob, o = self._blob, self._offsets
        return self.select(sorted(range(len(self)), key=lambda i: blob[o[i]:o[i + 1]]))

    def save(self, path: Union[str, os.PathLike[str]]) -> None:
        """Write the listing to ``path`` atomically (temp file + rename).

        Format ``ais-wds-listing-v2``, a msgpack stream of four objects: a header map ``{"kind",
        "count", "fields": ["urls", "offsets", "sizes"]}``, then one ``bin`` per field: ``urls`` (the
        UTF-8 URLs concatenated), ``offsets`` (``count + 1`` little-endian int64: URL ``i`` is
        ``urls[offsets[i]:offsets[i+1]]``), ``sizes`` (``count`` little-endian int64). Saving and loading
        copy buffers straight to and from the file: 10 million entries take about a second, and
        loading needs no memory beyond the listing itself. A field is limited to 4 GiB (msgpack bin32).
        """
        tmp = f"{os.fspath(path)}.tmp.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(msgpack.packb({"kind": LISTING_KIND_V2, "count": len(self), "fields": list(_V2_FIELDS)}))
            for buf in (self._blob, self._offsets, self._sizes):
                data: Any = buf if (_LITTLE or isinstance(buf, bytearray)) else _le_bytes(buf)
                nbytes = len(memoryview(data).cast("B"))
                if nbytes >= 1 << 32:
                    raise ValueError(f"listing too large to save ({nbytes} bytes in one field)")
                f.write(b"\xc6" + nbytes.to_bytes(4, "big"))
                f.write(data)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Union[str, os.PathLike[str]]) -> Listing:
        """Read a listing written by :meth:`save` (format v2) or by ais_wds 0.x (``ais-wds-listing-v1``).

        Every field is checked: present, of the right type and length, and the offsets cover the URL
        bytes exactly.

        Raises:
            ListingFormatError: the file is not an ais_wds listing, or a field is missing or has the
                wrong type or length (``.field`` names it; the message names the file).
        """
        where = os.fspath(path)
        with open(path, "rb") as f:
            try:
                unpacker = msgpack.Unpacker(f, raw=False, read_size=1 << 16, strict_map_key=False)
                try:
                    entries = unpacker.read_map_header()
                except msgpack.UnpackValueError:  # not a map: say what it is
                    f.seek(0)
                    data = msgpack.unpack(f, raw=False, strict_map_key=False)
                    raise ListingFormatError(f"not an ais_wds listing (a msgpack {type(data).__name__}, not a map)",
                                             url=where) from None
                header: Dict[str, Any] = {}
                columns: Dict[str, Any] = {}
                for _ in range(entries):
                    key = unpacker.unpack()
                    if key in ("urls", "sizes") and header.get("kind") != LISTING_KIND_V2:
                        columns[key] = _stream_v1_column(unpacker, key, where)
                    else:
                        header[key] = unpacker.unpack()
                if header.get("kind") == LISTING_KIND_V2:
                    f.seek(unpacker.tell())
                    return cls._read_v2(header, f, where)
            except ListingFormatError:
                raise
            except Exception as e:  # noqa: BLE001 - any decoding failure means: not a listing file
                raise ListingFormatError(f"not a msgpack listing: {type(e).__name__}: {e}", url=where) from None
        kind = header.get("kind")
        if kind == LISTING_KIND:
            return cls._load_v1(columns, where)
        raise ListingFormatError(f"not an ais_wds listing (kind {kind!r}; expected {LISTING_KIND_V2!r} or "
                                 f"{LISTING_KIND!r})", url=where, field="kind")

    @classmethod
    def _read_v2(cls, header: Dict[str, Any], f: BinaryIO, where: str) -> Listing:
        count = _field(header, "count", int, where)
        fields = _field(header, "fields", list, where)
        if count < 0:
            raise ListingFormatError(f"field 'count' is negative ({count})", url=where, field="count")
        if fields != list(_V2_FIELDS):
            raise ListingFormatError(f"field 'fields' is {fields!r}, expected {list(_V2_FIELDS)!r}", url=where,
                                     field="fields")
        blob = _read_bin(f, "urls", None, where)
        offsets = _read_int64(f, "offsets", count + 1, where)
        sizes = _read_int64(f, "sizes", count, where)
        if offsets[0] != 0 or offsets[-1] != len(blob):
            raise ListingFormatError(f"field 'offsets' does not span the {len(blob)} URL bytes "
                                     f"(first {offsets[0]}, last {offsets[-1]})", url=where, field="offsets")
        return cls._from_columns(blob, offsets, sizes)

    @classmethod
    def _load_v1(cls, columns: Dict[str, Any], where: str) -> Listing:
        """A v1 document's columns, already streamed into compact buffers by :func:`_stream_v1_column`."""
        for name in ("urls", "sizes"):
            if name not in columns:
                raise ListingFormatError(f"field {name!r} is missing", url=where, field=name)
        blob, offsets = columns["urls"]
        sizes = columns["sizes"]
        if len(offsets) - 1 != len(sizes):
            raise ListingFormatError(f"fields 'urls' and 'sizes' differ in length ({len(offsets) - 1} vs "
                                     f"{len(sizes)})", url=where, field="sizes")
        return cls._from_columns(blob, offsets, sizes)


def _stream_v1_column(unpacker: Any, name: str, where: str) -> Any:
    """Read a v1 column (an array of str or of int) one element at a time straight into compact buffers: a
    2M-entry v1 file loads with about the memory of the listing itself instead of a list of 2M ``str``.

    Returns ``(blob, offsets)`` for ``urls``, an ``array('q')`` for ``sizes``."""
    try:
        n = unpacker.read_array_header()
    except msgpack.UnpackValueError:
        raise ListingFormatError(f"field {name!r} is a {type(unpacker.unpack()).__name__}, expected list",
                                 url=where, field=name) from None
    kind = str if name == "urls" else int
    blob, offsets, values = bytearray(), _int64([0]), array("q")
    for i in range(n):
        v = unpacker.unpack()
        if not isinstance(v, kind) or isinstance(v, bool):
            raise ListingFormatError(f"field {name!r} entry {i} is a {type(v).__name__}, expected {kind.__name__}",
                                     url=where, field=name)
        if isinstance(v, str):
            blob += v.encode()
            offsets.append(len(blob))
        else:
            values.append(v)
    return (blob, offsets) if name == "urls" else values


_V2_FIELDS = ("urls", "offsets", "sizes")


def _read_int64(f: BinaryIO, name: str, count: int, where: str) -> array[int]:
    out = array("q", [0]) * count
    _read_bin(f, name, 8 * count, where, into=out)
    if not _LITTLE:
        out.byteswap()
    return out


def _read_bin(f: Any, name: str, expected: Optional[int], where: str, into: Any = None) -> bytearray:
    """Read one msgpack bin object straight into ``into`` (a buffer of the expected size) or a new bytearray."""
    head = f.read(1)
    if not head:
        raise ListingFormatError(f"field {name!r} is missing (the file ends early)", url=where, field=name)
    widths = {0xC4: 1, 0xC5: 2, 0xC6: 4}
    if head[0] not in widths:
        raise ListingFormatError(f"field {name!r} is not binary data (msgpack type byte 0x{head[0]:02x})",
                                 url=where, field=name)
    size = int.from_bytes(f.read(widths[head[0]]), "big")
    if expected is not None and size != expected:
        raise ListingFormatError(f"field {name!r} has {size} bytes, expected {expected}", url=where, field=name)
    buf = bytearray(size) if into is None else into
    if f.readinto(memoryview(buf).cast("B")) != size:
        raise ListingFormatError(f"field {name!r} is truncated (the file ends early)", url=where, field=name)
    return buf


def _field(data: Dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in data:
        raise ListingFormatError(f"field {name!r} is missing", url=where, field=name)
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ListingFormatError(f"field {name!r} is a {type(value).__name__}, expected {kind.__name__}",
                                 url=where, field=name)
    return value


def is_listing_file(source: Any) -> bool:
    """True for a local path (str or PathLike) ending in ``.msgpack`` that exists."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    return isinstance(source, str) and "://" not in source and source.endswith(".msgpack") and os.path.exists(source)


def list_objects(
    sources: Union[Source, Sequence[Source]],
    client: Union[Client, str, None] = None,
    *,
    allow_empty: bool = False,
    page_size: int = 0,
    on_page: Optional[Callable[[int], None]] = None,
    archive_members: bool = False,
) -> Listing:
    """List every object under one or many sources, in source order (each source sorted by name).

    Args:
        sources: one source or a list of them (see :data:`Source`). A URL is a prefix: ``ais://b/train-``
            lists every object whose name starts with ``train-``; ``ais://b`` lists the whole bucket.
        client: a :class:`Client` or an endpoint string; default from the environment.
        allow_empty: when False (the default) a source that matches nothing raises.
        page_size: objects per listing page (0: the backend's maximum).
        on_page: called with the running count after every page (progress display).
        archive_members: also list the members of shards as ``shard.tar/member`` entries (AIS's
            LsArchDir: the cluster reads the archives; nothing is sent to the client but names and sizes).

    Returns:
        A :class:`Listing` of full URLs (in the scheme each source was written with) and sizes.

    Raises:
        EmptyListingError: a source matched no object (unless ``allow_empty``).
        BucketNotFoundError, ConnectError, RequestError: from AIS.
        URLError: a malformed URL.
    """
    client = Client.of(client)
    if isinstance(sources, (str, AISUrl, Listing, os.PathLike)) or _is_sdk_source(sources):
        sources = [sources]
    listing = Listing()
    for source in sources:
        for one in _expand(source):
            part = _list_one(one, client, page_size, on_page, base=len(listing), archive_members=archive_members)
            if not len(part) and not allow_empty:
                raise EmptyListingError("prefix matched no object", url=_describe(one))
            listing.extend(part)
    return listing


def _expand(source: Source) -> List[Source]:
    if isinstance(source, str) and not is_listing_file(source):
        return list(expand_urls(source))
    return [source]


def _is_sdk_source(obj: Any) -> bool:
    return hasattr(obj, "list_all_objects_iter") and not isinstance(obj, (str, list, tuple))


def _describe(source: Source) -> str:
    if isinstance(source, (str, AISUrl, Listing)):
        return str(source) if not isinstance(source, Listing) else f"a listing of {len(source)} objects"
    if _is_sdk_source(source):
        bck: Any = getattr(source, "bck", source)
        return f"{PROVIDER_TO_SCHEME.get(str(_provider(bck)), 'ais')}://{bck.name}/ ({type(source).__name__})"
    return repr(source)


def _provider(bucket: Any) -> str:
    p = bucket.provider
    return str(getattr(p, "value", p))


def _bucket_url(bucket: Any) -> AISUrl:
    ns = getattr(bucket, "namespace", None)
    return AISUrl(PROVIDER_TO_SCHEME.get(_provider(bucket), "ais"), bucket.name, "",
                  getattr(ns, "uuid", "") or "" if ns else "", getattr(ns, "name", "") or "" if ns else "")


def _list_one(source: Source, client: Client, page_size: int, on_page: Optional[Callable[[int], None]],
              base: int, archive_members: bool = False) -> Listing:
    if isinstance(source, Listing):
        return source
    if isinstance(source, os.PathLike) or (isinstance(source, str) and is_listing_file(source)):
        return Listing.load(source)
    if _is_sdk_source(source):
        return _list_sdk_source(source, client)
    url = parse_url(source)
    return _list_prefix(url, client, page_size, on_page, base, archive_members)


def _list_prefix(url: AISUrl, client: Client, page_size: int, on_page: Optional[Callable[[int], None]],
                 base: int, archive_members: bool = False) -> Listing:
    """List ``url`` from AIS's msgpack pages straight into the columns of a Listing: no per-entry objects.

    Per page: the names (UTF-8 bytes, as sent) are joined behind the bucket URL in one ``bytes.join``, the
    offsets are a running sum of their lengths, the sizes one ``array.extend``; only a page that holds a
    virtual directory (``name/``) takes the slow path that drops it.
    """
    prefix = url.join("x")[:-1].encode()
    plen = len(prefix)
    blob, offsets, sizes = bytearray(), _int64([0]), array("q")
    flags = LS_ARCH_DIR if archive_members else 0
    for entries in list_pages(client, url, props="name,size", flags=flags, page_size=page_size):
        if not entries:
            continue
        names = list(map(_name_of, entries))
        joined = prefix.join([b"", *names])
        if joined.endswith(b"/") or (b"/" + prefix) in joined:  # a directory entry (or a name that looks so)
            kept = [e for e in entries if not (e[b"n"].endswith(b"/") or e.get(b"f", 0) & ENTRY_IS_DIR)]
            names = [e[b"n"] for e in kept]
            joined, entries = prefix.join([b"", *names]), kept
        blob += joined
        offsets.fromlist(list(islice(accumulate(map(plen.__add__, map(len, names)), initial=offsets[-1]), 1, None)))
        sizes.fromlist(list(map(dict.get, entries, repeat(b"s"), repeat(0))))  # AIS leaves out a size of 0
        if on_page:
            on_page(base + len(sizes))
    logger.debug("listed %d objects under %s", len(sizes), url)
    return Listing._from_columns(blob, offsets, sizes)


_name_of = itemgetter(b"n")


def _list_sdk_source(source: Any, client: Client) -> Listing:
    """List a ``Bucket`` (names and sizes) or an ``ObjectGroup`` (names; sizes unknown, no HEAD)."""
    out = Listing()
    if hasattr(source, "bck"):  # ObjectGroup
        base = _bucket_url(source.bck)
        try:
            for obj in source.list_all_objects_iter(props=None):
                out.append(base.join(obj.name), UNKNOWN_SIZE)
        except Exception as e:
            raise translate(e, _describe(source), endpoint=client.endpoint,
                            token_source=client.config.token_source) from e
        return out
    # a Bucket: list through our own client so that paging and errors are the same as for URLs
    return _list_prefix(_bucket_url(source), client, 0, None, 0)
