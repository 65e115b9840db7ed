"""Shard index: where every sample and member lies inside a set of tar shards, so one range GET reads a sample.

Format (msgpack, kind ``ais-wds-shard-index-v1``), columnar per shard to stay compact::

    {"kind": "ais-wds-shard-index-v1", "plan": <pack plan fingerprint or None>,
     "shards": [{"url": "ais://dst/train-000000.tar", "size": <bytes>,
                 "checksum": <AIS checksum value or None>, "version": <AIS version or None>,  # since 0.3
                 "keys": [...], "offsets": [...], "lengths": [...],      # one entry per sample
                 "member_counts": [...],                                   # members per sample
                 "member_names": [...], "member_offsets": [...], "member_sizes": [...]}]}

A sample's ``offset`` is the archive offset of its first member's first header block and ``length``
covers all its members with their headers and padding (its members are contiguous), so
``[offset, offset + length)`` is a self-contained tar fragment. A member's ``offset`` is where its data
starts. Keys and members follow webdataset's rules (key = path up to the first dot of the file name,
consecutive members with the same key form a sample, ``__meta__``-style names are skipped).

Beside the index, :func:`save_index` writes a wids descriptor (``{"__kind__": "wids-shard-index-v1",
"wids_version": 1, "requires": "ais_wds", "note": ..., "shardlist": [{"url", "nsamples", "filesize"}]}``):
wids reads it, and fetches its ``ais://`` shards in a process that has imported ais_wds
(:mod:`ais_wds.streaming.wids`); ``requires`` and ``note`` say so to whoever opens the file.

Staleness: ``size``, ``checksum`` and ``version`` are the shard's as AIS listed it when it was indexed;
:func:`verify_index` (run by :class:`~ais_wds.shard_index.dataset.AISShardDataset` when it loads an index)
lists the shards again and refuses a shard that changed since with a :class:`ShardIndexError` naming it,
before any sample is read. Indexes written before these fields existed (or by the packer, which indexes
shards before they exist) hold None: only the size is compared, and the log says so.

Builders: :func:`index_from_plan` (the packer knows every offset in advance) and :func:`build_index`
(shards made by any tool: from AIS's archive listing verified with one batched ranged GET of the
headers per shard, else by streaming each shard once).

Thread safety: index objects are plain data; share them read-only. Builders are safe to call from
several threads.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import msgpack

from ..client import Client
from ..errors import EmptyListingError, ShardIndexError, TarFormatError
from ..listing import Listing, list_objects
from ..objects.fetch import read_ranges_batched
from ..objects.list_pages import list_pages
from ..objects.reader import open_object, read_bytes
from ..objects.writer import write_bytes
from ..tar import writer as tarwrite
from ..tar.names import base_plus_ext, is_meta_member
from ..tar.reader import iter_member_spans
from ..urls import expand_urls, parse_url

logger = logging.getLogger(__name__)

INDEX_KIND = "ais-wds-shard-index-v1"
WIDS_KIND = "wids-shard-index-v1"
_VERIFY_BATCH = 1000  # headers per batched GET
_FIRST_SAMPLE_LIMIT = 4 << 20  # bytes read to learn the member order of a shard's first sample




@dataclass(frozen=True)
class SampleSpan:
    """One sample: ``key``, byte range ``[offset, offset + length)`` and its members ``(name, offset, size)``."""

    key: str
    offset: int
    length: int
    members: Tuple[Tuple[str, int, int], ...]


@dataclass
class ShardRecord:
    """The samples of one shard, column by column (see the module docstring)."""

    url: str
    size: int
    keys: List[str] = field(default_factory=list)
    offsets: List[int] = field(default_factory=list)
    lengths: List[int] = field(default_factory=list)
    member_counts: List[int] = field(default_factory=list)
    member_names: List[str] = field(default_factory=list)
    member_offsets: List[int] = field(default_factory=list)
    member_sizes: List[int] = field(default_factory=list)
    checksum: Optional[str] = None  # AIS's checksum value when indexed (None: unknown)
    version: Optional[str] = None  # AIS's object version when indexed (None: unknown)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: str, offset: int, length: int, members: Sequence[Tuple[str, int, int]]) -> None:
        self.keys.append(key)
        self.offsets.append(offset)
        self.lengths.append(length)
        self.member_counts.append(len(members))
        for name, moff, msize in members:
            self.member_names.append(name)
            self.member_offsets.append(moff)
            self.member_sizes.append(msize)

    def samples(self) -> Iterator[SampleSpan]:
        m = 0
        for i, key in enumerate(self.keys):
            n = self.member_counts[i]
            members = tuple(zip(self.member_names[m:m + n], self.member_offsets[m:m + n], self.member_sizes[m:m + n]))
            yield SampleSpan(key, self.offsets[i], self.lengths[i], members)
            m += n

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ShardIndex:
    """The index of a set of shards, in shard order. ``len()`` is the number of samples."""

    shards: List[ShardRecord] = field(default_factory=list)
    plan: Optional[str] = None

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    def samples(self) -> Iterator[Tuple[str, SampleSpan]]:
        """Every ``(shard url, sample)`` in order."""
        for shard in self.shards:
            for sample in shard.samples():
                yield shard.url, sample

    def to_bytes(self) -> bytes:
        return msgpack.packb({"kind": INDEX_KIND, "plan": self.plan, "shards": [s.to_dict() for s in self.shards]},
                             use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes, origin: str = "index") -> ShardIndex:
        """Raises: ShardIndexError: not an ais_wds shard index."""
        try:
            doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as e:  # noqa: BLE001 - any decoding failure means "not an index"
            raise ShardIndexError(f"not a msgpack shard index: {e}", url=origin) from None
        if not isinstance(doc, dict) or doc.get("kind") != INDEX_KIND:
            raise ShardIndexError(f"not an ais_wds shard index (expected kind {INDEX_KIND!r})", url=origin,
                                  hint="build one with `ais-wds index PREFIX`")
        shards = doc.get("shards")
        if not isinstance(shards, list):
            raise ShardIndexError("field 'shards' is missing or not a list", url=origin, hint=_REBUILD)
        plan = doc.get("plan")
        if plan is not None and not isinstance(plan, str):
            raise ShardIndexError("field 'plan' is not a string", url=origin, hint=_REBUILD)
        return cls([_shard_record(s, i, origin) for i, s in enumerate(shards)], plan)

    def wids_descriptor(self) -> Dict[str, Any]:
        """The wids JSON descriptor of these shards. Its ``requires`` and ``note`` fields (which wids
        ignores) say that wids fetches these URLs only in a process that has imported ais_wds."""
        schemes = sorted({s.url.split("://", 1)[0] for s in self.shards})
        return {"__kind__": WIDS_KIND, "wids_version": 1, "requires": "ais_wds", "note": wids_note(schemes),
                "shardlist": [{"url": s.url, "nsamples": len(s), "filesize": s.size} for s in self.shards]}


def wids_note(schemes: Sequence[str]) -> str:
    """The ``note`` of a wids descriptor whose shard URLs have these schemes."""
    text = ("wids fetches these shard URLs only in a Python process that has imported ais_wds "
            "(pip install ais-wds; import ais_wds, wids), which adds its AIS fetcher to wids' download handlers")
    cloud = [s for s in schemes if s != "ais"]
    if cloud:
        text += (f"; {', '.join(s + '://' for s in cloud)} URLs go through AIS only with "
                 f"AIS_WDS_ROUTE={':'.join(cloud)} in the environment, else wids uses its own handler or has none")
    return text + " (see ais_wds's docs/wids.md)"


_REBUILD = "the index is damaged or from another tool; rebuild it with `ais-wds index PREFIX`"
_OPTIONAL = ("checksum", "version")  # added in 0.3; older indexes lack them (unknown)
_COLUMNS = {"keys": str, "offsets": int, "lengths": int, "member_counts": int, "member_names": str,
            "member_offsets": int, "member_sizes": int}


def _shard_record(doc: Any, i: int, origin: str) -> ShardRecord:
    """Validate shard ``i`` of an index document (every field, type, column length, no negative number)
    and build its record.

    Raises:
        ShardIndexError: naming the index file, the shard and the field at fault.
    """
    def bad(what: str) -> ShardIndexError:
        return ShardIndexError(f"shard {i}: {what}", url=origin, hint=_REBUILD)

    if not isinstance(doc, dict):
        raise bad(f"expected a map, got {type(doc).__name__}")
    missing = [f for f in ("url", "size", *_COLUMNS) if f not in doc]
    if missing:
        raise bad(f"field {missing[0]!r} is missing")
    unknown = sorted(set(doc) - {"url", "size", *_COLUMNS, *_OPTIONAL})
    if unknown:
        raise bad(f"unknown field {unknown[0]!r}")
    if not isinstance(doc["url"], str) or "://" not in doc["url"]:
        raise bad("field 'url' is not a shard URL")
    if not _is_count(doc["size"]):
        raise bad("field 'size' is not a non-negative integer")
    for name in _OPTIONAL:
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise bad(f"field {name!r} is neither a string nor None")
    for name, kind in _COLUMNS.items():
        column = doc[name]
        if not isinstance(column, list):
            raise bad(f"field {name!r} is not a list")
        if kind is int and not all(_is_count(v) for v in column):
            raise bad(f"field {name!r} holds a value that is not a non-negative integer")
        if kind is str and not all(isinstance(v, str) for v in column):
            raise bad(f"field {name!r} holds a value that is not a string")
    n = len(doc["keys"])
    for name in ("offsets", "lengths", "member_counts"):
        if len(doc[name]) != n:
            raise bad(f"field {name!r} has {len(doc[name])} entries for {n} keys")
    members = sum(doc["member_counts"])
    for name in ("member_names", "member_offsets", "member_sizes"):
        if len(doc[name]) != members:
            raise bad(f"field {name!r} has {len(doc[name])} entries; member_counts add up to {members}")
    size = doc["size"]
    if any(o + ln > size for o, ln in zip(doc["offsets"], doc["lengths"])):
        raise bad(f"a sample's range ends past the shard's size {size}")
    return ShardRecord(**doc)


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


# --------------------------------------------------------------------------------------------
# storing


def wids_location(index_location: str) -> str:
    """Where the wids descriptor of an index goes: ``x.index.msgpack`` -> ``x.wids.json``."""
    for suffix in (".index.msgpack", ".msgpack"):
        if index_location.endswith(suffix):
            return index_location[: -len(suffix)] + ".wids.json"
    return index_location + ".wids.json"


def _store(location: str, data: bytes, client: Client) -> None:
    if "://" in location:
        write_bytes(location, data, client)
    else:
        tmp = f"{location}.tmp.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, location)


def save_index(index: ShardIndex, location: str, client: Union[Client, str, None] = None, *,
               wids: bool = True) -> Tuple[str, Optional[str]]:
    """Write ``index`` to an object URL or a local path (atomically), and its wids descriptor beside it.

    Returns:
        ``(index location, wids descriptor location or None)``.

    Raises:
        WriteError: an upload failed (nothing was left behind for that object).
    """
    client = Client.of(client)
    _store(location, index.to_bytes(), client)
    wids_at = None
    if wids:
        wids_at = wids_location(location)
        _store(wids_at, json.dumps(index.wids_descriptor(), indent=1).encode(), client)
    logger.info("wrote shard index %s (%d shards, %d samples)", location, len(index.shards), len(index))
    return location, wids_at


def load_index(location: str, client: Union[Client, str, None] = None) -> ShardIndex:
    """Read an index from an object URL or a local path.

    Raises:
        ShardIndexError: not an index. NotFoundError / ConnectError / ReadError: from AIS.
    """
    if "://" in location:
        data = read_bytes(location, Client.of(client))
    else:
        with open(location, "rb") as f:
            data = f.read()
    return ShardIndex.from_bytes(data, origin=location)


# --------------------------------------------------------------------------------------------
# from member spans (the common grouping step)


def _split(name: str) -> Tuple[Optional[str], Optional[str]]:
    if is_meta_member(name):
        return None, None
    return base_plus_ext(name)


def record_from_spans(url: str, size: int, spans: Iterable[Tuple[str, int, int, int]]) -> ShardRecord:
    """Group ``(name, header_offset, data_offset, size)`` member spans into samples, webdataset's way.

    Raises:
        ShardIndexError: a sample holds two members with the same (lower-cased) extension, which
            webdataset refuses too.
    """
    record = ShardRecord(url, size)
    key: Optional[str] = None
    start = end = 0
    members: List[Tuple[str, int, int]] = []
    seen: set = set()
    for name, header_offset, data_offset, msize in spans:
        k, ext = _split(name)
        if k is None:
            continue
        ext = ext.lower()  # type: ignore[union-attr]
        if k != key:
            if members:
                record.add(key, start, end - start, members)  # type: ignore[arg-type]
            key, start, members, seen = k, header_offset, [], set()
        if ext in seen:
            raise ShardIndexError(f"member {name!r} repeats extension {ext!r} in sample {k!r}", url=url,
                                  hint="webdataset refuses this shard too; fix the member names")
        seen.add(ext)
        members.append((name, data_offset, msize))
        end = data_offset + msize + tarwrite.padding(msize)
    if members:
        record.add(key, start, end - start, members)  # type: ignore[arg-type]
    return record


def index_from_plan(plan: Any) -> ShardIndex:
    """The index of the shards a :class:`~ais_wds.pack.plan.Plan` describes (no I/O)."""
    index = ShardIndex(plan=plan.fingerprint())
    for shard in plan.shards:
        record = ShardRecord(shard.url, shard.size)
        # the plan's samples are webdataset's (its key rule, one file per extension), read from its arrays
        for key, offset, length, members in shard.sample_spans():
            record.add(key, offset, length, members)
        index.shards.append(record)
    return index


# --------------------------------------------------------------------------------------------
# building for existing shards


def stream_record(url: str, size: int, client: Client) -> ShardRecord:
    """Index one shard by reading it once, sequentially (its data is never held).

    Raises:
        TarFormatError: not an uncompressed tar. ReadError / NotFoundError: from AIS.
    """
    with open_object(url, client) as stream:
        try:
            return record_from_spans(url, size, iter_member_spans(stream, url=url))
        except TarFormatError as e:
            if e.offset == 0:
                raise TarFormatError(f"not an uncompressed tar ({e.message})", url=url, offset=0,
                                     hint="only .tar shards can be read by byte range; compressed ones cannot",
                                     ) from None
            raise


def _predicted_spans(members: Sequence[Tuple[str, int]]) -> Optional[List[Tuple[str, int, int, int]]]:
    """Spans if the tar holds exactly ``members`` in this order with plain ustar headers, else None."""
    spans, pos = [], 0
    for name, size in members:
        if tarwrite.header_size(name, size) != tarwrite.BLOCK:
            return None  # the writing tool's extended headers are not predictable
        spans.append((name, pos, pos + tarwrite.BLOCK, size))
        pos += tarwrite.member_span(name, size)
    return spans


def header_matches(block: bytes, name: str, size: int) -> bool:
    """True when ``block`` is a valid 512-byte tar header (checksum, regular file) of ``name`` with ``size``
    bytes: the check the index, `ais-wds index` and the pack cluster engine apply at a predicted offset."""
    if len(block) != tarwrite.BLOCK or block[156:157] not in (b"0", b"\0"):
        return False
    stored = block[148:156].split(b"\0")[0].strip()
    if not stored or int(stored, 8) != sum(block[:148]) + 256 + sum(block[156:]):
        return False
    raw_name = block[:100].split(b"\0")[0]
    prefix = block[345:500].split(b"\0")[0] if block[257:263] == b"ustar\0" else b""
    full = (prefix + b"/" + raw_name) if prefix else raw_name
    size_field = block[124:136].split(b"\0")[0].strip() or b"0"
    return full == name.encode("ascii", "replace") and int(size_field, 8) == size


def verify_spans(url: str, spans: Sequence[Tuple[str, int, int, int]], client: Client) -> bool:
    """True when every predicted header is where the spans say (one batched ranged GET per 1000).

    Since consecutive verified headers leave no room between members, this proves the layout.
    False on any mismatch, and when AIS cannot serve batched ranged reads.
    """
    try:
        for first in range(0, len(spans), _VERIFY_BATCH):
            chunk = spans[first:first + _VERIFY_BATCH]
            blocks = read_ranges_batched(client, url, [(header_offset, tarwrite.BLOCK)
                                                       for _, header_offset, _, _ in chunk])
            if len(blocks) != len(chunk):
                return False
            for (name, _, _, size), block in zip(chunk, blocks):
                if not header_matches(block, name, size):
                    return False
    except Exception as e:  # noqa: BLE001 - any failure: fall back to streaming
        logger.info("%s: batched header check unavailable (%s: %s); streaming instead", url, type(e).__name__, e)
        return False
    return True


def _group_archive_listing(listing: Listing) -> List[Tuple[str, int, List[Tuple[str, int]]]]:
    """``(shard url, shard size, [(member, size)...])`` from a listing made with AIS's LsArchDir flag."""
    shards: Dict[str, Tuple[int, List[Tuple[str, int]]]] = {}
    order: List[str] = []
    for url, size in listing:
        if url.endswith(".tar") and url not in shards:
            shards[url] = (size, [])
            order.append(url)
    for url, size in listing:
        cut = url.find(".tar/")
        while cut >= 0:
            shard = url[:cut + 4]
            if shard in shards:
                shards[shard][1].append((url[cut + 5:], size))
                break
            cut = url.find(".tar/", cut + 1)
    return [(u, shards[u][0], sorted(shards[u][1])) for u in order]


