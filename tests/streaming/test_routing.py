"""Shard URLs that ``ais_wds.shard_urls`` lists for a cloud prefix open through AIS in plain
``wds.WebDataset``, with no extra step: in this process and in spawned DataLoader workers, for s3, gs and az
(the clouds cluster's emulator backends), with one INFO line saying so. A cloud URL the user typed stays
webdataset's own unless its scheme is routed.

webdataset's own handlers would start ``gsutil``, ``aws`` or ``curl``: every test here runs with fake
executables of those names first on ``PATH`` (inherited by spawned workers) that record their call and
exit 1, and asserts that none was called.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import random
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

import ais_wds
from ais_wds import Client, ShardURL, write_bytes
from ais_wds.streaming.gopen import ShardURLRouter
from ais_wds.streaming.opener import opens_through_ais
from tests.support.tars import tar_bytes

wds = pytest.importorskip("webdataset")

FETCHERS = ("gsutil", "gcloud", "aws", "az", "curl", "ais")  # what webdataset's pipe handlers run
SHARDS, PER_SHARD = 3, 5
Samples = Dict[str, Dict[str, bytes]]


@pytest.fixture
def fake_fetchers(tmp_path, monkeypatch) -> Iterator[Path]:
    """Executables named like webdataset's fetchers, first on PATH: each appends its command line to the
    returned record file and exits 1. The test asserts afterwards that the record is empty."""
    bin_dir, record = tmp_path / "fake-bin", tmp_path / "fetcher-calls.txt"
    bin_dir.mkdir()
    record.write_text("")
    for name in FETCHERS:
        exe = bin_dir / name
        exe.write_text(f'#!/bin/sh\necho "{name} $*" >> "{record}"\nexit 1\n')
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    yield record
    assert record.read_text() == "", f"webdataset's own fetcher ran: {record.read_text()}"


@dataclass
class CloudShards:
    scheme: str
    prefix: str  # scheme://bucket/shards/
    client: Client
    endpoint: str
    samples: Samples = field(default_factory=dict)


@pytest.fixture(scope="module", params=["s3", "gs", "az"])
def cloud(request, clouds_cluster) -> CloudShards:
    """3 shards of 5 samples in a bucket of the emulator backend, evicted from AIS (the first read is cold)."""
    scheme = request.param
    client = Client(clouds_cluster.endpoint, retry_seconds=60)
    name = f"route-{scheme}-{uuid.uuid4().hex[:8]}"
    clouds_cluster.run("cloud-bucket", f"{scheme}://{name}")
    out = CloudShards(scheme, f"{scheme}://{name}/shards/", client, clouds_cluster.endpoint)
    rng = random.Random(scheme)
    for s in range(SHARDS):
        members = []
        for j in range(PER_SHARD):
            key = f"k{s}-{j:02d}"
            out.samples[key] = {"bin": rng.randbytes(rng.randint(1, 9000)), "cls": str(j).encode()}
            members += [(f"{key}.{ext}", body) for ext, body in out.samples[key].items()]
        write_bytes(f"{out.prefix}train-{s:06d}.tar", tar_bytes(members), client)
    client.bucket(f"{scheme}://{name}").evict(keep_md=True)
    return out


@pytest.fixture
def through(cloud, monkeypatch) -> Iterator[CloudShards]:
    """webdataset's gopen uses the clouds cluster in this process (and, by AIS_ENDPOINT, in spawned
    workers), with no cloud scheme routed; the table is restored afterwards."""
    from webdataset.gopen import gopen_schemes

    monkeypatch.delenv("AIS_WDS_ROUTE", raising=False)
    monkeypatch.delenv("USE_AIS_FOR", raising=False)
    monkeypatch.setenv("AIS_ENDPOINT", cloud.endpoint)
    saved = dict(gopen_schemes)
    ais_wds.register(cloud.client)
    try:
        yield cloud
    finally:
        gopen_schemes.clear()
        gopen_schemes.update(saved)


def _samples(it) -> Samples:
    out: Samples = {}
    for sample in it:
        key = sample["__key__"]
        assert key not in out, f"sample {key} twice"
        out[key] = {k: bytes(v) for k, v in sample.items() if not k.startswith("__")}
    return out


def test_shard_urls_of_a_cloud_prefix_open_through_ais_in_plain_webdataset(through, fake_fetchers, caplog):
    from webdataset.gopen import gopen_schemes

    assert not ais_wds.streaming.gopen.is_registered(through.scheme), "the scheme must not be routed here"
    assert isinstance(gopen_schemes[through.scheme], ShardURLRouter)
    urls = ais_wds.shard_urls(through.prefix, client=through.client)
    assert urls == [f"{through.prefix}train-{s:06d}.tar" for s in range(SHARDS)]
    assert all(isinstance(u, ShardURL) for u in urls)
    ais_wds.streaming.gopen._told.discard(through.scheme)  # this process may have said it already
    with caplog.at_level(logging.INFO, logger="ais_wds"):
        for _ in ("cold", "warm"):
            assert _samples(wds.WebDataset(urls, shardshuffle=False)) == through.samples
    told = [r.getMessage() for r in caplog.records
            if r.levelno == logging.INFO and "open through AIS" in r.getMessage()]
    assert len(told) == 1 and told[0].startswith(f"{through.scheme}:// shard URLs"), told


def test_spawned_dataloader_workers_open_them_through_ais_too(through, fake_fetchers):
    from torch.utils.data import DataLoader

    urls = ais_wds.shard_urls(through.prefix, client=through.client)
    assert all(type(pickle.loads(pickle.dumps(u))) is ShardURL for u in urls)
    ds = wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node,
                        workersplitter=wds.split_by_worker)
    got = _samples(DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn"))
    assert got == through.samples


def test_a_cloud_url_typed_by_the_user_stays_webdatasets_own(through, fake_fetchers, monkeypatch):
    import sys

    wds_gopen = sys.modules["webdataset.gopen"]  # the module (``webdataset.gopen`` is also a function)
    url = f"{through.prefix}train-000000.tar"
    router = wds_gopen.gopen_schemes[through.scheme]
    assert isinstance(router, ShardURLRouter)
    if through.scheme == "gs":
        assert router.own is wds_gopen.gopen_gsutil  # webdataset's gsutil pipe, untouched
        calls: List[str] = []
        monkeypatch.setattr(router, "own", lambda u, *a, **k: calls.append(u) or io.BytesIO(b""))
        wds_gopen.gopen(url)
        assert calls == [url]  # a plain str went to webdataset's handler, not to AIS
    else:
        with pytest.raises(ValueError, match="no gopen handler"):  # as in webdataset without ais_wds
            wds_gopen.gopen(url)
    assert not opens_through_ais(url, routed=())
    assert opens_through_ais(ShardURL(url), routed=()) and opens_through_ais(url, routed=[through.scheme])


def test_a_routed_scheme_opens_typed_urls_through_ais(through, fake_fetchers):
    ais_wds.register(through.client, schemes=[through.scheme])
    urls = [f"{through.prefix}train-{s:06d}.tar" for s in range(SHARDS)]  # plain str
    assert _samples(wds.WebDataset(urls, shardshuffle=False)) == through.samples


# -- the rule alone (no cluster) -------------------------------------------------------------------------


def test_the_rule_routes_ais_shard_urls_and_routed_schemes_only():
    assert opens_through_ais("ais://b/x.tar", routed=())
    for scheme in ("s3", "gs", "az", "oc", "aws", "gcp", "azure", "oci"):
        url = f"{scheme}://b/x.tar"
        assert not opens_through_ais(url, routed=()), url  # typed by the user: the other library's
        assert opens_through_ais(ShardURL(url), routed=()), url  # made by shard_urls: through AIS
    assert opens_through_ais("aws://b/x.tar", routed=["s3"])  # a provider's aliases go together
    assert not opens_through_ais("http://host/x.tar", routed=()) and not opens_through_ais(ShardURL("/local/x.tar"))
    restored = pickle.loads(pickle.dumps([ShardURL("gs://b/x.tar")]))
    assert type(restored[0]) is ShardURL and opens_through_ais(restored[0], routed=())


def test_unrouted_cloud_schemes_keep_webdatasets_own_handler_behind_the_router(monkeypatch):
    import sys

    wds_gopen = sys.modules["webdataset.gopen"]
    monkeypatch.delenv("AIS_WDS_ROUTE", raising=False)
    monkeypatch.delenv("USE_AIS_FOR", raising=False)
    saved = dict(wds_gopen.gopen_schemes)
    try:
        ais_wds.register()
        for scheme in ("s3", "gs", "az", "oc"):
            assert isinstance(wds_gopen.gopen_schemes[scheme], ShardURLRouter), scheme
        assert wds_gopen.gopen_schemes["gs"].own is wds_gopen.gopen_gsutil
        assert wds_gopen.gopen_schemes["s3"].own is None  # webdataset has none: its "no gopen handler"
        with pytest.raises(ValueError, match="no gopen handler"):
            wds_gopen.gopen("s3://b/x.tar")
        ais_wds.register(schemes=["gs"])  # routed: every gs:// URL through AIS ...
        assert wds_gopen.gopen_schemes["gs"] is wds_gopen.gopen_schemes["ais"]
        ais_wds.register()  # ... and back: webdataset's gsutil handler behind the router again
        assert wds_gopen.gopen_schemes["gs"].own is wds_gopen.gopen_gsutil
    finally:
        wds_gopen.gopen_schemes.clear()
        wds_gopen.gopen_schemes.update(saved)
