"""The shuffles of ais_wds.WebDataset against the live cluster: ``.shuffle(n)`` resumes exactly (the same
samples in the same order as the uninterrupted run, bytes checked) at several interruption points, with
and without a shard index, with stages before and after the buffer; ``open_shards=k`` and
``shuffle="samples"`` too; elastic resume 3 ranks x 2 workers -> 2 x 3 in every mode reads every sample
exactly once; the global shuffle's epochs are permutations that differ; GetBatch's fallback; the
``shuffle=`` values refused. States go through torch.save / torch.load."""

from __future__ import annotations

import io
import logging
import pickle
from collections import Counter

import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

import ais_wds
from ais_wds.streaming import sample_reads
from tests.support.shards import COUNTS, digest, make_data, sample_digests, shard_keys


@pytest.fixture(scope="module")
def data(client, module_bucket):
    return make_data(client, module_bucket)


def key_digest(sample):
    return sample["__key__"], digest(sample)


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


MODES = {
    # name: (index?, how the pipeline is built from a WebDataset)
    "buffer_index": (True, lambda ds: ds.shuffle(20).map(key_digest)),
    "buffer_shards": (False, lambda ds: ds.shuffle(20).map(key_digest)),
    "map_then_buffer": (True, lambda ds: ds.map(key_digest).shuffle(20, initial=5)),
    "open_shards": (False, lambda ds: ds.shuffle(0, open_shards=3).map(key_digest)),
    "open_shards_buffer_index": (True, lambda ds: ds.shuffle(10, open_shards=2).map(key_digest)),
    "samples": ("samples", lambda ds: ds.map(key_digest)),
    "samples_buffer": ("samples", lambda ds: ds.shuffle(10).map(key_digest)),
}


def _dataset(mode, data, ep, rank=0, world=1):
    index, build = MODES[mode]
    kw = {"index": data["index"]} if index else {}
    if index == "samples":
        kw["shuffle"] = "samples"
    return build(ais_wds.WebDataset(data["shards"], client=ep, seed=3, rank=rank, world_size=world, **kw))


def _loader(ds, workers=2):
    return StatefulDataLoader(ds, num_workers=workers, batch_size=4, collate_fn=list)


def _take(loader, batches):
    got, it = [], iter(loader)
    for _ in range(batches):
        got += next(it)
    return got


def _check_bytes(pairs):
    expected = sample_digests()
    assert all(expected[k] == d for k, d in pairs)


