"""WebDataset streaming from AIS: the gopen opener, shard lists, the ready pipeline, writing shards."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import webdataset as wds

import ais_wds
from ais_wds import EmptyListingError, ObjectNotFoundError, read_bytes, shard_urls, write_bytes
from ais_wds.streaming.gopen import AISOpener
from tests.support.shards import digest

NSHARDS, PER_SHARD = 6, 50
REPO = Path(__file__).resolve().parents[2]


def _sample(i: int) -> dict:
    return {"__key__": f"sample{i:05d}", "txt": f"text {i}".encode(), "cls": str(i % 10).encode(),
            "bin": os.urandom(i % 700)}


def _tagged(sample: dict) -> str:
    """"KEY DIGEST": what a worker hands back, to compare with what was written (bytes, not keys alone)."""
    return f"{sample['__key__']} {digest(sample)}"


WRITTEN: dict = {}
"""{key: digest} of every sample the shards fixture wrote (filled by it)."""


@pytest.fixture(scope="module")
def shards(client, module_bucket, tmp_path_factory):
    """The same shards on local disk and in AIS; WRITTEN holds their samples' digests."""
    local = tmp_path_factory.mktemp("shards")
    with wds.ShardWriter(str(local / "train-%06d.tar"), maxcount=PER_SHARD, verbose=0) as sink:
        for i in range(NSHARDS * PER_SHARD):
            sample = _sample(i)
            WRITTEN[sample["__key__"]] = digest(sample)
            sink.write(sample)
    files = sorted(local.glob("train-*.tar"))
    assert len(files) == NSHARDS
    for f in files:
        write_bytes(f"ais://{module_bucket}/train/{f.name}", f.read_bytes(), client)
    return module_bucket, files


def _written(first: int, count: int) -> list:
    """Sorted "KEY DIGEST" of samples ``first .. first + count - 1`` as written."""
    return sorted(f"sample{i:05d} {WRITTEN[f'sample{i:05d}']}" for i in range(first, first + count))


def _as_plain(samples):
    return [{k: v for k, v in s.items() if k not in ("__url__", "__local_path__")} for s in samples]


def test_importing_ais_wds_registers_ais_and_leaves_cloud_schemes_to_webdataset(monkeypatch):
    from webdataset.gopen import gopen_schemes

    assert isinstance(gopen_schemes["ais"], AISOpener)
    for scheme in ("s3", "gs", "az", "oc", "aws", "gcp", "azure", "oci"):
        assert not isinstance(gopen_schemes.get(scheme), AISOpener), scheme


def test_cloud_schemes_route_through_ais_only_when_asked():
    from ais_wds.streaming.gopen import routed_schemes

    assert routed_schemes([]) == ["ais"]
    assert routed_schemes(["gs", "s3"]) == ["ais", "gs", "gcp", "s3", "aws"]
    with pytest.raises(ais_wds.ConfigError, match="'ftp' is not a scheme AIS reaches"):
        routed_schemes(["ftp"])


@pytest.mark.parametrize("variable", ["AIS_WDS_ROUTE", "USE_AIS_FOR"])
def test_route_variable_registers_cloud_schemes_at_import(variable):
    code = ("import ais_wds, webdataset\nfrom webdataset.gopen import gopen_schemes\n"
            "print(sorted(k for k, v in gopen_schemes.items() if type(v).__name__ == 'AISOpener'))")
    env = {**os.environ, variable: "s3:az"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == str(sorted(["ais", "s3", "aws", "az", "azure"])), out.stderr


def test_plain_webdataset_on_ais_urls_equals_local_file_iteration(shards, ais_endpoint):
    bucket, files = shards
    local = list(wds.WebDataset([str(f) for f in files], shardshuffle=False))
    remote = list(wds.WebDataset(f"ais://{bucket}/train/train-{{000000..{NSHARDS - 1:06d}}}.tar",
                                 shardshuffle=False))
    assert len(remote) == NSHARDS * PER_SHARD
    assert _as_plain(remote) == _as_plain(local)
    assert remote[0]["__url__"] == f"ais://{bucket}/train/train-000000.tar"


def test_ais_wds_pipeline_without_shuffle_equals_local_file_iteration(shards, client):
    bucket, files = shards
    local = list(wds.WebDataset([str(f) for f in files], shardshuffle=False))
    ours = list(ais_wds.WebDataset(f"ais://{bucket}/train/", client=client, shuffle=False))
    assert _as_plain(ours) == _as_plain(local)
    assert [s["__url__"] for s in ours] == [s["__url__"].replace(str(files[0].parent), f"ais://{bucket}/train")
                                            for s in local]


def test_shard_urls_lists_sorted_shards_under_prefixes(shards, client):
    bucket, _ = shards
    write_bytes(f"ais://{bucket}/train/readme.txt", b"not a shard", client)
    urls = shard_urls(f"ais://{bucket}/train/", client=client)
    assert urls == [f"ais://{bucket}/train/train-{i:06d}.tar" for i in range(NSHARDS)]
    assert shard_urls([f"ais://{bucket}/train/train-00000{{3..4}}.tar"]) == urls[3:5]
    with pytest.raises(EmptyListingError, match="no shard"):
        shard_urls(f"ais://{bucket}/train/readme", client=client)


def test_shard_order_changes_every_epoch_and_is_the_same_for_the_same_seed(shards, client):
    bucket, _ = shards
    ds = ais_wds.WebDataset(f"ais://{bucket}/train/", client=client, seed=3)
    epochs = [[s["__url__"] for s in ds][::PER_SHARD] for _ in range(3)]
    assert all(sorted(e) == sorted(epochs[0]) for e in epochs)
    assert len({tuple(e) for e in epochs}) == 3
    again = ais_wds.WebDataset(f"ais://{bucket}/train/", client=client, seed=3)
    assert [s["__url__"] for s in again][::PER_SHARD] == epochs[0]


def test_dataloader_workers_see_every_sample_once_and_tolerate_a_worker_without_shards(shards, client):
    bucket, _ = shards
    ds = ais_wds.WebDataset(f"ais://{bucket}/train/train-00000{{0..1}}.tar", client=client).map(_tagged)
    loader = torch.utils.data.DataLoader(ds, num_workers=3, batch_size=None)
    assert sorted(loader) == _written(0, 2 * PER_SHARD)


RANK_SCRIPT = r"""
import json, sys, torch, ais_wds
from tests.support.shards import digest

def tagged(sample):  # "KEY DIGEST", as _tagged in the test module
    return f"{sample['__key__']} {digest(sample)}"

ds = ais_wds.WebDataset(sys.argv[1], seed=11).map(tagged)
loader = torch.utils.data.DataLoader(ds, num_workers=3, batch_size=None)
ds.set_epoch(int(sys.argv[2]))
print(json.dumps(list(loader)))
"""


@pytest.mark.parametrize("epoch", [0, 1])
def test_two_ranks_times_three_workers_see_every_sample_exactly_once(shards, ais_endpoint, epoch):
    bucket, _ = shards
    procs = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, f"ais://{bucket}/train/", str(epoch)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,  # imports tests.support
                              env={**os.environ, "AIS_ENDPOINT": ais_endpoint, "RANK": str(r), "WORLD_SIZE": "2"})
             for r in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1].decode()[-2000:] for o in outs]
    per_rank = [json.loads(o[0]) for o in outs]
    assert all(per_rank), "each rank gets samples"
    everything = per_rank[0] + per_rank[1]
    assert sorted(everything) == _written(0, NSHARDS * PER_SHARD)


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_spawned_workers_read_through_ais_wds_with_plain_webdataset_and_shard_urls(shards, client, start_method):
    bucket, _ = shards
    ds = wds.WebDataset(shard_urls(f"ais://{bucket}/train/", client=client), shardshuffle=False,
                        nodesplitter=None, workersplitter=wds.split_by_worker).map(_tagged)
    loader = torch.utils.data.DataLoader(ds, num_workers=2, batch_size=None, multiprocessing_context=start_method)
    assert sorted(loader) == _written(0, NSHARDS * PER_SHARD)