def _first_sample_order(url: str, size: int, client: Client) -> Optional[Dict[str, int]]:
    """Extension -> rank in the first sample of the shard (reads that sample's bytes only), or None."""
    order: List[str] = []
    first: Optional[str] = None
    try:
        with open_object(url, client, end=min(size, _FIRST_SAMPLE_LIMIT), bufsize=64 << 10) as stream:
            for name, _, _, _ in iter_member_spans(stream, bufsize=64 << 10, url=url):
                key, ext = _split(name)
                if key is None:
                    continue
                if first is not None and key != first:
                    break
                first = key
                order.append(ext.lower())  # type: ignore[union-attr]
    except TarFormatError:  # the first sample is larger than the read: no guess
        return None
    return {ext: rank for rank, ext in enumerate(order)} if order else None


def _key_then_ext_order(members: Sequence[Tuple[str, int]], ext_rank: Dict[str, int]
                        ) -> Optional[List[Tuple[str, int]]]:
    """``members`` as a writer that sorts samples by key and orders members by ``ext_rank`` would write them."""
    groups: Dict[str, List[Tuple[int, str, str, int]]] = {}
    for name, msize in members:
        key, ext = _split(name)
        if key is None:
            return None
        groups.setdefault(key, []).append((ext_rank.get(ext.lower(), len(ext_rank)), ext, name, msize))  # type: ignore
    return [(name, msize) for key in sorted(groups) for _, _, name, msize in sorted(groups[key])]


