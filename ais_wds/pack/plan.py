"""Packing plan: which source objects go, in which order, at which byte offset, into which shard.

A plan is a pure function of the listed source objects and the options: the same listing and the same
options give the same plan on every machine and after every restart. That is what makes ``--resume``
(skip the shards that exist, write the others) and ``--part I/N`` (machine I writes the shards whose
number is I modulo N) correct without any coordination: every shard's content is fixed in advance.

Steps (see :func:`make_plan`):

1. each object name is split into a sample key and an extension by a :class:`KeyRule`;
2. objects are grouped by key into samples; two files with the same key and extension, or two raw
   keys that become the same written key, are :class:`Conflict` s. Grouping keeps no object per file or
   per key: keys, sizes and URLs go into flat arrays in one pass (:class:`_Columns`), numpy sorts the keys,
   and each sample is assembled from its run of the sorted order;
3. ``exts`` + ``missing_extension`` decide what happens to samples that lack an extension;
4. samples are sorted by key (then shuffled with ``shuffle_seed`` if given); members within a sample
   are ordered by ``exts`` then alphabetically;
5. samples fill shards in order up to ``shard_size`` bytes or ``samples_per_shard`` samples; since
   the tar layout is computed exactly (:mod:`ais_wds.tarwrite`), every member's offset is known.

Inside a shard each sample is written as ``<key>.<ext>`` members that webdataset (and
:mod:`ais_wds.tar.reader`) read back as exactly one sample with that key: a written key's last path
component never contains a dot (``stem`` and regex keys get their dots replaced by ``_``).

Pure logic; no I/O. Thread- and process-safe.
"""

from __future__ import annotations

import hashlib
import random
import re
from array import array
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..epochs.shuffle import shuffled_range
from ..errors import ConfigError, PackError
from ..tar import writer as tarwrite
from ..tar.names import shard_stem
from ..urls import expand_urls, parse_url
from .options import (  # noqa: F401 - planning's inputs, importable from here as before
    DEFAULT_SHARD_SIZE,
    MISSING_EXTENSION_ACTIONS,
    KeyRule,
    PackOptions,
    parse_size,
)

SORT_PREFIX = 64
"""Bytes of each sample key that numpy sorts on (keys that share a longer prefix are ordered in Python)."""

SORT_CHUNK = 1 << 12
"""Keys copied into the sort array per numpy step (bounds its temporary index arrays to a few MiB)."""

_USTAR_SIZES = 8 ** 11  # sizes below this fit a ustar header's 11 octal digits


# --------------------------------------------------------------------------------------------
# inputs and plan records


@dataclass(frozen=True, slots=True)
class SourceObject:
    """One object to pack: its URL, the name used for keys and member names, and its size."""

    url: str
    name: str
    size: int


def iter_source_objects(source: str, urls: Iterable[str], sizes: Iterable[int], *,
                        strip_prefix: bool = False) -> Iterator[SourceObject]:
    """:class:`SourceObject` s for the objects listed under ``source``, one at a time (what
    :func:`make_plan` takes without holding an object per listed file).

    Args:
        source: the prefix URL that was listed (e.g. ``ais://src/train/``).
        urls, sizes: what was listed (parallel iterables, e.g. a Listing's ``urls`` and ``sizes``).
        strip_prefix: drop the directory part of the source prefix from the names (``ais://src/train/``
            makes ``train/n01/x.jpg`` into ``n01/x.jpg``); otherwise names are full object names.
    """
    return (SourceObject(*row) for row in source_rows(source, urls, sizes, strip_prefix=strip_prefix))


def source_rows(source: str, urls: Iterable[str], sizes: Iterable[int], *,
                strip_prefix: bool = False) -> Iterator[Tuple[str, str, int]]:
    """:func:`iter_source_objects` as ``(url, name, size)`` tuples (what :func:`plan_rows` takes: no object
    per listed file at all)."""
    parsed = parse_url(source)
    base = parsed.path
    cut = base.rfind("/") + 1 if strip_prefix else 0
    bucket = parsed.bucket_url  # the listed URLs are this bucket's: the name is what follows (no parse per URL)
    skip = len(bucket)
    for url, size in zip(urls, sizes):
        name = url[skip:] if url.startswith(bucket) else parse_url(url).path
        yield url, name[cut:] if name.startswith(base[:cut]) else name, max(int(size), 0)


