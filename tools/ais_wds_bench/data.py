"""Benchmark data in the cluster: tar shards of fixed-size samples, built once and reused (section 1), and
buckets of a section's own (:func:`temp_buckets`).

A shard set is ``n_shards`` tar objects under one prefix whose name encodes the layout, e.g.
``ais://bench-ais-wds/stream-v1/s1048576-z67108864-n4/shard-0003.tar``. Every sample is two members,
``<key>.bin`` (``sample_size`` random bytes) and ``<key>.cls`` (a short label), as in an image +
label dataset. The tar size is a function of the layout alone, so "already present" means: the
listing shows every shard with its expected size (a re-run then uploads nothing).
"""

from __future__ import annotations

import os
import tarfile
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterator, List

import ais_wds

LAYOUT_VERSION = "v1"
BLOCK = 512
_POOL_SIZE = 4 << 20  # random bytes that payloads are sliced from


def _padded(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK * BLOCK


def _label(i: int) -> bytes:
    return str(i % 1000).encode()


def record_size(sample_size: int) -> int:
    """Tar bytes one sample takes: two headers, the payload and a label of at most 3 bytes, padded."""
    return BLOCK + _padded(sample_size) + BLOCK + BLOCK


def samples_per_shard(sample_size: int, shard_size: int) -> int:
    return max(1, (shard_size - 2 * BLOCK) // record_size(sample_size))


@dataclass
class ShardSet:
    """A set of shards in the cluster and what a reader must find in them."""

    bucket: str
    prefix: str
    sample_size: int
    shard_size: int  # the requested size; ``shard_bytes`` is the real one
    n_shards: int
    samples_per_shard: int
    shard_bytes: int
    names: List[str]  # object names in the bucket

    @property
    def label(self) -> str:
        return f"{_human(self.sample_size)} samples, {_human(self.shard_bytes)} shards"

    @property
    def total_bytes(self) -> int:
        return self.shard_bytes * self.n_shards

    @property
    def total_samples(self) -> int:
        return self.samples_per_shard * self.n_shards

    def ais_urls(self) -> List[str]:
        return [f"ais://{self.bucket}/{n}" for n in self.names]

    def http_urls(self, endpoint: str) -> List[str]:
        return [f"{endpoint}/v1/objects/{self.bucket}/{n}?provider=ais" for n in self.names]

    def to_json(self) -> Dict[str, Any]:
        d = asdict(self)
        d.update(label=self.label, total_bytes=self.total_bytes, total_samples=self.total_samples)
        return d


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if float(n).is_integer() else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def build_shard(shard_index: int, sample_size: int, n_samples: int, pool: bytes) -> bytes:
    """The bytes of one shard (deterministic in its arguments and ``pool``)."""
    parts: List[bytes] = []
    pad = _padded(sample_size) - sample_size
    for i in range(n_samples):
        key = f"s{shard_index:04d}_{i:07d}"
        off = (i * 4099 + shard_index * 65537) % (len(pool) - sample_size + 1)
        payload = pool[off:off + sample_size]
        label = _label(i)
        for name, data, tail in ((f"{key}.bin", payload, pad), (f"{key}.cls", label, BLOCK - len(label))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            parts.append(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))
            parts.append(data)
            parts.append(b"\0" * tail)
    parts.append(b"\0" * (2 * BLOCK))
    return b"".join(parts)


def ensure_bucket(client: ais_wds.Client, bucket: str) -> None:
    client.sdk.bucket(bucket).create(exist_ok=True)


def ensure_shard_set(client: ais_wds.Client, bucket: str, sample_size: int, shard_size: int, n_shards: int,
                     log=print) -> ShardSet:
    """Return the shard set for this layout, uploading whatever shard is missing or has the wrong size."""
    n = samples_per_shard(sample_size, shard_size)
    shard_bytes = n * record_size(sample_size) + 2 * BLOCK
    # n_shards is part of the prefix: a peer that reads "everything under the prefix" (AISShardReader)
    # must find exactly this set there
    prefix = f"stream-{LAYOUT_VERSION}/s{sample_size}-z{shard_size}-n{n_shards}/"
    names = [f"{prefix}shard-{i:04d}.tar" for i in range(n_shards)]
    shards = ShardSet(bucket, prefix, sample_size, shard_size, n_shards, n, shard_bytes, names)

    present = dict(ais_wds.list_objects(f"ais://{bucket}/{prefix}", client, allow_empty=True))
    missing = [i for i, name in enumerate(names) if present.get(f"ais://{bucket}/{name}") != shard_bytes]
    if missing:
        log(f"  uploading {len(missing)} shard(s) of {shards.label} to ais://{bucket}/{prefix}")
        pool = os.urandom(_POOL_SIZE + sample_size)
        for i in missing:
            data = build_shard(i, sample_size, n, pool)
            assert len(data) == shard_bytes, (len(data), shard_bytes)
            ais_wds.write_bytes(f"ais://{bucket}/{names[i]}", data, client)
    return shards


# ------------------------------------------------------------------------------------------------
# for any section: buckets of its own, rates

THREADS = 16
"""The thread count of the sections that upload or copy in parallel (random access, packing)."""


@contextmanager
def temp_buckets(client: ais_wds.Client, *names: str) -> Iterator[List[str]]:
    """Fresh buckets ``bench-<name>-<random>``, one per name; deleted (best effort) on the way out."""
    made = [f"bench-{n}-{uuid.uuid4().hex[:8]}" for n in names]
    for name in made:
        client.sdk.bucket(name).create(exist_ok=True)
    try:
        yield made
    finally:
        for name in made:
            try:
                client.sdk.bucket(name).delete(missing_ok=True)
            except Exception:  # noqa: BLE001 - cleanup is best effort
                pass


def rate(count: int, seconds: float) -> float:
    """``count / seconds`` rounded to 0.1 (0 when no time passed)."""
    return round(count / seconds, 1) if seconds > 0 else 0.0
