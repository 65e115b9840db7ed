"""Test data of the mixing tests: three sources of very different sizes in one bucket.

* ``a``: 3,000 samples in 10 tar shards (300 each), with a shard index: an indexed ais_wds.WebDataset;
* ``b``: 1,000 samples in 5 tar shards (200 each), with a shard index;
* ``c``: 600 small objects: an AISIterDataset.

Shards are written with ais_wds's tar writer (``ais_wds.tar.writer.member_header``) and writer. Every
sample's bytes are unique, so tests compare digests of bytes, not just keys.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Tuple

from ais_wds import write_bytes
from ais_wds.shard_index.index import build_index, save_index
from ais_wds.tar.writer import END_OF_ARCHIVE, member_header, padding

SIZES = {"a": (10, 300), "b": (5, 200)}
C_OBJECTS = 600


def payload(source: str, shard: int, j: int) -> bytes:
    return f"{source} shard {shard} sample {j} ".encode() * (1 + j % 7)


def tar_bytes(members: List[Tuple[str, bytes]]) -> bytes:
    out = bytearray()
    for name, body in members:
        out += member_header(name, len(body))
        out += body
        out += bytes(padding(len(body)))
    out += END_OF_ARCHIVE
    return bytes(out)


def make_mix_data(client: Any, bucket: str) -> Dict[str, str]:
    """Writes the three sources (and the indexes); returns their locations."""
    jobs = []
    for source, (shards, per) in SIZES.items():
        for s in range(shards):
            members = []
            for j in range(per):
                members += [(f"{source}{s:02d}-{j:04d}.txt", payload(source, s, j)),
                            (f"{source}{s:02d}-{j:04d}.cls", str(j % 3).encode())]
            jobs.append((f"ais://{bucket}/{source}/{source}-{s:06d}.tar", tar_bytes(members)))
    jobs += [(f"ais://{bucket}/c/obj-{i:04d}.bin", payload("c", 0, i)) for i in range(C_OBJECTS)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda job: write_bytes(job[0], job[1], client), jobs))
    out = {"c": f"ais://{bucket}/c/"}
    for source in SIZES:
        index = f"ais://{bucket}/index/{source}.index.msgpack"
        save_index(build_index(f"ais://{bucket}/{source}/", client), index, client)
        out[source], out[source + "_index"] = f"ais://{bucket}/{source}/", index
    return out


def identify(sample: Any) -> Tuple[str, str, str]:
    """(source, key, sha1 of the bytes) of a mixed sample: a WebDataset dict or an AISIterDataset (url, bytes)."""
    if isinstance(sample, dict):
        key = sample["__key__"]
        return key[0], key, hashlib.sha1(sample["txt"]).hexdigest()
    url, data = sample
    return "c", url.rsplit("/", 1)[1], hashlib.sha1(data).hexdigest()


def all_ids(source: str) -> set:
    """Every (source, key, digest) of one source."""
    if source == "c":
        return {("c", f"obj-{i:04d}.bin", hashlib.sha1(payload("c", 0, i)).hexdigest()) for i in range(C_OBJECTS)}
    shards, per = SIZES[source]
    return {(source, f"{source}{s:02d}-{j:04d}", hashlib.sha1(payload(source, s, j)).hexdigest())
            for s in range(shards) for j in range(per)}
