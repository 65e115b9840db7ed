"""Packing, indexing and random access against the live AIS cluster.

One module-scoped source of 5,000 loose objects (0 B to 2 MiB; dots in names and directories, unicode,
long names, objects without extension) is packed once into ``full/``; the other tests pack it again
under other prefixes (resume after SIGKILL, three parts) and compare.
"""

from __future__ import annotations

import io
import random
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from webdataset.tariterators import base_plus_ext
from webdataset.tariterators import group_by_keys as wds_group_by_keys

from ais_wds.cli import main as cli_main
from ais_wds.errors import ConfigError
from ais_wds.listing import list_objects
from ais_wds.pack import pack
from ais_wds.pack.plan import PackError
from ais_wds.reader import read_bytes
from ais_wds.shard_index import build_index, load_index
from ais_wds.shard_index.dataset import AISShardDataset
from ais_wds.writer import write_bytes

REPO = Path(__file__).resolve().parents[2]
SHARD_SIZE = 1 << 20


def _source_objects() -> dict:
    """5,000 objects: 2,200 jpg+cls samples, 200 seg.png+JSON samples, 200 objects without extension."""
    rnd = random.Random(5)
    objects = {}
    dirs = ["plain", "dir.v1", "ünïcødé", "deep/er/still"]
    for i in range(2200):
        stem = f"{dirs[i % 4]}/s{i:05d}"
        if i % 50 == 3:
            stem = f"{dirs[i % 4]}/{'long_name_' * 12}{i:05d}"  # > 100 bytes: ustar prefix or pax
        if i % 97 == 5:
            stem = f"{dirs[i % 4]}/名前_{i:05d}"
        size = 1_000_000 + rnd.randrange(1 << 20) if i % 400 == 7 else rnd.choice([0, 1, 100, 511, 512, 513, 3000])
        objects[f"{stem}.jpg"] = rnd.randbytes(size)
        objects[f"{stem}.cls"] = b"" if i % 10 == 0 else str(i).encode()
    for i in range(200):
        objects[f"seg/x{i:04d}.seg.png"] = rnd.randbytes(rnd.choice([10, 700]))
        objects[f"seg/x{i:04d}.JSON"] = b'{"i": %d}' % i
    for i in range(200):
        objects[f"misc/README_{i:04d}"] = b"no extension"
    assert len(objects) == 5000
    return objects


def _expected_samples(objects: dict) -> dict:
    out: dict = {}
    for name, data in objects.items():
        key, ext = base_plus_ext(name)
        if key and ext:
            out.setdefault(key, {})[ext.lower()] = data
    return out


@pytest.fixture(scope="module")
def source(client, module_bucket):
    objects = _source_objects()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: write_bytes(f"ais://{module_bucket}/src/{kv[0]}", kv[1], client), objects.items()))
    return f"ais://{module_bucket}/src/", objects


@pytest.fixture(scope="module")
def full_pack(client, module_bucket, source):
    prefix, objects = source
    report = pack(prefix, f"ais://{module_bucket}/full/train-%05d.tar", client, shard_size=SHARD_SIZE,
                  strip_prefix=True, workers=8)
    return report


def _read_shards(client, urls: list) -> dict:
    """URL -> shard bytes."""
    with ThreadPoolExecutor(8) as pool:
        return dict(zip(urls, pool.map(lambda u: read_bytes(u, client), urls)))