def source_objects(source: str, urls: Sequence[str], sizes: Sequence[int], *,
                   strip_prefix: bool = False) -> List[SourceObject]:
    """:func:`iter_source_objects` as a list."""
    return list(iter_source_objects(source, urls, sizes, strip_prefix=strip_prefix))


@dataclass(frozen=True, slots=True)
class PlannedMember:
    """One tar member: its name in the tar, where its bytes come from, and its header length."""

    name: str
    source: str
    size: int
    header_size: int

    @property
    def span(self) -> int:
        return self.header_size + self.size + tarwrite.padding(self.size)


@dataclass(slots=True)
class PlannedSample:
    """A sample: contiguous members from byte ``offset`` (first header) for ``length`` bytes."""

    key: str
    members: List[PlannedMember]
    offset: int = 0

    @property
    def length(self) -> int:
        return sum(m.span for m in self.members)

    @property
    def data_size(self) -> int:
        return sum(m.size for m in self.members)


class _Store:
    """Every planned member and sample of a plan in a few flat arrays (about ``len(url) + 44`` bytes per
    one-member sample, against ~320 for the objects).

    The listed objects' columns, in listing order (:class:`_Columns`): each one's source URL and tar name
    in one UTF-8 blob (the name stored only when it is not the URL's tail) and its size. The plan's
    members in plan order: ``perm[i]``, the column of member ``i``, and its header size; sample ``s``'s
    members are ``first[s]..first[s + 1] - 1``, its key a prefix (``key_bytes[s]`` bytes) of its first
    member's name. :class:`PlannedSample` / :class:`PlannedMember` objects are built only for the shard
    being looked at.
    """

    __slots__ = ("columns", "sizes", "perm", "headers", "first", "key_bytes")

    def __init__(self, columns: _Columns) -> None:
        self.columns = columns
        self.sizes = columns.sizes
        self.perm = array("q")  # member i is column perm[i]
        self.headers = array("i")
        self.first = array("q", [0])  # sample s: members first[s]..first[s + 1] - 1
        self.key_bytes = array("i")

    def add_member(self, column: int, header: int) -> None:
        self.perm.append(column)
        self.headers.append(header)

    def end_sample(self, key_bytes: int) -> None:
        self.first.append(len(self.perm))
        self.key_bytes.append(key_bytes)

    def __len__(self) -> int:
        return len(self.key_bytes)

    def length(self, sample: int) -> int:
        """Bytes of the sample's members in the tar (headers, data, padding)."""
        sizes, perm, headers = self.sizes, self.perm, self.headers
        total = 0
        for i in range(self.first[sample], self.first[sample + 1]):
            z = sizes[perm[i]]
            total += headers[i] + z + tarwrite.padding(z)
        return total

    def member(self, i: int) -> PlannedMember:
        j = self.perm[i]
        url, name = self.columns.url_name(j)
        return PlannedMember(name, url, self.sizes[j], self.headers[i])

    def sample(self, s: int, offset: int) -> PlannedSample:
        members = [self.member(i) for i in range(self.first[s], self.first[s + 1])]
        return PlannedSample(members[0].name.encode()[:self.key_bytes[s]].decode(), members, offset)


