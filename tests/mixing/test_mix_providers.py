"""ais_wds.Mix over sources of different providers on one cluster (the private ``clouds_cluster``: AIS
with an s3 backend emulated by moto): indexed tar shards in an ``s3://`` bucket, read cold through AIS by
an ais_wds.WebDataset, mixed with objects of an ``ais://`` bucket read by AISIterDataset. Every sample of
both once (``stop="all_exhausted"``, bytes compared), and an exact resume through StatefulDataLoader."""

import hashlib
import io
import uuid

import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

import ais_wds
from ais_wds.shard_index.index import build_index, save_index
from tests.support.mix_data import tar_bytes

pytestmark = pytest.mark.cluster


def digest(sample):
    if isinstance(sample, dict):
        return "s3", sample["__key__"], hashlib.sha1(sample["bin"]).hexdigest()
    url, data = sample
    return "ais", url.rsplit("/", 1)[1], hashlib.sha1(data).hexdigest()


def digests(batch):
    return [digest(s) for s in batch]


@pytest.fixture(scope="module")
def providers(clouds_cluster):
    client = ais_wds.Client(clouds_cluster.endpoint, retry_seconds=60)
    s3, local = f"mix-s3-{uuid.uuid4().hex[:8]}", f"mix-ais-{uuid.uuid4().hex[:8]}"
    clouds_cluster.run("cloud-bucket", f"s3://{s3}")
    client.sdk.bucket(local).create()
    expected = set()
    for s in range(3):
        members = []
        for j in range(20):
            body = f"s3 shard {s} sample {j} ".encode() * (1 + j % 4)
            members += [(f"s{s}-{j:02d}.bin", body), (f"s{s}-{j:02d}.cls", b"1")]
            expected.add(("s3", f"s{s}-{j:02d}", hashlib.sha1(body).hexdigest()))
        ais_wds.write_bytes(f"s3://{s3}/shards/train-{s:06d}.tar", tar_bytes(members), client)
    index = f"ais://{local}/s3-shards.index.msgpack"
    save_index(build_index(f"s3://{s3}/shards/", client), index, client)
    for i in range(30):
        body = f"local object {i}".encode()
        ais_wds.write_bytes(f"ais://{local}/objs/o-{i:03d}.bin", body, client)
        expected.add(("ais", f"o-{i:03d}.bin", hashlib.sha1(body).hexdigest()))
    client.bucket(f"s3://{s3}").evict(keep_md=True)  # the first reads are cold: AIS fetches from the backend
    return {"client": client, "shards": f"s3://{s3}/shards/", "index": index, "objects": f"ais://{local}/objs/",
            "expected": expected}


def _mix(p):
    shards = ais_wds.WebDataset(p["shards"], client=p["client"], index=p["index"], seed=1)
    objects = ais_wds.AISIterDataset(p["client"], p["objects"], shuffle=True, seed=2)
    return ais_wds.Mix([shards, objects], [0.6, 0.4], seed=3, stop="all_exhausted")


def test_an_s3_shard_source_and_an_ais_object_source_mix_every_sample_once_and_resume_exactly(providers):
    read = [digest(s) for s in _mix(providers)]
    assert len(read) == len(set(read)) == 90 and set(read) == providers["expected"]
    loader = StatefulDataLoader(_mix(providers), batch_size=6, num_workers=2, collate_fn=digests)
    it = iter(loader)
    before = [x for _ in range(6) for x in next(it)]
    buf = io.BytesIO()
    torch.save(loader.state_dict(), buf)
    rest = [x for b in it for x in b]
    resumed = StatefulDataLoader(_mix(providers), batch_size=6, num_workers=2, collate_fn=digests)
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf, weights_only=False))
    assert [x for b in resumed for x in b] == rest
    assert set(before + rest) == providers["expected"]
