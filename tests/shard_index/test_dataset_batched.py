"""AISShardDataset over GetBatch byte ranges: every sample's bytes through a DataLoader (2 workers, the
dataset's shuffled sampler, two epochs), the read-ahead serving a process's next batches, and the range-GET
mode, against the live cluster."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader

from ais_wds.shard_index.dataset import AISShardDataset
from tests.support.shards import COUNTS, digest, make_data, sample_digests


@pytest.fixture(scope="module")
def data(client, module_bucket):
    return make_data(client, module_bucket)


def _digests(samples):
    return {s["__key__"]: digest({k: v for k, v in s.items() if not k.startswith("__")}) for s in samples}


def _collate(batch):
    return batch


def test_a_shuffled_dataloader_with_two_workers_gets_every_sample_right_in_two_epochs(client, data):
    ds = AISShardDataset(data["index"], client)
    loader = DataLoader(ds, batch_size=8, sampler=ds.sampler(shuffle=True, seed=5), num_workers=2,
                        collate_fn=_collate)
    expected = sample_digests()
    for _ in range(2):
        seen = [s for batch in loader for s in batch]
        assert len(seen) == sum(COUNTS)
        assert _digests(seen) == expected


def test_the_next_batches_of_a_process_come_from_the_read_ahead(client, data):
    ds = AISShardDataset(data["index"], client)
    order = list(iter(ds.sampler(shuffle=True, seed=1)))
    got = [s for k in range(0, len(order), 10) for s in ds.__getitems__(order[k:k + 10])]
    assert [s["__key__"] for s in got] == [ds[i]["__key__"] for i in order]  # one range GET each
    assert _digests(got) == sample_digests()
    assert ds._ahead.hits >= len(order) // 10 - 2


def test_range_get_mode_getbatch_mode_and_batch_mode_return_the_same_samples(client, data):
    batch = AISShardDataset(data["index"], client)
    ranged = AISShardDataset(data["index"], client, fetch="range")
    getbatch = AISShardDataset(data["index"], client, fetch="getbatch")
    idx = [5, 90, 3, 44, 17, 60, 61, 62]
    a, b, c = batch.__getitems__(idx), ranged.__getitems__(idx), getbatch.__getitems__(idx)
    assert a == b == c and [s["__key__"] for s in a] == [batch[i]["__key__"] for i in idx]


def test_the_plain_fragment_walk_and_the_tar_reader_agree(client, data):
    import io

    from ais_wds.objects.reader import read_range
    from ais_wds.tar.reader import group_by_keys, iter_members
    from ais_wds.tar.sample import plain_sample

    ds = AISShardDataset(data["index"], client, verify=False)
    for i in range(0, len(ds), 7):
        url, offset, length = ds.locate(i)
        fragment = read_range(url, offset, offset + length, client)
        slow = list(group_by_keys(iter_members(io.BytesIO(fragment), bufsize=4096, url=url), url=url))
        assert plain_sample(fragment, url) == slow[0]