class PlannedShard:
    """Shard number ``index`` at ``url``: its samples in order and its exact size in bytes.

    ``samples`` is built afresh from the plan's compact arrays on every access (a few milliseconds for
    a shard of thousands of samples): hold the list while working on the shard, not the whole plan's.
    """

    __slots__ = ("index", "url", "size", "_samples", "_store", "_order")

    def __init__(self, index: int, url: str, samples: Optional[List[PlannedSample]] = None, size: int = 0, *,
                 store: Optional[_Store] = None, order: Sequence[int] = ()):
        self.index, self.url, self.size = index, url, size
        self._samples, self._store, self._order = samples, store, order

    @property
    def samples(self) -> List[PlannedSample]:
        if self._samples is not None or self._store is None:
            return self._samples or []
        out, offset = [], 0
        for s in self._order:
            sample = self._store.sample(s, offset)
            offset += sample.length
            out.append(sample)
        return out

    def members(self) -> List[Tuple[str, str, int, int]]:
        """``(name, source URL, size, header size)`` of every member, in tar order: what :attr:`samples` holds,
        read straight from the plan's arrays (about a third of the time: no sample or member objects)."""
        if self._samples is not None or self._store is None:
            return [(m.name, m.source, m.size, m.header_size) for x in self.samples for m in x.members]
        store = self._store
        first, perm, headers, sizes, url_name = store.first, store.perm, store.headers, store.sizes, \
            store.columns.url_name
        out = []
        for s in self._order:
            for i in range(first[s], first[s + 1]):
                j = perm[i]
                url, name = url_name(j)
                out.append((name, url, sizes[j], headers[i]))
        return out

    def sample_spans(self) -> Iterator[Tuple[str, int, int, List[Tuple[str, int, int]]]]:
        """``(key, offset, length, [(member name, data offset, size), ...])`` of every sample, in tar order (what
        an index records), read straight from the plan's arrays like :meth:`members`."""
        if self._samples is not None or self._store is None:
            for x in self.samples:
                pos, spans = x.offset, []
                for m in x.members:
                    spans.append((m.name, pos + m.header_size, m.size))
                    pos += m.span
                yield x.key, x.offset, pos - x.offset, spans
            return
        store = self._store
        first, perm, headers, sizes, name_of, key_bytes = store.first, store.perm, store.headers, store.sizes, \
            store.columns.name, store.key_bytes
        offset = 0
        for s in self._order:
            pos, spans = offset, []
            for i in range(first[s], first[s + 1]):
                j = perm[i]
                name, size, header = name_of(j), sizes[j], headers[i]
                spans.append((name, pos + header, size))
                pos += header + size + (-size % tarwrite.BLOCK)
            yield spans[0][0].encode()[:key_bytes[s]].decode(), offset, pos - offset, spans
            offset = pos

    @property
    def num_samples(self) -> int:
        return len(self._order) if self._samples is None else len(self._samples)

    def __repr__(self) -> str:
        return f"PlannedShard(index={self.index}, url={self.url!r}, samples={self.num_samples}, size={self.size})"


@dataclass(frozen=True)
class Conflict:
    """Two or more files that cannot both be in the planned sample ``key``."""

    key: str
    reason: str
    urls: Tuple[str, ...]


