"""Small test data for the distributed and resume tests: 7 tar shards of uneven sample counts (91
samples, keys ``sSS-JJJ``) with a shard index, and 40 small objects. Built once per test module; what was
written is known here as digests (:func:`sample_digests`, :func:`object_digests`) to compare what a
reader hands back with."""

from __future__ import annotations

import hashlib
import io
import tarfile
from typing import Dict, List, Mapping

from ais_wds import write_bytes
from ais_wds.shard_index.index import build_index, save_index

COUNTS = [9, 14, 11, 20, 6, 13, 18]
N_OBJECTS = 40


def shard_keys() -> List[str]:
    return [f"s{s:02d}-{j:03d}" for s, n in enumerate(COUNTS) for j in range(n)]


def _fields(s: int, j: int) -> Dict[str, bytes]:
    return {"txt": f"shard {s} sample {j} ".encode() * (1 + j % 5), "cls": str(j % 3).encode()}


def _object(i: int) -> bytes:
    return f"object {i}".encode()


def digest(fields: Mapping[str, bytes]) -> str:
    """sha1 of a sample's fields (``__*__`` keys left out), in name order: what a reader hands back is
    compared with what was written by this, not by key or count alone."""
    h = hashlib.sha1()
    for name in sorted(k for k in fields if not k.startswith("__")):
        value = bytes(fields[name])
        h.update(f"{name}:{len(value)}:".encode())
        h.update(value)
    return h.hexdigest()


def blob_digest(data: bytes) -> str:
    """sha1 of one object's bytes."""
    return hashlib.sha1(bytes(data)).hexdigest()


def sample_digests() -> Dict[str, str]:
    """{sample key: digest} of every sample written to the shards."""
    return {f"s{s:02d}-{j:03d}": digest(_fields(s, j)) for s, n in enumerate(COUNTS) for j in range(n)}


def object_digests() -> Dict[str, str]:
    """{object name: sha1} of the objects written under objs/."""
    return {f"obj-{i:03d}.bin": blob_digest(_object(i)) for i in range(N_OBJECTS)}


def _shard(s: int, n: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for j in range(n):
            for ext, body in _fields(s, j).items():
                info = tarfile.TarInfo(f"s{s:02d}-{j:03d}.{ext}")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def make_data(client, bucket: str) -> Dict[str, str]:
    """Writes the shards, their index and the objects; returns their locations."""
    for s, n in enumerate(COUNTS):
        write_bytes(f"ais://{bucket}/shards/train-{s:06d}.tar", _shard(s, n), client)
    index = f"ais://{bucket}/index/train.index.msgpack"
    save_index(build_index(f"ais://{bucket}/shards/", client), index, client)
    for i in range(N_OBJECTS):
        write_bytes(f"ais://{bucket}/objs/obj-{i:03d}.bin", _object(i), client)
    return {"shards": f"ais://{bucket}/shards/", "index": index, "objects": f"ais://{bucket}/objs/"}
