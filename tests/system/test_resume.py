"""Exact and elastic resume through torchdata's StatefulDataLoader, for every front end: interrupted
inside the first shard, mid-epoch and before the last batch, at the same shape and at another one
(workers 2 -> 3, world 3 -> 2, ranks simulated in one process with rank= / world_size=). The union of
what was consumed before and after is exactly the epoch, nothing twice; the next epoch is complete and
in another order. States go through torch.save / torch.load."""

import io

import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

import ais_wds
from tests.support.shards import N_OBJECTS, make_data, shard_keys


@pytest.fixture(scope="module")
def data(client, module_bucket):
    return make_data(client, module_bucket)


def key_of(sample):
    return sample["__key__"]


def keys_of(batch):
    return [s["__key__"] for s in batch]


def names_of(batch):
    return [u.rsplit("/", 1)[1] for u, _ in batch]


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


FRONTS = ["wds_index", "wds_batched", "wds_shards", "iter", "map", "shard_ds", "lister", "loader"]


def as_is(batch):
    return batch


def lister_names(batch):
    return [u.rsplit("/", 1)[1] for u in batch]


def loader_names(batch):
    for _, stream in batch:
        stream.close()
    return names_of(batch)


def _make(front, data, ep, rank=0, world=1, workers=2, even=None):
    """(dataset, StatefulDataLoader kwargs, what an item of the loader is as a list of keys)."""
    kw = {"num_workers": workers, "batch_size": 4}
    if front == "wds_index":
        ds = ais_wds.WebDataset(data["shards"], client=ep, index=data["index"], seed=1, rank=rank,
                                world_size=world, even=even).map(key_of)
        return ds, {**kw, "collate_fn": list}, ds
    if front == "wds_batched":  # batches made in the workers: resume counts whole batches
        ds = ais_wds.WebDataset(data["shards"], client=ep, index=data["index"], seed=1, rank=rank,
                                world_size=world).map(key_of).batched(4, collation_fn=list)
        return ds, {"num_workers": workers, "batch_size": None, "collate_fn": as_is}, ds
    if front == "wds_shards":
        ds = ais_wds.WebDataset(data["shards"], client=ep, seed=1, rank=rank, world_size=world).map(key_of)
        return ds, {**kw, "collate_fn": list}, ds
    if front == "iter":
        ds = ais_wds.AISIterDataset(ep, data["objects"], shuffle=True, seed=2, rank=rank, world_size=world,
                                    even=even)
        return ds, {**kw, "collate_fn": names_of}, ds
    if front == "lister":
        ds = ais_wds.AISFileLister(ep, data["objects"], rank=rank, world_size=world)
        return ds, {**kw, "collate_fn": lister_names}, ds
    if front == "loader":
        ds = ais_wds.AISFileLoader(ep, ais_wds.AISFileLister(ep, data["objects"]), rank=rank, world_size=world,
                                   even=even)
        return ds, {**kw, "collate_fn": loader_names}, ds
    if front == "map":
        ds = ais_wds.AISDataset(ep, data["objects"])
        sampler = ds.sampler(shuffle=True, seed=3, rank=rank, world_size=world)
        return ds, {**kw, "collate_fn": names_of, "sampler": sampler}, sampler
    ds = ais_wds.AISShardDataset(data["index"], ep)
    sampler = ds.sampler(shuffle=True, seed=4, rank=rank, world_size=world)
    return ds, {**kw, "collate_fn": keys_of, "sampler": sampler}, sampler


def _everything(front):
    return set(shard_keys()) if front.startswith("wds") or front == "shard_ds" else \
        {f"obj-{i:03d}.bin" for i in range(N_OBJECTS)}


def _take(loader, batches):
    got, it = [], iter(loader)
    for _ in range(batches):
        got += next(it)
    return got