@dataclass
class Plan:
    """The result of :func:`make_plan`.

    Attributes:
        shards: every shard of the whole job (all parts), in shard-number order.
        options: the options the plan was made with.
        unkeyed: URLs skipped because no key/extension could be derived from their names.
        conflicts: key conflicts (the plan cannot be executed while there are any).
        incomplete: ``(key, missing extensions)`` of samples lacking one of ``options.exts``.
        excluded_samples: samples dropped under ``missing_extension="exclude"``.
        dropped_members: files dropped under ``exclude`` because their extension is not in ``exts``.
        oversize_samples: samples larger than ``shard_size`` (each alone in its shard).
    """

    shards: List[PlannedShard]
    options: PackOptions
    unkeyed: List[str] = field(default_factory=list)
    conflicts: List[Conflict] = field(default_factory=list)
    incomplete: List[Tuple[str, Tuple[str, ...]]] = field(default_factory=list)
    excluded_samples: int = 0
    dropped_members: int = 0
    oversize_samples: int = 0

    @property
    def num_samples(self) -> int:
        return sum(s.num_samples for s in self.shards)

    @property
    def num_members(self) -> int:
        return sum(len(x.members) for s in self.shards for x in s.samples)

    @property
    def total_size(self) -> int:
        return sum(s.size for s in self.shards)

    @property
    def data_size(self) -> int:
        return sum(x.data_size for s in self.shards for x in s.samples)

    def part(self, index: int, count: int) -> List[PlannedShard]:
        """The shards machine ``index`` of ``count`` writes: shard numbers congruent to index mod count."""
        if not (count >= 1 and 0 <= index < count):
            raise ConfigError(f"invalid part {index}/{count}: need 0 <= I < N")
        return [s for s in self.shards if s.index % count == index]

    def fingerprint(self) -> str:
        """A digest of the complete layout (shard URLs, member names, sources, sizes, mtime); computed once
        per plan and shard list (the marker and the index both need it)."""
        key = (len(self.shards), id(self.shards), self.options.mtime)
        cached = self.__dict__.get("_fingerprint")
        if cached is not None and cached[0] == key:
            return str(cached[1])
        h = hashlib.sha256(f"ais-wds-pack-v1 mtime={self.options.mtime}\n".encode())
        for shard in self.shards:  # the same bytes as one update per member, hashed a shard at a time
            h.update(f"S {shard.url} {shard.size}\n".encode())
            h.update("".join([f"{name}\0{source}\0{size}\n" for name, source, size, _ in shard.members()]).encode())
        digest = h.hexdigest()[:32]
        self.__dict__["_fingerprint"] = (key, digest)
        return digest

    def problems(self) -> List[str]:
        """Human-readable reasons why this plan must not be executed (empty when it can be)."""
        out = []
        if self.conflicts:
            examples = "; ".join(f"{c.key!r}: {c.reason}" for c in self.conflicts[:5])
            out.append(f"{len(self.conflicts)} sample key conflict(s), e.g. {examples}")
        if self.options.missing_extension == "abort":
            if self.incomplete:
                examples = ", ".join(f"{k!r} lacks {'/'.join(m)}" for k, m in self.incomplete[:5])
                out.append(f"{len(self.incomplete)} sample(s) lack a required extension, e.g. {examples}")
            if self.unkeyed:
                out.append(f"{len(self.unkeyed)} object(s) have no sample key/extension, e.g. {self.unkeyed[:3]}")
        if not self.shards:
            out.append("no sample to pack")
        return out

    def check(self) -> None:
        """Raises: PackError: :meth:`problems` is not empty."""
        problems = self.problems()
        if problems:
            raise PackError("cannot pack: " + "; ".join(problems),
                            hint="run with --dry-run to see the plan; change the key rule, --exts or "
                                 "--missing-extension")


# --------------------------------------------------------------------------------------------
# shard names


class ShardNames:
    """Shard URLs from a template: printf style (``ais://dst/train-%06d.tar``) or a brace range
    (``ais://dst/train-{000000..000099}.tar``, which also bounds the number of shards).

    Raises (constructor):
        ConfigError: a template with neither a single ``%d`` conversion nor braces.
    """

    def __init__(self, template: str):
        self.template = template
        parse_url(template)
        self._fixed: Optional[List[str]] = None
        conversions = re.findall(r"%[-+ #0]*\d*[dioxX]", template.replace("%%", ""))
        if len(conversions) == 1:
            pass
        elif "{" in template and not conversions:
            self._fixed = expand_urls(template)
        else:
            raise ConfigError(f"shard name template {template!r} needs one printf conversion such as %06d, "
                              "or a brace range such as {000000..000999}")

    @property
    def capacity(self) -> Optional[int]:
        """How many names the template has (None: unbounded)."""
        return None if self._fixed is None else len(self._fixed)

    def url(self, index: int) -> str:
        if self._fixed is not None:
            if index >= len(self._fixed):
                raise PackError(f"the plan needs more than the {len(self._fixed)} shard names of {self.template!r}",
                                hint="widen the brace range, raise --shard-size, or use a printf template")
            return self._fixed[index]
        return self.template % index

    def stem_url(self) -> str:
        """URL prefix for job-level objects (index, descriptor): the template's file name cut at its
        first ``%`` or ``{`` and trailing ``-_.`` (``ais://dst/train-%06d.tar`` -> ``ais://dst/train``)."""
        u = parse_url(self.template)
        directory, _, base = u.path.rpartition("/")
        stem = shard_stem(base)
        return u.join(f"{directory}/{stem}" if directory else stem)


