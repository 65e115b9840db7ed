"""Small test data for the distributed and resume tests: 7 tar shards of uneven sample counts (91
samples, keys ``sSS-JJJ``) with a shard index, and 40 small objects. Built once per test module."""

from __future__ import annotations

import io
import tarfile
from typing import Dict, List

from ais_wds import write_bytes
from ais_wds.shard_index.index import build_index, save_index

COUNTS = [9, 14, 11, 20, 6, 13, 18]
N_OBJECTS = 40


def shard_keys() -> List[str]:
    return [f"s{s:02d}-{j:03d}" for s, n in enumerate(COUNTS) for j in range(n)]


def _shard(s: int, n: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for j in range(n):
            for ext, body in (("txt", f"shard {s} sample {j} ".encode() * (1 + j % 5)), ("cls", str(j % 3).encode())):
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
        write_bytes(f"ais://{bucket}/objs/obj-{i:03d}.bin", f"object {i}".encode(), client)
    return {"shards": f"ais://{bucket}/shards/", "index": index, "objects": f"ais://{bucket}/objs/"}