def test_spawned_workers_run_the_ais_wds_pipeline(shards, client):
    bucket, _ = shards
    ds = ais_wds.WebDataset(f"ais://{bucket}/train/", client=client).map(_tagged)
    loader = torch.utils.data.DataLoader(ds, num_workers=2, batch_size=None, multiprocessing_context="spawn")
    assert sorted(loader) == _written(0, NSHARDS * PER_SHARD)


def test_tarwriter_and_shardwriter_write_into_ais_and_read_back(client, bucket):
    written = [_sample(i) for i in range(100)]
    with wds.TarWriter(f"ais://{bucket}/single.tar") as sink:
        for sample in written[:10]:
            sink.write(sample)
    assert [_tagged(s) for s in wds.WebDataset(f"ais://{bucket}/single.tar", shardshuffle=False)] == [
        _tagged(s) for s in written[:10]]
    with wds.ShardWriter(f"ais://{bucket}/many-%06d.tar", maxsize=1500, verbose=0) as sink:
        for sample in written:
            sink.write(sample)
    urls = shard_urls(f"ais://{bucket}/many-", client=client)
    assert len(urls) > 3
    got = [_tagged(s) for s in ais_wds.WebDataset(urls, client=client, shuffle=False)]
    assert got == [_tagged(s) for s in written]


def test_gopen_wb_commits_on_close_only(client, bucket):
    from webdataset.gopen import gopen

    stream = gopen(f"ais://{bucket}/raw.bin", "wb")
    stream.write(b"abc")
    with pytest.raises(ObjectNotFoundError):
        read_bytes(f"ais://{bucket}/raw.bin", client)
    stream.close()
    stream.close()
    assert read_bytes(f"ais://{bucket}/raw.bin", client) == b"abc"


def test_a_failed_shard_write_leaves_no_object_behind(client, bucket):
    with pytest.raises(RuntimeError, match="source broke"):
        with wds.TarWriter(f"ais://{bucket}/broken.tar") as sink:
            for i in range(5):
                sink.write(_sample(i))
            raise RuntimeError("source broke")
    with pytest.raises(ObjectNotFoundError):
        read_bytes(f"ais://{bucket}/broken.tar", client)
    assert len(ais_wds.list_objects(f"ais://{bucket}/", client, allow_empty=True)) == 0


def test_a_stream_cut_mid_shard_by_a_target_restart_loses_and_duplicates_nothing(client, bucket, local_cluster,
                                                                                   caplog):
    n = 600
    written = []
    with wds.TarWriter(f"ais://{bucket}/big-000000.tar") as sink:
        for i in range(n):
            sample = {"__key__": f"k{i:05d}", "bin": os.urandom(64 * 1024)}
            written.append(_tagged(sample))
            sink.write(sample)
    url = f"ais://{bucket}/big-000000.tar"
    target = local_cluster.target_of(client, url)
    keys, restarter = [], None
    for sample in ais_wds.WebDataset(url, client=client, shuffle=False):
        keys.append(_tagged(sample))  # the bytes: a resume at a wrong offset would change them
        if len(keys) == 40:
            local_cluster.kill_target(target)
            restarter = threading.Timer(2.0, local_cluster.start_target, args=(target,))
            restarter.start()
    restarter.join()
    assert keys == written
    assert any("resuming" in r.getMessage() for r in caplog.records), "the stream was never cut"