@pytest.mark.parametrize("front", FRONTS)
def test_same_shape_resume_after_one_half_and_all_but_one_batches_reads_exactly_the_rest(front, data,
                                                                                         ais_endpoint):
    everything = _everything(front)
    _, kw, _ = _make(front, data, ais_endpoint)
    total_batches = len(list(StatefulDataLoader(_make(front, data, ais_endpoint)[0], **kw)))
    for n in (1, total_batches // 2, total_batches - 1):  # inside the first shard, mid-epoch, the last batch
        ds, kw, _ = _make(front, data, ais_endpoint)
        loader = StatefulDataLoader(ds, **kw)
        before = _take(loader, n)
        state = _roundtrip(loader.state_dict())
        ds2, kw2, _ = _make(front, data, ais_endpoint)
        resumed = StatefulDataLoader(ds2, **kw2)
        resumed.load_state_dict(state)
        after = [k for b in resumed for k in b]
        assert len(before) + len(after) == len(everything), (n, len(before), len(after))
        assert set(before) | set(after) == everything
        following = [k for b in resumed for k in b]  # the next epoch: whole, another order (pipes: no shuffle)
        assert sorted(following) == sorted(everything)
        assert following != before + after or front in ("lister", "loader")


@pytest.mark.parametrize("front", FRONTS)
def test_elastic_resume_world_3_workers_2_to_world_2_workers_3_reads_exactly_the_rest(front, data, ais_endpoint):
    everything = _everything(front)
    before, states = [], []
    for rank, stop in zip(range(3), (1, 3, 2)):
        ds, kw, _ = _make(front, data, ais_endpoint, rank, 3, workers=2)
        loader = StatefulDataLoader(ds, **kw)
        before += _take(loader, stop)
        states.append(loader.state_dict())
    job = _roundtrip(ais_wds.job_state(states))  # (one process here; over torch.distributed it gathers)
    after = []
    for rank in range(2):
        ds, kw, stateful = _make(front, data, ais_endpoint, rank, 2, workers=3)
        stateful.load_state_dict(job)
        after += [k for b in StatefulDataLoader(ds, **kw) for k in b]
    assert len(before) + len(after) == len(everything)
    assert set(before) | set(after) == everything


@pytest.mark.parametrize("front", ["wds_index", "iter", "loader"])
def test_elastic_resume_with_even_drop_world_3_to_2_reads_nothing_twice_and_equal_counts_per_rank(front, data,
                                                                                               ais_endpoint):
    # 91 samples / 40 objects at world 3: one left out by "drop". Resumed at world 2, the rest plus that
    # one are split evenly; re-applying "drop" to the rest alone would leave out one more (2 in all).
    everything = _everything(front)
    before, states = [], []
    for rank, stop in zip(range(3), (1, 3, 2)):
        ds, kw, _ = _make(front, data, ais_endpoint, rank, 3, workers=2, even="drop")
        loader = StatefulDataLoader(ds, **kw)
        before += _take(loader, stop)
        states.append(loader.state_dict())
    job = _roundtrip(ais_wds.job_state(states))
    after = []
    for rank in range(2):
        ds, kw, stateful = _make(front, data, ais_endpoint, rank, 2, workers=3, even="drop")
        stateful.load_state_dict(job)
        after.append([k for b in StatefulDataLoader(ds, **kw) for k in b])
    assert len(after[0]) == len(after[1])
    read = before + after[0] + after[1]
    assert len(read) == len(set(read)) and set(read) <= everything
    assert len(everything) - len(read) < 2  # fewer than the last world size left out over the epoch


def test_mid_shard_resume_with_an_index_starts_with_a_range_get_at_the_next_sample(data, ais_endpoint, monkeypatch):
    import ais_wds.streaming.pipeline as pipeline

    ranges = []
    real = pipeline.open_object

    def spy(url, client, **kw):
        ranges.append((url.rsplit("/", 1)[1], kw["start"], kw["end"]))
        return real(url, client, **kw)

    monkeypatch.setattr(pipeline, "open_object", spy)
    ds = ais_wds.WebDataset(data["shards"], client=ais_endpoint, index=data["index"], shuffle=False).map(key_of)
    loader = StatefulDataLoader(ds, batch_size=3, collate_fn=list)
    assert _take(loader, 1) == ["s00-000", "s00-001", "s00-002"]
    state = loader.state_dict()
    ranges.clear()
    ds2 = ais_wds.WebDataset(data["shards"], client=ais_endpoint, index=data["index"], shuffle=False).map(key_of)
    resumed = StatefulDataLoader(ds2, batch_size=3, collate_fn=list)
    resumed.load_state_dict(state)
    assert next(iter(resumed)) == ["s00-003", "s00-004", "s00-005"]
    index = ais_wds.load_index(data["index"], ais_wds.Client(ais_endpoint))
    assert ranges[0] == ("train-000000.tar", index.shards[0].offsets[3], None)


@pytest.mark.parametrize("partial", [True, False])
@pytest.mark.parametrize("workers", [0, 2, 3])
def test_len_after_batched_is_the_number_of_batches_the_rank_yields(data, ais_endpoint, workers, partial):
    # rank 0 of 2 reads 45 of the 91 samples: 5 batches of 10 (4 without the partial one), whatever the
    # workers (each worker's share is whole batches; split 22/23 they would make 6 batches, or 4)
    ds = ais_wds.WebDataset(data["shards"], client=ais_endpoint, index=data["index"], seed=7, rank=0,
                            world_size=2).map(key_of).batched(10, collation_fn=list, partial=partial)
    batches = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers))
    assert len(ds) == len(batches) == (5 if partial else 4)
    assert sum(len(b) for b in batches) == (45 if partial else 40)


