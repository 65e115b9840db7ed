"""The same behaviour on every provider: ais://, s3://, gs://, az:// and a remote AIS cluster's ais://@remote/.

One private cluster (`clouds_cluster`: aisnode built with the aws, gcp and azure backends, each backed by
its local emulator - moto, fake-gcs-server, Azurite - plus a second AIS cluster attached as ``remote``)
is started once per test session. Every test below runs once per provider and checks bytes, not counts.
Cloud objects are read cold (evicted from AIS, so AIS fetches them from the emulator) and warm; objects
of the remote cluster are written through the remote cluster itself, so the first read through the
main cluster is cold too.

oc:// (OCI) cannot be emulated (its backend has no endpoint override): only its URL tests run.
"""

from __future__ import annotations

import io
import logging
import random
import tarfile
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List

import pytest

import ais_wds
from ais_wds import Client, list_objects, open_object, read_bytes, read_member, read_range, write_bytes
from ais_wds.cli import main as cli_main

pytestmark = pytest.mark.cluster

PROVIDERS = ["ais", "s3", "gs", "az", "remote"]
CLOUD = {"s3", "gs", "az"}
N_OBJECTS = 25  # listed 10 per page: 3 pages
SHARDS, PER_SHARD = 3, 8


@dataclass
class ProviderBucket:
    """A bucket of one provider on the clouds cluster, with what was written into it."""

    kind: str
    name: str
    client: Client  # the clouds cluster's main gateway
    cluster: object
    backend: Client  # writes that bypass the main cluster's cache (remote: the remote cluster itself)
    objects: Dict[str, bytes] = field(default_factory=dict)  # url -> bytes, under objs/
    samples: Dict[str, Dict[str, bytes]] = field(default_factory=dict)  # key -> {"bin": ..., "cls": ...}

    @property
    def base(self) -> str:
        return f"ais://@remote/{self.name}" if self.kind == "remote" else f"{self.kind}://{self.name}"

    @property
    def scheme(self) -> str:
        return "ais" if self.kind == "remote" else self.kind

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def put(self, path: str, data: bytes) -> None:
        """Write ``path`` so that the main cluster has not cached it (remote: through the remote cluster)."""
        if self.kind == "remote":
            write_bytes(f"ais://{self.name}/{path}", data, self.backend)
        else:
            write_bytes(self.url(path), data, self.client)

    def make_cold(self) -> None:
        """Evict a cloud bucket's objects from AIS (kept in the emulator): the next GET is cold."""
        if self.kind in CLOUD:
            self.client.bucket(self.base).evict(keep_md=True)

    def cached(self, path: str) -> bool:
        return bool(self.client.object(self.url(path)).head().present)