# --------------------------------------------------------------------------------------------
# the planner


class _Columns:
    """The keyed objects of a listing while planning, in listing order, in flat arrays (no object per
    key or per file): URL + tar name blob, sizes (what :class:`_Store` keeps), and for grouping the
    written key, the raw key when it differs, and the extension's length (a suffix of the tar name)."""

    __slots__ = ("blob", "ends", "name_bytes", "sizes", "keys", "key_ends", "raws", "raw_ends", "ext_chars")

    def __init__(self) -> None:
        self.blob = bytearray()
        self.ends = array("q")  # column j's text: blob[ends[j - 1]:ends[j]]
        self.name_bytes = array("i")  # > 0: the name is the text's tail; < 0: the name follows the URL
        self.sizes = array("q")
        self.keys = bytearray()
        self.key_ends = array("q")
        self.raws = bytearray()  # the raw key where it differs from the written one, else nothing
        self.raw_ends = array("q")
        self.ext_chars = array("i")

    def add(self, url: str, name: str, size: int, raw: str, key: str, ext: str) -> None:
        raw_url, raw_name = url.encode(), name.encode()
        self.blob += raw_url
        if raw_url.endswith(raw_name):
            self.name_bytes.append(len(raw_name))
        else:
            self.blob += raw_name
            self.name_bytes.append(-len(raw_name))
        self.ends.append(len(self.blob))
        self.sizes.append(size)
        self.keys += key.encode()
        self.key_ends.append(len(self.keys))
        if raw != key:
            self.raws += raw.encode()
        self.raw_ends.append(len(self.raws))
        self.ext_chars.append(len(ext))

    def __len__(self) -> int:
        return len(self.sizes)

    def drop_keys(self) -> None:
        """Free what only grouping needs (keys, raw keys, extension lengths)."""
        self.keys, self.key_ends, self.raws, self.raw_ends = bytearray(), array("q"), bytearray(), array("q")
        self.ext_chars = array("i")

    def key(self, j: int) -> bytes:
        return bytes(self.keys[self.key_ends[j - 1] if j else 0:self.key_ends[j]])

    def raw(self, j: int) -> bytes:
        raw = self.raws[self.raw_ends[j - 1] if j else 0:self.raw_ends[j]]
        return bytes(raw) if raw else self.key(j)

    def name(self, j: int) -> str:
        """Column ``j``'s tar name alone: the last ``abs(name_bytes[j])`` bytes of its text either way."""
        end = self.ends[j]
        return self.blob[end - abs(self.name_bytes[j]):end].decode()

    def url_name(self, j: int) -> Tuple[str, str]:
        start, end, nb = self.ends[j - 1] if j else 0, self.ends[j], self.name_bytes[j]
        text = self.blob[start:end].decode()
        if len(text) == end - start:  # ASCII: byte offsets are character offsets
            return (text if nb > 0 else text[:nb]), text[len(text) - abs(nb):]
        raw = text.encode()
        return raw[:len(raw) if nb > 0 else len(raw) + nb].decode(), raw[len(raw) - abs(nb):].decode()

    def key_order(self) -> Iterator[int]:
        """Column numbers sorted by written key (UTF-8 byte order, i.e. ``str`` order), equal keys in listing
        order. numpy sorts fixed-width prefixes of the keys (at most :data:`SORT_PREFIX` bytes); runs of equal
        prefixes among longer keys are finished in Python."""
        n = len(self)
        if n == 0 or b"\0" in self.keys:  # numpy's 'S' comparisons ignore trailing NULs
            return iter(sorted(range(n), key=self.key))
        import numpy as np

        ends = np.frombuffer(self.key_ends, dtype=np.int64)
        starts = np.concatenate(([0], ends[:-1]))
        lengths = ends - starts
        longest = int(lengths.max())
        width = max(1, min(longest, SORT_PREFIX))
        blob = np.frombuffer(self.keys, dtype=np.uint8)
        prefixes = np.zeros((n, width), dtype=np.uint8)
        for a in range(0, n, SORT_CHUNK):  # bounded temporaries: about SORT_CHUNK x width indices at a time
            b = min(n, a + SORT_CHUNK)
            take = np.minimum(lengths[a:b], width)
            rows = np.repeat(np.arange(b - a), take)
            cols = np.arange(int(take.sum())) - np.repeat(np.cumsum(take) - take, take)
            prefixes[a:b][rows, cols] = blob[np.repeat(starts[a:b], take) + cols]
            del take, rows, cols
        keys = prefixes.view(f"S{width}").ravel()
        order = np.argsort(keys, kind="stable")
        if longest <= width:
            del keys, prefixes
            return _chunked(order)
        sorted_keys = keys[order]
        del keys, prefixes
        ties = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1]).tolist()  # position p ties with p + 1
        del sorted_keys
        return self._finish_ties(order, ties)

    def _finish_ties(self, order: Any, ties: List[int]) -> Iterator[int]:
        pos, t = 0, 0
        while t < len(ties):
            first = last = ties[t]
            while t + 1 < len(ties) and ties[t + 1] == last + 1:
                t += 1
                last = ties[t]
            t += 1
            yield from _chunked(order[pos:first])
            yield from sorted(order[first:last + 2].tolist(), key=self.key)  # stable: equal keys keep their order
            pos = last + 2
        yield from _chunked(order[pos:])