def test_even_without_an_index_is_refused_naming_ais_wds_index(data, ais_endpoint):
    with pytest.raises(ais_wds.ConfigError, match="ais-wds index"):
        ais_wds.WebDataset(data["shards"], client=ais_endpoint, even="drop")


@pytest.mark.parametrize("persistent", [False, True])
def test_epochs_advance_with_resampled_and_with_epoch(data, ais_endpoint, persistent):
    ds = ais_wds.WebDataset(data["shards"], client=ais_endpoint, resampled=True, seed=5).map(key_of).with_epoch(12)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=persistent)
    epochs = [list(loader) for _ in range(3)]
    assert all(len(e) == 24 for e in epochs)  # with_epoch counts per worker
    assert len({tuple(e) for e in epochs}) == 3  # all three differ (a != b != c never compares a with c)


@pytest.mark.parametrize("persistent", [False, True])
def test_epochs_advance_with_persistent_and_non_persistent_workers(data, ais_endpoint, persistent):
    ds = ais_wds.WebDataset(data["shards"], client=ais_endpoint, index=data["index"], seed=6).map(key_of)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=persistent)
    epochs = [list(loader) for _ in range(3)]
    assert all(sorted(e) == sorted(shard_keys()) for e in epochs)
    assert len({tuple(e) for e in epochs}) == 3  # all three orders differ, epoch 0 and 2 too


def test_pipes_over_a_lazy_source_run_under_a_stateful_loader_but_refuse_even_and_resume(data, ais_endpoint):
    urls = [f"{data['objects']}obj-{i:03d}.bin" for i in range(6)]
    with pytest.raises(ais_wds.ConfigError, match="lazy source"):
        ais_wds.AISFileLoader(ais_endpoint, iter(urls), even="drop")
    loader = StatefulDataLoader(ais_wds.AISFileLoader(ais_endpoint, iter(urls)), batch_size=2, collate_fn=loader_names)
    assert [n for b in loader for n in b] == [u.rsplit("/", 1)[1] for u in urls]
    with pytest.raises(ais_wds.ConfigError, match="cannot resume"):
        ais_wds.AISFileLoader(ais_endpoint, iter(urls)).load_state_dict(loader.state_dict())