def _tar(members: List[tuple]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, body in members:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


@pytest.fixture(scope="module", params=PROVIDERS)
def pb(request, clouds_cluster) -> Iterator[ProviderBucket]:
    kind = request.param
    cluster = clouds_cluster
    client = Client(cluster.endpoint, retry_seconds=60)
    name = f"pv-{kind}-{uuid.uuid4().hex[:8]}"
    backend = client
    if kind in CLOUD:
        cluster.run("cloud-bucket", f"{kind}://{name}")
    elif kind == "remote":
        backend = Client(cluster.vars["AIS_REMOTE_ENDPOINT"])
        backend.sdk.bucket(name).create()
    else:
        client.sdk.bucket(name).create()
    b = ProviderBucket(kind, name, client, cluster, backend)
    rng = random.Random(kind)
    for i in range(N_OBJECTS):
        data = rng.randbytes(rng.randint(1, 30_000))
        b.put(f"objs/o-{i:03d}.bin", data)
        b.objects[b.url(f"objs/o-{i:03d}.bin")] = data
    for s in range(SHARDS):
        members = []
        for j in range(PER_SHARD):
            key = f"s{s}-{j:02d}"
            b.samples[key] = {"bin": rng.randbytes(rng.randint(100, 5000)), "cls": str(j % 3).encode()}
            members += [(f"{key}.{ext}", body) for ext, body in b.samples[key].items()]
        b.put(f"shards/train-{s:06d}.tar", _tar(members))
    b.make_cold()
    yield b


@contextmanager
def routed(b: ProviderBucket) -> Iterator[None]:
    """webdataset's gopen sends ``b``'s scheme through ais_wds, to the clouds cluster; restored afterwards."""
    from webdataset.gopen import gopen_schemes

    saved = dict(gopen_schemes)
    ais_wds.register(b.client, schemes=[b.scheme] if b.scheme != "ais" else [])
    try:
        yield
    finally:
        gopen_schemes.clear()
        gopen_schemes.update(saved)


def _samples(it) -> Dict[str, Dict[str, bytes]]:
    """{key: {ext: bytes}} of webdataset samples; a key seen twice fails."""
    out: Dict[str, Dict[str, bytes]] = {}
    for sample in it:
        key = sample["__key__"]
        assert key not in out, f"sample {key} twice"
        out[key] = {k: bytes(v) for k, v in sample.items() if not k.startswith("__")}
    return out


def test_listing_pages_through_every_object_with_its_size(pb):
    listing = list_objects([pb.url("objs/")], pb.client, page_size=10)
    assert dict(listing) == {url: len(data) for url, data in pb.objects.items()}
    assert list(listing.urls) == sorted(pb.objects)


def test_cold_then_warm_reads_return_the_written_bytes(pb):
    pb.make_cold()
    first = next(iter(pb.objects)).split("/", 3 if pb.kind != "remote" else 4)[-1]
    if pb.kind in CLOUD:
        assert not pb.cached(first), "evicted object still cached: the read below would not be cold"
    for _ in ("cold", "warm"):
        assert {url: read_bytes(url, pb.client) for url in pb.objects} == pb.objects
    if pb.kind in CLOUD:
        assert pb.cached(first)


def test_shard_urls_feed_plain_webdataset_cold_and_warm(pb):
    import webdataset as wds

    urls = ais_wds.shard_urls(pb.url("shards/"), client=pb.client)
    assert urls == [pb.url(f"shards/train-{s:06d}.tar") for s in range(SHARDS)]
    pb.make_cold()
    with routed(pb):
        for _ in ("cold", "warm"):
            assert _samples(wds.WebDataset(urls, shardshuffle=False)) == pb.samples


def test_ais_wds_webdataset_over_two_dataloader_workers(pb):
    from torch.utils.data import DataLoader

    pb.make_cold()
    ds = ais_wds.WebDataset(pb.url("shards/"), client=pb.client, seed=1)
    assert _samples(DataLoader(ds, batch_size=None, num_workers=2)) == pb.samples


@pytest.mark.parametrize("fetch", ["get", "batch"])
def test_object_datasets_in_both_fetch_modes(pb, fetch, caplog):
    pb.make_cold()
    with caplog.at_level(logging.DEBUG, logger="ais_wds"):
        mapped = ais_wds.AISDataset(pb.client, pb.url("objs/"), fetch=fetch)
        assert len(mapped) == N_OBJECTS
        assert {url: bytes(data) for url, data in (mapped[i] for i in range(len(mapped)))} == pb.objects
        it = ais_wds.AISIterDataset(pb.client, pb.url("objs/"), fetch=fetch, batch_size=8)
        got = [(url, bytes(data)) for url, data in it]
    assert len(got) == N_OBJECTS and dict(got) == pb.objects
    if fetch == "batch" and pb.kind == "remote":
        # AIS cannot batch-GET a remote cluster's bucket: the per-object path serves it, and says so
        assert any("batch GET" in r.getMessage() and "one by one" in r.getMessage() for r in caplog.records
                   if r.levelno == logging.DEBUG), [r.getMessage() for r in caplog.records]


def test_range_and_archpath_reads(pb):
    url, data = max(pb.objects.items(), key=lambda kv: len(kv[1]))
    assert bytes(read_range(url, 100, 1100, pb.client)) == data[100:1100]
    with open_object(url, pb.client, start=len(data) - 500) as f:
        assert f.read() == data[-500:]
    shard = pb.url("shards/train-000001.tar")
    assert read_member(shard, "s1-05.bin", pb.client) == pb.samples["s1-05"]["bin"]
    assert read_member(shard, "s1-07.cls", pb.client) == b"1"


def _owning_target(b: ProviderBucket, url: str) -> int:
    if b.kind == "remote":  # AIS places a remote cluster's objects by its uuid, not by the alias
        url = url.replace("@remote/", f"@{b.cluster.vars['AIS_REMOTE_UUID']}/", 1)
    node = b.client.sdk.cluster().get_info().get_target_for_object(b.client.object(url).uname)
    port = int(node.public_net.daemon_port)
    return next(n for n in (1, 2) if b.cluster.target_port(n) == port)


def test_a_stream_resumes_after_its_target_is_killed_mid_object(pb):
    path = f"big/resume-{uuid.uuid4().hex[:6]}.bin"
    # clouds: under the 16 MiB part size (one PUT on every provider); ais: larger than what loopback socket
    # buffers can hold, so that the kill always lands before the last byte has left the target
    data = random.Random(path).randbytes((48 if pb.kind == "ais" else 12) << 20)
    pb.put(path, data)
    url = pb.url(path)
    if pb.kind in CLOUD:
        assert read_bytes(url, pb.client) == data  # cached: the killed target holds it
    n = _owning_target(pb, url)
    with open_object(url, pb.client, bufsize=64 << 10) as f:
        head = f.read(64 << 10)
        pb.cluster.run("kill-target", str(n))
        restarter = threading.Timer(1.0, pb.cluster.run, args=("start-target", str(n)))
        restarter.start()
        try:
            rest = f.read()
        finally:
            restarter.join()
        resumes = f.raw.resumes
    assert head + rest == data
    assert resumes >= 1, "the kill did not interrupt the stream"


def test_shardwriter_writes_through_ais_into_the_bucket(pb):
    import webdataset as wds

    pattern = pb.url(f"written-{uuid.uuid4().hex[:6]}/out-%06d.tar")
    items = {f"w{i:03d}": {"bin": random.Random(i).randbytes(3000 + i), "cls": str(i).encode()} for i in range(12)}
    with routed(pb):
        with wds.ShardWriter(pattern, maxcount=5) as sink:
            for key, sample in items.items():
                sink.write({"__key__": key, **sample})
    pb.make_cold()  # read back from the cloud itself, not from AIS's cache
    urls = ais_wds.shard_urls(pattern.rsplit("/", 1)[0] + "/", client=pb.client)
    assert len(urls) == 3
    assert _samples(ais_wds.WebDataset(urls, client=pb.client, shuffle=False)) == items


@pytest.fixture(scope="module")
def ais_raw(clouds_cluster) -> Dict[str, bytes]:
    """Loose objects (two files per sample) in an ais:// bucket of the clouds cluster."""
    client = Client(clouds_cluster.endpoint)
    name = f"pv-raw-{uuid.uuid4().hex[:8]}"
    client.sdk.bucket(name).create()
    out = {}
    for i in range(10):
        for ext in ("jpg", "cls"):
            data = random.Random(f"{i}.{ext}").randbytes(2000 + 37 * i)
            write_bytes(f"ais://{name}/raw/r-{i:02d}.{ext}", data, client)
            out[f"ais://{name}/raw/r-{i:02d}.{ext}"] = data
    return out


def _packed(urls: List[str], client: Client) -> Dict[str, bytes]:
    """{member name: bytes} over the members of every shard."""
    out: Dict[str, bytes] = {}
    for url in urls:
        with open_object(url, client) as f:
            with tarfile.open(fileobj=f, mode="r|") as tar:
                for m in tar:
                    out[m.name] = tar.extractfile(m).read()
    return out


def test_pack_from_the_provider_into_ais(pb):
    dst = f"pv-packed-{uuid.uuid4().hex[:8]}"
    pb.client.sdk.bucket(dst).create()
    pb.make_cold()
    rc = cli_main(["--endpoint", pb.client.endpoint, "pack", pb.url("objs/"), f"ais://{dst}/p-%06d.tar",
                   "--samples-per-shard", "10", "--no-progress"])
    assert rc == 0
    urls = ais_wds.shard_urls(f"ais://{dst}/", client=pb.client)
    assert len(urls) == 3
    assert _packed(urls, pb.client) == {url.rsplit("/", 2)[-2] + "/" + url.rsplit("/", 1)[-1]: data
                                        for url, data in pb.objects.items()}


def test_pack_from_ais_into_the_provider_and_aisshard_dataset_reads_it(pb, ais_raw):
    src = next(iter(ais_raw)).rsplit("/", 1)[0] + "/"
    prefix = f"packed-{uuid.uuid4().hex[:6]}"
    index = pb.url(f"{prefix}/train.index.msgpack")
    rc = cli_main(["--endpoint", pb.client.endpoint, "pack", src, pb.url(f"{prefix}/train-%06d.tar"),
                   "--samples-per-shard", "4", "--strip-prefix", "--index", index, "--no-progress"])
    assert rc == 0
    pb.make_cold()
    ds = ais_wds.AISShardDataset(index, pb.client)
    assert len(ds) == 10
    got = {ds[i]["__key__"]: ds[i] for i in range(len(ds))}
    expected = {f"r-{i:02d}": {ext: ais_raw[f"{src}r-{i:02d}.{ext}"] for ext in ("jpg", "cls")} for i in range(10)}
    assert {k: {ext: bytes(v[ext]) for ext in ("jpg", "cls")} for k, v in got.items()} == expected
    assert all(s["__url__"].startswith(pb.url(prefix)) for s in got.values())