def _index_one(url: str, size: int, members: Optional[List[Tuple[str, int]]], client: Client, method: str,
               min_member_size: int) -> Tuple[ShardRecord, str]:
    """Try the member orders a writer most likely used (AIS lists names sorted; the tar order may be
    sorted by key with a fixed extension order per sample), proving each guess; else stream."""
    if method != "stream" and members and (method == "list" or
                                           sum(s for _, s in members) / len(members) >= min_member_size):
        spans = _predicted_spans(members)
        if spans is not None and verify_spans(url, spans, client):
            return record_from_spans(url, size, spans), "listed"
        if spans is not None:
            rank = _first_sample_order(url, size, client)
            reordered = _key_then_ext_order(members, rank) if rank else None
            spans = _predicted_spans(reordered) if reordered and reordered != members else None
            if spans is not None and verify_spans(url, spans, client):
                return record_from_spans(url, size, spans), "listed"
    return stream_record(url, size, client), "streamed"


def _members_worth_listing(shard_url: str, client: Client, min_member_size: int) -> bool:
    """Probe one shard's archive listing: are its members large enough for the listing route to pay?"""
    probe = _group_archive_listing(list_objects(shard_url, client, allow_empty=True, archive_members=True))
    members = next((m for url, _, m in probe if url == shard_url), [])
    return bool(members) and sum(size for _, size in members) / len(members) >= min_member_size