def _chunked(order: Any, chunk: int = 1 << 16) -> Iterator[int]:
    """The ints of a numpy array, a list of ``chunk`` at a time (never one Python int per element at once)."""
    for a in range(0, len(order), chunk):
        yield from order[a:a + chunk].tolist()


def _group(rows: Iterable[Tuple[str, str, int]], rule: KeyRule, plan: Plan) -> _Columns:
    """Pass 1: split every object's name; unkeyed ones go to ``plan.unkeyed``, the others into columns."""
    columns = _Columns()
    wds = rule.spec == "wds"
    for url, name, size in rows:
        split = rule.split(name)
        if split is None:
            plan.unkeyed.append(url)
            continue
        raw, key, ext = split
        columns.add(url, name if wds else f"{key}.{ext}", size, raw, key, ext)
    return columns


def _samples(columns: _Columns, options: PackOptions, plan: Plan) -> _Store:
    """Pass 2: the samples in key order into a :class:`_Store`, with the conflicts, incomplete and excluded
    samples exactly as a per-key grouping in listing order finds them: a second file of a sample with the
    same extension (case-insensitive) is a conflict where it is listed and is left out; different raw keys
    that make the same written key are a conflict of that key, in the order keys are first listed."""
    required = options.exts
    rank = {e: i for i, e in enumerate(required)}
    store = _Store(columns)
    file_conflicts: List[Tuple[int, Conflict]] = []
    key_conflicts: List[Tuple[int, Conflict]] = []

    raw_ends, name_of, sizes, ext_chars = columns.raw_ends, columns.name, columns.sizes, columns.ext_chars

    def flush(key_raw: bytes, group: List[int]) -> None:
        key = key_raw.decode()
        files: Dict[str, Tuple[int, str]] = {}  # ext (lower) -> (column, member name)
        # a raw key is stored only where it differs from the written one: none stored, one raw key (the key)
        raws = {columns.raw(j) for j in group} if any(raw_ends[j] != (raw_ends[j - 1] if j else 0)
                                                      for j in group) else ()
        for j in group:  # listing order
            name = name_of(j)
            lower = name[len(name) - ext_chars[j]:].lower()
            if lower in files:
                first_url, url = columns.url_name(files[lower][0])[0], columns.url_name(j)[0]
                file_conflicts.append((j, Conflict(key, f"two files with extension {lower!r}", (first_url, url))))
                continue
            files[lower] = (j, name)
        if len(raws) > 1:
            urls = tuple(columns.url_name(j)[0] for j, _ in files.values())
            key_conflicts.append((group[0], Conflict(
                key, f"different keys {sorted(r.decode() for r in raws)} map to the same written key", urls)))
        if required:
            missing = tuple(e for e in required if e not in files)
            if missing:
                if options.missing_extension == "exclude":
                    plan.excluded_samples += 1
                    return
                if options.missing_extension != "ignore":
                    plan.incomplete.append((key, missing))
            if options.missing_extension == "exclude":
                extra = [e for e in files if e not in rank]
                plan.dropped_members += len(extra)
                files = {e: v for e, v in files.items() if e in rank}
        for e in files if len(files) < 2 else sorted(files) if not rank else \
                sorted(files, key=lambda e: (rank.get(e, len(rank)), e)):
            j, name = files[e]
            size = sizes[j]
            # one ustar block for a short ASCII name (tarwrite.header_size's answer, without its work)
            plain = len(name) <= 100 and name.isascii() and "\0" not in name and size < _USTAR_SIZES
            store.add_member(j, tarwrite.BLOCK if plain else tarwrite.header_size(name, size))
        store.end_sample(len(key_raw))

    group: List[int] = []
    current = b""
    for j in columns.key_order():
        key = columns.key(j)
        if group and key != current:
            flush(current, group)
            group = []
        current = key
        group.append(j)
    if group:
        flush(current, group)
    plan.conflicts.extend(c for _, c in sorted(file_conflicts, key=lambda x: x[0]))
    plan.conflicts.extend(c for _, c in sorted(key_conflicts, key=lambda x: x[0]))
    columns.drop_keys()
    return store


