"""``ais-wds doctor URL``'s data checks, for one prefix: the listing (and its rate), a GET throughput
sample against a raw read of the same object, a look at a few shards (valid tar, samples grouped by
key, members and sample sizes, compression), and whether a shard index exists and matches the shards.

Reads are capped (:data:`SAMPLE_BYTES` per throughput read, :data:`LOOK_BYTES` per shard looked at), so
the checks take seconds on a healthy cluster. Imports neither torch nor webdataset.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, BinaryIO, Dict, List, Optional, Tuple, cast

from ..client import Client
from ..errors import AISWdsError, BucketNotFoundError, EmptyListingError, TarFormatError
from ..listing import Listing, list_objects
from ..objects.reader import open_object
from ..shard_index.index import load_index
from ..tar.names import base_plus_ext, is_meta_member, shard_stem
from ..tar.reader import iter_members
from ..urls import parse_url
from .check import FAIL, OK, SKIP, WARN, Check

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.lz4")
SAMPLE_BYTES = 32 << 20
"""Bytes read, at most, by each of the two throughput reads."""
LOOK_BYTES = 16 << 20
"""Bytes of each shard read, at most, to look at its members."""
SHARDS_LOOKED_AT = 3
SLOW_RATIO = 0.5
"""ais_wds's read below this fraction of the raw read's throughput is a WARN."""

_MAGIC = {b"\x1f\x8b": "gzip", b"\x04\x22\x4d\x18": "lz4", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2",
          b"\xfd7zXZ\x00": "xz"}


class _Capped:
    """The first ``cap`` bytes of a stream, then EOF (``hit`` says whether the cap cut it)."""

    def __init__(self, stream: Any, cap: int):
        self.stream, self.left, self.hit = stream, cap, False
        self.head = b""

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            self.hit = True
            return b""
        want = self.left if n is None or n < 0 else min(n, self.left)
        data: bytes = self.stream.read(want)
        if not self.head:
            self.head = data[:8]
        self.left -= len(data)
        return data


def check_listing(url: str, client: Client) -> Tuple[Check, Optional[Listing]]:
    """List ``url``; the rate, and how many of the objects are shards."""
    name = f"listing {url}"
    started = time.perf_counter()
    try:
        listing = list_objects([url], client)
    except BucketNotFoundError as e:
        return Check(name, FAIL, str(e), "check the bucket name and provider (`ais-wds ls ais://` lists buckets "
                                         "you can see); create it or fix the URL"), None
    except EmptyListingError:
        return Check(name, FAIL, f"nothing under {url}", f"check the prefix: `ais-wds ls {url.rsplit('/', 1)[0]}/` "
                                                         "shows what is there"), None
    except AISWdsError as e:
        return Check(name, FAIL, str(e), getattr(e, "hint", "") or "see the message"), None
    took = max(time.perf_counter() - started, 1e-6)
    shards = sum(1 for u in listing.urls if u.endswith(SHARD_SUFFIXES))
    detail = (f"{len(listing)} objects ({_size(listing.total_size)}) listed in {took:.2f} s "
              f"({len(listing) / took:,.0f} objects/s); {shards} shards")
    if not shards:
        return Check(name, FAIL, detail + f" (none ends in {', '.join(SHARD_SUFFIXES)})",
                     "point at the shards' prefix, or pack loose objects into shards with `ais-wds pack`"), listing
    return Check(name, OK, detail), listing


def _shards(listing: Listing) -> List[Tuple[str, int]]:
    return [(u, s) for u, s in listing if u.endswith(SHARD_SUFFIXES)]


def check_throughput(shards: List[Tuple[str, int]], client: Client) -> Check:
    """Read the largest of the first shards twice (at most :data:`SAMPLE_BYTES` each): with a raw read
    (the aistore SDK's object reader, its response read in 1 MiB pieces) and with ais_wds's reader."""
    url, size = max(shards[:8], key=lambda us: us[1])
    name = f"GET throughput {url}"
    cap = min(size, SAMPLE_BYTES)
    try:
        _drain(open_object(url, client, end=min(size, 1 << 20)), 1 << 20)  # warm up (a cold cloud object)
        raw_s = _timed(lambda: _drain(client.object(url).get_reader(byte_range=f"bytes=0-{cap - 1}").raw(), cap)
                       if cap else 0)
        ours_s = _timed(lambda: _drain(open_object(url, client, end=cap), cap))
    except AISWdsError as e:
        return Check(name, FAIL, f"reading it failed: {e}", getattr(e, "hint", "") or "see the message")
    raw, ours = cap / raw_s, cap / ours_s
    detail = f"ais_wds {_size(ours)}/s, raw read {_size(raw)}/s over {_size(cap)}"
    if cap < (1 << 20):
        return Check(name, OK, detail + " (a small object: these are latencies more than throughputs)")
    if ours < SLOW_RATIO * raw:
        return Check(name, WARN, detail + f": ais_wds reads at {ours / raw:.0%} of a raw read",
                     "run again (a busy machine skews one sample); if it stays, run with -vv to see retries "
                     "and report both figures")
    return Check(name, OK, detail)


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return max(time.perf_counter() - started, 1e-6)


def _drain(stream: Any, cap: int) -> int:
    got = 0
    try:
        while got < cap:
            data = stream.read(min(1 << 20, cap - got))
            if not data:
                break
            got += len(data)
    finally:
        stream.close()
    return got


def check_shards(shards: List[Tuple[str, int]], client: Client) -> List[Check]:
    """Look at the first :data:`SHARDS_LOOKED_AT` shards: a valid tar (compressed or not), samples whose
    members are adjacent (webdataset groups consecutive members by key), member and sample size spread."""
    return [_look(url, size, client) for url, size in shards[:SHARDS_LOOKED_AT]]


def _look(url: str, size: int, client: Client) -> Check:
    name = f"shard {url}"
    capped = _Capped(open_object(url, client), LOOK_BYTES)
    members, sizes, split_keys = 0, [], []
    keys: Dict[str, int] = {}
    exts: Dict[str, int] = {}
    current, current_size = None, 0
    try:
        for member, data in iter_members(cast(BinaryIO, capped), url=url):
            if is_meta_member(member):
                continue
            members += 1
            key, ext = base_plus_ext(member)
            if key is None:
                continue
            exts[ext or ""] = exts.get(ext or "", 0) + 1
            if key != current:
                if current is not None:
                    sizes.append(current_size)
                if key in keys:
                    split_keys.append(key)
                keys[key] = 1
                current, current_size = key, 0
            current_size += len(data)
    except TarFormatError as e:
        if not (capped.hit and members):
            head = capped.head.hex(" ")
            return Check(name, FAIL, f"not a valid tar ({size} bytes; first bytes {head or 'none'}): {e}",
                         "write shards as tar (ais-wds pack, webdataset's TarWriter, `tar cf`); a .tar name on "
                         "another format (zip, parquet, a single file) cannot be read as samples")
    except AISWdsError as e:
        return Check(name, FAIL, f"reading it failed: {e}", getattr(e, "hint", "") or "see the message")
    finally:
        capped.stream.close()
    if current is not None and not capped.hit:
        sizes.append(current_size)
    compression = next((kind for magic, kind in _MAGIC.items() if capped.head.startswith(magic)), "none")
    scope = f"first {_size(LOOK_BYTES)}" if capped.hit else "all"
    if not members:
        return Check(name, FAIL, f"a tar with no member ({size} bytes)", "re-write the shard; it holds no sample")
    spread = (f"sample size min {_size(min(sizes))}, median {_size(statistics.median(sizes))}, max "
              f"{_size(max(sizes))}") if sizes else "no whole sample"
    common = ", ".join(f".{e}" for e, _ in sorted(exts.items(), key=lambda kv: -kv[1])[:6])
    detail = (f"{scope}: {members} members in {len(keys)} samples ({common}); {spread}; compression {compression}")
    if split_keys:
        return Check(name, WARN, detail + f"; the members of {len(split_keys)} samples are not adjacent "
                                          f"(e.g. {split_keys[0]!r}): webdataset makes two samples of each",
                     "write each sample's members next to each other (sort by key before writing the tar)")
    if compression in ("gzip", "bzip2", "xz", "zstd", "lz4"):
        return Check(name, WARN, detail, f"{compression}-compressed shards cost CPU in every DataLoader worker and "
                                         "cannot be read by range or by member; store media already compressed "
                                         "(jpg, npz) in plain .tar")
    return Check(name, OK, detail)


def check_index(url: str, listing: Listing, client: Client) -> Check:
    """A shard index beside the shards (``<stem>.index.msgpack``, as ``ais-wds index`` and ``ais-wds pack``
    name it, or any ``.index.msgpack`` under the prefix) that names exactly the listed shards and sizes."""
    shards = dict(_shards(listing))
    candidates = [u for u in listing.urls if u.endswith(".index.msgpack")] + [_index_beside(url)]
    name = f"shard index {url}"
    for location in candidates:
        try:
            index = load_index(location, client)
        except AISWdsError:
            continue
        indexed = {rec.url: rec.size for rec in index.shards}
        missing = sorted(set(shards) - set(indexed))
        changed = sorted(u for u, s in indexed.items() if u in shards and shards[u] != s)
        gone = sorted(set(indexed) - set(shards))
        if missing or changed or gone:
            return Check(name, WARN, f"{location} does not match the shards: {len(missing)} not indexed, "
                                     f"{len(changed)} changed size, {len(gone)} no longer listed",
                         f"rebuild it: `ais-wds index {url}`")
        return Check(name, OK, f"{location}: {len(index.shards)} shards, {len(index)} samples, matching the listing")
    return Check(name, OK, "none (optional: `ais-wds index PREFIX` gives exact len(), even splits and random "
                           "access)")


def _index_beside(url: str) -> str:
    u = parse_url(url)
    directory, _, base = u.path.rpartition("/")
    stem = shard_stem(base) if base else "shards"
    return u.join(f"{directory}/{stem}.index.msgpack" if directory else f"{stem}.index.msgpack")


def check_data(url: str, client: Client) -> List[Check]:
    """Every data check for one prefix URL, in order; those that need shards are skipped without any."""
    listing_check, listing = check_listing(url, client)
    checks = [listing_check]
    shards = _shards(listing) if listing is not None else []
    if not shards:
        checks.append(Check(f"shards {url}", SKIP, "no shard to look at"))
        return checks
    checks.append(check_throughput(shards, client))
    checks += check_shards(shards, client)
    checks.append(check_index(url, listing, client))  # type: ignore[arg-type]
    return checks


def _size(n: float) -> str:
    """Bytes as decimal megabytes above 1 MB, else as bytes with thousands separators."""
    return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n:,.0f} B"