def build_index(sources: Union[str, Sequence[str]], client: Union[Client, str, None] = None, *,
                workers: int = 8, method: str = "auto", min_member_size: int = 64 << 10,
                on_shard: Optional[Callable[[str, str], None]] = None) -> ShardIndex:
    """Index existing ``.tar`` shards under prefixes or at URLs (any tool may have written them).

    The listing route: AIS lists a shard's members (list-objects with LsArchDir, sorted by name, without
    sending the shard); when every name fits a plain ustar header, the layout is predicted (name order,
    then key order with the extension order of the shard's first sample) and proven with batched ranged
    GETs of the 512-byte headers at the predicted offsets (1000 per request). Otherwise, or when no guess
    is proven, the shard is read once, sequentially.

    Checking headers costs about as much per member as streaming ~100 KB on a fast local network, so
    ``method="auto"`` takes the listing route only when the members of the first shard average at
    least ``min_member_size`` bytes; ``"list"`` always tries it; ``"stream"`` never does.

    Args:
        sources: prefix URL(s) (braces expanded); objects not ending in ``.tar`` are ignored.
        client: a :class:`Client` or an endpoint.
        workers: shards indexed in parallel.
        method: ``"auto"``, ``"list"`` or ``"stream"``.
        min_member_size: see above.
        on_shard: called with ``(url, "listed" | "streamed")`` after each shard (from worker threads).

    Returns:
        A :class:`ShardIndex`, shards in listing order.

    Raises:
        EmptyListingError: no .tar shard under the sources.
        TarFormatError: a shard is not an uncompressed tar. ShardIndexError: a shard webdataset
            could not read (repeated extension in a sample).
    """
    if method not in ("auto", "list", "stream"):
        raise ValueError(f"method must be auto, list or stream, got {method!r}")
    client = Client.of(client)
    sources = expand_urls([sources] if isinstance(sources, str) else list(sources))
    shards = _group_archive_listing(list_objects(sources, client, allow_empty=True))
    if not shards:
        raise EmptyListingError("no .tar shard found", url=", ".join(sources))
    use_listing = method == "list" or (method == "auto" and _members_worth_listing(shards[0][0], client,
                                                                                   min_member_size))
    if use_listing:
        shards = _group_archive_listing(list_objects(sources, client, allow_empty=True,
                                                     archive_members=True))

    def one(item: Tuple[str, int, List[Tuple[str, int]]]) -> ShardRecord:
        record, how = _index_one(item[0], item[1], item[2] if use_listing else None, client, method,
                                 min_member_size)
        logger.debug("%s: %s (%d samples)", item[0], how, len(record))
        if on_shard:
            on_shard(item[0], how)
        return record

    with ThreadPoolExecutor(max(1, workers)) as pool:
        records = list(pool.map(one, shards))
    stamps = shard_stamps(sources, client)
    for record in records:
        stamp = stamps.get(record.url)
        if stamp is not None and stamp[0] == record.size:
            record.checksum, record.version = stamp[1], stamp[2]
    return ShardIndex(records)