def _fill_shards(store: _Store, order: Sequence[int], options: PackOptions, names: ShardNames,
                 plan: Plan) -> List[PlannedShard]:
    end = len(tarwrite.END_OF_ARCHIVE)
    shards: List[PlannedShard] = []
    start = count = offset = 0

    def close(stop: int) -> None:
        nonlocal start, count, offset
        if count:
            shards.append(PlannedShard(len(shards), names.url(len(shards)), None, offset + end, store=store,
                                       order=order[start:stop]))
        start, count, offset = stop, 0, 0

    for position, sample in enumerate(order):
        length = store.length(sample)
        if options.samples_per_shard is not None:
            full = count >= options.samples_per_shard
        else:
            full = bool(count) and offset + length + end > options.shard_size
            if length + end > options.shard_size:
                plan.oversize_samples += 1
        if full:
            close(position)
        count += 1
        offset += length
    close(len(order))
    return shards


def make_plan(objects: Iterable[SourceObject], dst_pattern: str, options: PackOptions = PackOptions()) -> Plan:
    """Plan how ``objects`` become shards named by ``dst_pattern``.

    Args:
        objects: the listed source objects (see :func:`iter_source_objects`), read once; their order does
            not matter. A generator keeps one at a time: the plan itself holds about ``len(url) + 44`` bytes
            per member, and planning peaks at about twice that plus the sample keys.
        dst_pattern: shard URL template (see :class:`ShardNames`).
        options: key rule, extensions, shard size, shuffle seed, ...

    Returns:
        A :class:`Plan`. It may carry conflicts or problems: call :meth:`Plan.check` before executing it.

    Raises:
        ConfigError: a bad template.
        PackError: the plan needs more shards than a brace template names.
    """
    return plan_rows(((o.url, o.name, o.size) for o in objects), dst_pattern, options)


def plan_rows(rows: Iterable[Tuple[str, str, int]], dst_pattern: str, options: PackOptions = PackOptions()) -> Plan:
    """:func:`make_plan` of ``(url, name, size)`` tuples (:func:`source_rows`): the same plan."""
    names = ShardNames(dst_pattern)
    plan = Plan([], options)
    store = _samples(_group(rows, options.key_rule, plan), options, plan)
    order: Sequence[int] = range(len(store))
    if options.shuffle_seed is not None:  # the permutation random.shuffle makes of the key-sorted samples
        order = array("q", shuffled_range(len(store), random.Random(f"ais_wds.pack:{options.shuffle_seed}")))
    plan.shards = _fill_shards(store, order, options, names, plan)
    return plan