@pytest.mark.parametrize("mode", list(MODES))
def test_resume_is_exact_same_samples_same_order_at_three_interruption_points(mode, data, ais_endpoint):
    full = [x for b in _loader(_dataset(mode, data, ais_endpoint)) for x in b]
    assert sorted(k for k, _ in full) == sorted(shard_keys())
    _check_bytes(full)
    batches = -(-len(full) // 4)
    for n in (1, batches // 2, batches - 2):
        loader = _loader(_dataset(mode, data, ais_endpoint))
        before = _take(loader, n)
        state = _roundtrip(loader.state_dict())
        resumed = _loader(_dataset(mode, data, ais_endpoint))
        resumed.load_state_dict(state)
        after = [x for b in resumed for x in b]
        assert before + after == full, (mode, n)


@pytest.mark.parametrize("mode", list(MODES))
def test_elastic_resume_3_ranks_x_2_workers_to_2_x_3_reads_every_sample_exactly_once(mode, data, ais_endpoint):
    before, states = [], []
    for rank, stop in zip(range(3), (1, 3, 2)):
        loader = _loader(_dataset(mode, data, ais_endpoint, rank, 3))
        before += _take(loader, stop)
        states.append(loader.state_dict())
    job = _roundtrip(ais_wds.job_state(states))
    after = []
    for rank in range(2):
        ds = _dataset(mode, data, ais_endpoint, rank, 2)
        ds.load_state_dict(job)
        after += [x for b in _loader(ds, workers=3) for x in b]
    read = before + after
    assert Counter(k for k, _ in read) == Counter(shard_keys())
    _check_bytes(read)


def test_buffer_state_holds_references_at_most_32_bytes_per_buffered_sample(data, ais_endpoint):
    ds = ais_wds.WebDataset(data["shards"], client=ais_endpoint, seed=3).shuffle(40, initial=40)
    it = iter(ds)
    for _ in range(10):
        next(it)
    state = ds.state_dict()
    assert len(state["held"]) == 39 and isinstance(state["draws"], int)  # full (40) less the one drawn
    assert len(pickle.dumps(state["held"])) / 39 <= 32
    assert all(isinstance(r, int) for r in state["held"])


def test_global_shuffle_epochs_are_permutations_of_every_sample_and_differ(data, ais_endpoint):
    ds = _dataset("samples", data, ais_endpoint)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=True)
    epochs = [[k for k, _ in loader] for _ in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == sorted(shard_keys())
    assert len({tuple(e) for e in epochs}) == 3
    # not shard by shard: consecutive samples come from different shards far more often than not
    shard_of = [int(k[1:3]) for k in epochs[0]]
    changes = sum(a != b for a, b in zip(shard_of, shard_of[1:]))
    assert changes > 0.6 * len(shard_of)


def test_global_shuffle_even_drop_gives_ranks_equal_counts_and_reads_nothing_twice(data, ais_endpoint):
    got = []
    for rank in range(3):
        ds = ais_wds.WebDataset(data["shards"], client=ais_endpoint, index=data["index"], shuffle="samples",
                                seed=3, rank=rank, world_size=3, even="drop").map(key_digest)
        got.append([x for x in ds])
        assert len(ds) == len(got[-1])
    assert len({len(g) for g in got}) == 1
    keys = [k for g in got for k, _ in g]
    assert len(keys) == len(set(keys)) == sum(COUNTS) - sum(COUNTS) % 3


def test_global_shuffle_falls_back_to_range_gets_where_getbatch_is_refused_and_says_so(data, ais_endpoint,
                                                                                      monkeypatch, caplog):
    ranges = pytest.importorskip("ais_wds.objects.ranges")
    refused = []

    def refuse(self, batch, parsed):
        refused.append(len(batch))
        raise ais_wds.errors.RequestError("GetBatch refused (test)", status=400)

    monkeypatch.setattr(ranges.RangeGetter, "_batch", refuse)
    monkeypatch.setattr(sample_reads, "TRANSPORT", "getbatch")
    caplog.set_level(logging.DEBUG, logger="ais_wds.objects.ranges")
    got = list(_dataset("samples", data, ais_endpoint))
    assert refused  # GetBatch was asked first
    assert sorted(k for k, _ in got) == sorted(shard_keys())
    _check_bytes(got)
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_global_shuffle_uses_getbatch_where_the_cluster_serves_it(data, ais_endpoint, monkeypatch):
    ranges = pytest.importorskip("ais_wds.objects.ranges")
    served = []
    real = ranges.RangeGetter._batch

    def spy(self, batch, parsed):
        out = real(self, batch, parsed)
        served.append(sum(x is not None for x in out))
        return out

    monkeypatch.setattr(ranges.RangeGetter, "_batch", spy)
    monkeypatch.setattr(sample_reads, "TRANSPORT", "getbatch")
    got = list(_dataset("samples", data, ais_endpoint))
    assert sum(served) >= len(shard_keys()) - 8  # (a request of one range goes by range GET)
    _check_bytes(got)


def test_global_shuffle_reads_by_pipelined_range_gets_to_the_targets_by_default(data, ais_endpoint, monkeypatch):
    from ais_wds.objects.pipelined import RangePipeline

    served = []
    real = RangePipeline.fetch

    def spy(self, batch):
        out, unavailable = real(self, batch)
        served.append(sum(x is not None for x in out))
        return out, unavailable

    monkeypatch.setattr(RangePipeline, "fetch", spy)
    got = list(_dataset("samples", data, ais_endpoint))
    assert sum(served) == len(shard_keys())
    _check_bytes(got)


def test_global_shuffle_with_targets_unreachable_and_getbatch_refused_reads_by_range_gets(data, ais_endpoint,
                                                                                       monkeypatch, caplog):
    """The whole chain: pipelined range GETs find no target (connections refused), GetBatch is refused,
    range GETs through the gateway serve every sample."""
    from ais_wds.objects import pipelined
    from ais_wds.objects.pipelined import RangePipeline
    from tests.support.ports import free_port

    ranges = pytest.importorskip("ais_wds.objects.ranges")
    closed = free_port()
    real_connect = RangePipeline._connect
    monkeypatch.setattr(RangePipeline, "_connect",
                        lambda self, target: real_connect(self, (target[0], "127.0.0.1", closed)))
    pipelined._POOL.get().close_all()  # no kept-alive connection from earlier tests: every one is new, refused
    refused = []

    def refuse(self, batch, parsed):
        refused.append(len(batch))
        raise ais_wds.errors.RequestError("GetBatch refused (test)", status=400)

    monkeypatch.setattr(ranges.RangeGetter, "_batch", refuse)
    caplog.set_level(logging.DEBUG, logger="ais_wds.objects")
    got = list(_dataset("samples", data, ais_endpoint))
    assert refused and sorted(k for k, _ in got) == sorted(shard_keys())
    _check_bytes(got)
    messages = [r.getMessage() for r in caplog.records]
    assert any("refused a connection" in m for m in messages) and any("GetBatch with byte ranges refused" in m
                                                                       for m in messages)


def test_without_a_batched_read_samples_come_by_concurrent_range_gets_said_at_debug(data, ais_endpoint,
                                                                                  monkeypatch, caplog):
    monkeypatch.setattr(sample_reads, "batched_reader", lambda: None)
    monkeypatch.setattr(sample_reads, "_said_fallback", [False])
    caplog.set_level(logging.DEBUG, logger="ais_wds.streaming.sample_reads")
    got = list(_dataset("samples", data, ais_endpoint))
    assert sorted(k for k, _ in got) == sorted(shard_keys())
    _check_bytes(got)
    assert any("no batched byte-range read" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("value, match", [
    ("samples", "needs a shard index"),
    ("sample", "'sample' is not one of"),
    (1, "shuffle=1 is not one of"),
    ("shards:4", "'shards:4' is not one of"),
])
def test_shuffle_values_of_the_wrong_kind_are_config_errors_naming_the_value(data, ais_endpoint, value, match):
    with pytest.raises(ais_wds.ConfigError, match=match) as info:
        ais_wds.WebDataset(data["shards"], client=ais_endpoint, shuffle=value)
    assert "'samples'" in str(info.value)


def test_shuffle_refuses_rng_and_a_second_buffer(data, ais_endpoint):
    ds = ais_wds.WebDataset(data["shards"], client=ais_endpoint)
    with pytest.raises(ais_wds.ConfigError, match="rng= / seed="):
        ds.shuffle(10, seed=1)
    with pytest.raises(ais_wds.ConfigError, match="twice"):
        ds.shuffle(10).shuffle(10)
    with pytest.raises(ais_wds.ConfigError, match="open_shards"):
        ds.shuffle(10, open_shards=0)


def test_a_buffer_state_loaded_into_a_pipeline_without_shuffle_is_refused(data, ais_endpoint):
    ds = ais_wds.WebDataset(data["shards"], client=ais_endpoint, seed=3).shuffle(20)
    it = iter(ds)
    next(it)
    state = ds.state_dict()
    with pytest.raises(ais_wds.ConfigError, match="no .shuffle"):
        ais_wds.WebDataset(data["shards"], client=ais_endpoint, seed=3).load_state_dict(state)