def _tarfile_samples(url: str, data: bytes) -> list:
    """Samples of one shard read with tarfile + webdataset's grouping (independent of ais_wds.tario)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = [{"fname": m.name, "data": tar.extractfile(m).read(), "__url__": url} for m in tar if m.isreg()]
    return list(wds_group_by_keys(iter(files)))


def _bare(sample: dict) -> dict:
    return {k: v for k, v in sample.items() if not k.startswith("__")}


# -- the full pack -------------------------------------------------------------------------------------------------


def test_every_sample_is_packed_exactly_once_in_shards_within_the_target_size(client, source, full_pack):
    _, objects = source
    expected = _expected_samples({name: data for name, data in objects.items()})
    plan = full_pack.plan
    assert len(full_pack.written) == len(plan.shards) and not full_pack.skipped
    assert len(plan.unkeyed) == 200 and not plan.conflicts
    shards = _read_shards(client, full_pack.written)
    seen: dict = {}
    for url, data in shards.items():
        samples = _tarfile_samples(url, data)
        assert len(data) <= SHARD_SIZE or len(samples) == 1, f"{url}: {len(data)} bytes"
        for sample in samples:
            assert sample["__key__"] not in seen, f"{sample['__key__']} twice"
            seen[sample["__key__"]] = _bare(sample)
    assert seen == expected
    assert len(seen) == 2400


def test_index_offsets_are_byte_exact_and_a_wids_descriptor_is_written(client, full_pack):
    index = load_index(full_pack.index_url, client)
    assert [s.url for s in index.shards] == [s.url for s in full_pack.plan.shards]
    shards = _read_shards(client, [s.url for s in index.shards])
    for record in index.shards:
        data = shards[record.url]
        assert record.size == len(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            truth = {m.name: (m.offset_data, m.size) for m in tar if m.isreg()}
        names = []
        for sample in record.samples():
            for name, offset, size in sample.members:
                assert truth[name] == (offset, size)
                names.append(name)
            fragment = data[sample.offset: sample.offset + sample.length]
            assert [s["__key__"] for s in _tarfile_samples(record.url, fragment + bytes(1024))] == [sample.key]
        assert sorted(names) == sorted(truth)
    wids = read_bytes(full_pack.wids_url, client)
    import json

    descriptor = json.loads(wids)
    assert descriptor["__kind__"] == "wids-shard-index-v1" and descriptor["wids_version"] == 1
    assert [(e["url"], e["nsamples"], e["filesize"]) for e in descriptor["shardlist"]] == \
        [(r.url, len(r), r.size) for r in index.shards]


def test_random_access_equals_sequential_streaming_for_every_sample(client, full_pack):
    ds = AISShardDataset(full_pack.index_url, client)
    shards = _read_shards(client, [s.url for s in full_pack.plan.shards])
    streamed = [s for url, data in shards.items() for s in _tarfile_samples(url, data)]
    assert len(ds) == len(streamed) == 2400
    order = list(range(len(ds)))
    random.Random(0).shuffle(order)
    got = []
    for k in range(0, len(order), 256):
        got.extend(ds.__getitems__(order[k:k + 256]))
    by_index = dict(zip(order, got))
    for i in range(len(ds)):
        assert by_index[i] == streamed[i]
    assert ds[17] == streamed[17] and ds[-1] == streamed[-1]


def test_dataset_works_pickled_in_dataloader_workers_with_a_distributed_sampler(client, source, full_pack):
    import pickle

    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    expected = _expected_samples(source[1])
    ds = AISShardDataset(full_pack.index_url, client)
    assert len(pickle.dumps(ds)) < 200_000
    keys = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        sampler.set_epoch(0)
        subset = list(sampler)[:40]
        loader = DataLoader(ds, sampler=subset, batch_size=8, num_workers=2, collate_fn=list,
                            multiprocessing_context="spawn" if rank == 0 else "fork")
        got = [s for batch in loader for s in batch]
        for sample in got:  # the bytes the source objects hold, not only the key
            assert _bare(sample) == expected[sample["__key__"]], sample["__key__"]
        keys += [s["__key__"] for s in got]
    assert len(keys) == 80 and len(set(keys)) == 80


# -- dry run, refusals ----------------------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_writes_nothing(client, bucket, source, capsys):
    prefix, _ = source
    rc = cli_main(["--endpoint", client.endpoint, "pack", prefix, f"ais://{bucket}/t-%04d.tar", "--shard-size", "1MiB",
                   "--strip-prefix", "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "2400 samples, 4800 files" in out and "200 object(s) without sample key" in out
    assert f"ais://{bucket}/t-0000.tar" in out
    assert len(list_objects(f"ais://{bucket}", client, allow_empty=True)) == 0


def test_key_conflicts_make_a_dry_run_fail_and_a_pack_refuse_before_writing(client, bucket, source, capsys):
    prefix, _ = source
    rule = r"^(plain)/s0000"  # several files map to the key "plain" with the same extension
    rc = cli_main(["--endpoint", client.endpoint, "pack", prefix, f"ais://{bucket}/t-%04d.tar", "--key", rule,
                   "--strip-prefix", "--dry-run"])
    assert rc == 1 and "KEY CONFLICT" in capsys.readouterr().out
    with pytest.raises(PackError, match="conflict"):
        pack(prefix, f"ais://{bucket}/t-%04d.tar", client, key=rule, strip_prefix=True)
    assert len(list_objects(f"ais://{bucket}", client, allow_empty=True)) == 0


def test_existing_shards_are_not_replaced_without_resume_or_overwrite(client, bucket, source):
    prefix, _ = source
    small = prefix + "seg/"
    first = pack(small, f"ais://{bucket}/t-%02d.tar", client, shard_size="64KiB")
    with pytest.raises(PackError, match="already exist"):
        pack(small, f"ais://{bucket}/t-%02d.tar", client, shard_size="64KiB")
    again = pack(small, f"ais://{bucket}/t-%02d.tar", client, shard_size="64KiB", resume=True)
    assert again.written == [] and sorted(again.skipped) == sorted(first.written)
    with pytest.raises(PackError, match="changed since the interrupted run"):
        pack(small, f"ais://{bucket}/t-%02d.tar", client, shard_size="32KiB", resume=True)
    replaced = pack(small, f"ais://{bucket}/t-%02d.tar", client, shard_size="64KiB", overwrite=True)
    assert sorted(replaced.written) == sorted(first.written)


def test_bad_options_are_refused_with_a_clear_error(client, source):
    prefix, _ = source
    with pytest.raises(ConfigError, match="printf conversion"):
        pack(prefix, "ais://nowhere/fixed.tar", client)
    with pytest.raises(ConfigError, match="missing_extension"):
        pack(prefix, "ais://nowhere/t-%d.tar", client, missing_extension="sometimes")


# -- resume after SIGKILL, parts --------------------------------------------------------------------------------------


def _shard_sizes(client, prefix: str) -> dict:
    listing = list_objects(prefix, client, allow_empty=True)
    return {u: s for u, s in listing if u.endswith(".tar")}


def test_resume_after_sigkill_completes_the_set_with_every_sample_once(client, module_bucket, source, full_pack):
    prefix, _ = source
    dst = f"ais://{module_bucket}/resumed/train-%05d.tar"
    cmd = [sys.executable, str(REPO / "scripts" / "pack-bucket"), prefix, dst, "--endpoint", client.endpoint,
           "--shard-size", "1MiB", "--strip-prefix", "--workers", "2", "--parallel-shards", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(_shard_sizes(client, f"ais://{module_bucket}/resumed/")) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    planned = {s.url.replace("/full/", "/resumed/"): s.size for s in full_pack.plan.shards}
    present = _shard_sizes(client, f"ais://{module_bucket}/resumed/")
    assert 3 <= len(present) < len(planned)
    assert all(planned[u] == size for u, size in present.items())  # whole shards only
    assert f"ais://{module_bucket}/resumed/train.index.msgpack" not in {u for u, _ in list_objects(
        f"ais://{module_bucket}/resumed/", client)}

    report = pack(prefix, dst, client, shard_size=SHARD_SIZE, strip_prefix=True, resume=True)
    assert sorted(report.skipped) == sorted(present)
    assert len(report.written) + len(report.skipped) == len(planned)
    resumed = _read_shards(client, sorted(planned))
    full = _read_shards(client, [s.url for s in full_pack.plan.shards])
    assert [resumed[u.replace("/full/", "/resumed/")] for u in sorted(full)] == [full[u] for u in sorted(full)]
    assert len(load_index(report.index_url, client)) == 2400


def test_three_parts_together_equal_one_full_run(client, module_bucket, source, full_pack):
    prefix, _ = source
    dst = f"ais://{module_bucket}/parts/train-%05d.tar"
    reports = [pack(prefix, dst, client, shard_size=SHARD_SIZE, strip_prefix=True, part=(i, 3), workers=4)
               for i in range(3)]
    written = [u for r in reports for u in r.written]
    assert len(written) == len(set(written)) == len(full_pack.plan.shards)
    assert [r.index_url is not None for r in reports] == [False, False, True]
    parts = _read_shards(client, sorted(written))
    full = _read_shards(client, [s.url for s in full_pack.plan.shards])
    assert {u.replace("/parts/", "/full/"): d for u, d in parts.items()} == full
    index = load_index(reports[-1].index_url, client)
    assert [(r.url.replace("/parts/", "/full/"), r.offsets, r.member_names) for r in index.shards] == \
        [(r.url, r.offsets, r.member_names) for r in load_index(full_pack.index_url, client).shards]


# -- shards from other tools ------------------------------------------------------------------------------------------


def test_gnu_tar_shards_are_indexed_exactly_and_served_by_the_dataset(client, bucket):
    rnd = random.Random(9)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        (root / "sub.d").mkdir(parents=True)
        for i in range(40):
            stem = f"s{i:03d}" if i % 7 else f"{'very_long_member_name_' * 6}{i:03d}"
            (root / "sub.d" / f"{stem}.jpg").write_bytes(rnd.randbytes(rnd.choice([0, 100, 5000, 20000])))
            (root / "sub.d" / f"{stem}.cls").write_bytes(str(i).encode())
        files = sorted(p.name for p in (root / "sub.d").iterdir())
        variants = {
            "gnu-with-dirs.tar": ["tar", "cf", "-", "--sort=name", "-C", str(root.parent), "data"],
            "posix-longnames.tar": ["tar", "cf", "-", "--format=posix", "--sort=name", "-C", str(root / "sub.d"),
                                    *files],
            "plain-files.tar": ["tar", "cf", "-", "--format=ustar", "-C", str(root / "sub.d"),
                                *[f for f in files if len(f) < 100]],
        }
        blobs = {}
        for name, cmd in variants.items():
            blobs[name] = subprocess.run(cmd, check=True, capture_output=True).stdout
            write_bytes(f"ais://{bucket}/gnu/{name}", blobs[name], client)
    how: dict = {}
    index = build_index(f"ais://{bucket}/gnu/", client, method="auto", min_member_size=1,
                        on_shard=lambda url, method: how.__setitem__(url.rsplit("/", 1)[1], method))
    assert how["plain-files.tar"] == "listed" and how["gnu-with-dirs.tar"] == "streamed"
    for record in index.shards:
        data = blobs[record.url.rsplit("/", 1)[1]]
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            truth = {m.name: (m.offset_data, m.size) for m in tar if m.isreg()}
        assert {n: (o, s) for x in record.samples() for n, o, s in x.members} == truth
    ds = AISShardDataset(index, client)
    streamed = [s for r in index.shards for s in _tarfile_samples(r.url, blobs[r.url.rsplit("/", 1)[1]])]
    assert [ds[i] for i in range(len(ds))] == streamed
    rc = cli_main(["--endpoint", client.endpoint, "index", f"ais://{bucket}/gnu/", "--method", "stream"])
    assert rc == 0 and len(load_index(f"ais://{bucket}/gnu/shards.index.msgpack", client)) == len(ds)
