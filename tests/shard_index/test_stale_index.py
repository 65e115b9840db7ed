"""A shard that changed after it was indexed is refused with a typed error naming it, never read with the old
offsets; older index files (no checksum, no version) still load and are checked by size; AIS's own shard
index (``ais-wds index --ais``) serves member reads and notices a changed shard too. Live cluster."""

from __future__ import annotations

import logging
import random

import msgpack
import pytest

from ais_wds import ShardIndexError, read_bytes, read_member, write_bytes
from ais_wds.cli import main as cli_main
from ais_wds.shard_index.dataset import AISShardDataset
from ais_wds.shard_index.index import build_index, load_index, save_index, verify_index
from tests.support.tars import tar_bytes


def _members(shard, seed):
    rng = random.Random(seed)
    return [(f"s{shard}-{j:03d}.{ext}", rng.randbytes(700 + 10 * j)) for j in range(12) for ext in ("bin", "cls")]


@pytest.fixture
def shards(client, bucket):
    urls = []
    for s in range(3):
        url = f"ais://{bucket}/shards/train-{s:03d}.tar"
        write_bytes(url, tar_bytes(_members(s, s)), client)
        urls.append(url)
    return bucket, urls


def test_the_index_records_each_shards_size_checksum_and_version(client, shards, tmp_path):
    bucket, urls = shards
    index = build_index(f"ais://{bucket}/shards/", client)
    props = {e.name: e for e in client.bucket(f"ais://{bucket}").list_objects_iter(
        prefix="shards/", props="name,size,checksum,version")}
    for record in index.shards:
        e = props[record.url.split("/", 3)[3]]
        assert (record.size, record.checksum, record.version) == (e.size, e.checksum, e.version)
        assert record.checksum and record.version
    save_index(index, str(tmp_path / "i.msgpack"), client)
    assert load_index(str(tmp_path / "i.msgpack")).shards == index.shards
    assert verify_index(index, client) == 0


def test_a_shard_rewritten_with_the_same_size_is_refused_naming_it(client, shards, tmp_path):
    bucket, urls = shards
    path = str(tmp_path / "i.msgpack")
    save_index(build_index(f"ais://{bucket}/shards/", client), path, client)
    members = _members(1, 1)
    members[3] = (members[3][0], bytes(len(members[3][1])))  # same names, same sizes, other bytes
    write_bytes(urls[1], tar_bytes(members), client)
    assert len(read_bytes(urls[1], client)) == load_index(path).shards[1].size
    with pytest.raises(ShardIndexError, match="changed after it was indexed: its checksum") as e:
        AISShardDataset(path, client)
    assert e.value.url == urls[1] and "rebuild" in str(e.value)


def test_a_shard_that_grew_or_vanished_is_refused_naming_it(client, shards, tmp_path):
    bucket, urls = shards
    path = str(tmp_path / "i.msgpack")
    save_index(build_index(f"ais://{bucket}/shards/", client), path, client)
    write_bytes(urls[0], tar_bytes(_members(0, 0) + [("extra.bin", b"x" * 5000)]), client)
    with pytest.raises(ShardIndexError, match="its size is .* the index says") as e:
        AISShardDataset(path, client)
    assert e.value.url == urls[0]
    client.object(urls[2]).delete()
    with pytest.raises(ShardIndexError, match=r"2 of 3 shards changed"):
        verify_index(load_index(path), client)


def test_an_index_file_without_checksums_still_loads_and_is_checked_by_size(client, shards, tmp_path, caplog):
    bucket, urls = shards
    doc = msgpack.unpackb(build_index(f"ais://{bucket}/shards/", client).to_bytes(), raw=False)
    for shard in doc["shards"]:
        del shard["checksum"], shard["version"]
    old = tmp_path / "old.msgpack"
    old.write_bytes(msgpack.packb(doc, use_bin_type=True))
    with caplog.at_level(logging.INFO, logger="ais_wds.shard_index.index"):
        ds = AISShardDataset(str(old), client)
    assert any("only their sizes were checked" in r.getMessage() for r in caplog.records)
    sample = ds[13]
    assert (sample["__key__"], sample["bin"]) == ("s1-001", _members(1, 1)[2][1])
    write_bytes(urls[2], tar_bytes(_members(2, 2) + [("big.bin", b"y" * 30_000)]), client)  # longer: refused by size
    with pytest.raises(ShardIndexError, match="its size is"):
        AISShardDataset(str(old), client)


def test_ais_own_index_serves_member_reads_and_notices_a_changed_shard(client, shards, capsys):
    bucket, urls = shards
    assert cli_main(["index", "--ais", f"ais://{bucket}/shards/"]) == 0
    assert "AIS indexed the shards" in capsys.readouterr().out
    members = dict(_members(2, 2))
    assert read_member(urls[2], "s2-005.cls", client) == members["s2-005.cls"]
    changed = _members(2, 7)  # same names, other sizes and bytes: the old offsets would read wrong bytes
    write_bytes(urls[2], tar_bytes(changed), client)
    assert read_member(urls[2], "s2-005.cls", client) == dict(changed)["s2-005.cls"]