def shard_stamps(sources: Sequence[str], client: Client) -> Dict[str, Tuple[int, Optional[str], Optional[str]]]:
    """``url -> (size, checksum, version)`` of every object under ``sources``, as AIS lists them now (one
    listing with those properties; nothing is read)."""
    out: Dict[str, Tuple[int, Optional[str], Optional[str]]] = {}
    for source in sources:
        u = parse_url(source)
        base = u.join("x")[:-1]
        for page in list_pages(client, u, props="name,size,checksum,version"):
            for e in page:
                cs, ver = e.get(b"cs"), e.get(b"v")
                out[base + e[b"n"].decode()] = (int(e.get(b"s") or 0), cs.decode() if cs else None,
                                                 ver.decode() if ver else None)
    return out


def verify_index(index: ShardIndex, client: Union[Client, str, None] = None, *, origin: str = "index") -> int:
    """Refuse an index whose shards changed since it was written: list the shards again (one listing per
    bucket prefix; nothing is read) and compare each one's size, checksum and version with the index.

    A shard indexed without a checksum or version (an index written before ais_wds 0.3, or by ``pack``)
    is compared by size only; the log says how many.

    Returns:
        The number of shards checked by size only.

    Raises:
        ShardIndexError: a shard is gone, or its size, checksum or version differs from the index (the
            message names the shard and what changed; the first one found, and how many in all).
    """
    client = Client.of(client)
    prefixes = sorted({_common_prefix(urls) for urls in _by_bucket(s.url for s in index.shards).values()})
    now = shard_stamps(prefixes, client)
    stale: List[Tuple[str, str]] = []
    size_only = 0
    for shard in index.shards:
        stamp = now.get(shard.url)
        if stamp is None:
            stale.append((shard.url, "the shard is gone"))
            continue
        size, checksum, version = stamp
        if size != shard.size:
            stale.append((shard.url, f"its size is {size} bytes, the index says {shard.size}"))
        elif shard.checksum is None and shard.version is None:
            size_only += 1
        elif shard.checksum is not None and checksum is not None and checksum != shard.checksum:
            stale.append((shard.url, f"its checksum is {checksum}, the index says {shard.checksum}"))
        elif shard.version is not None and version is not None and version != shard.version:
            stale.append((shard.url, f"its version is {version}, the index says {shard.version}"))
    if stale:
        url, what = stale[0]
        more = f" ({len(stale)} of {len(index.shards)} shards changed)" if len(stale) > 1 else ""
        raise ShardIndexError(f"the shard changed after it was indexed: {what}{more}", url=url,
                              hint=f"the index {origin} is stale: rebuild it with `ais-wds index`")
    if size_only:
        logger.info("%s: %d of %d shards were indexed without a checksum or version (an index from ais_wds < 0.3, "
                    "or written by pack): only their sizes were checked", origin, size_only, len(index.shards))
    return size_only


def _by_bucket(urls: Iterable[str]) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for url in urls:
        out.setdefault(parse_url(url).bucket_url, []).append(url)
    return out


def _common_prefix(urls: List[str]) -> str:
    """The longest common prefix of object URLs of one bucket, cut back to the bucket URL at least."""
    prefix = os.path.commonprefix(urls)
    bucket = parse_url(urls[0]).bucket_url
    return prefix if len(prefix) >= len(bucket) else bucket
