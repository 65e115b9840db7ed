"""ais_wds.Mix over ais_wds.WebDataset sources that shuffle (``.shuffle(10)``, and ``open_shards=2``), against
the live cluster: a shuffle's part state holds the samples its buffer holds (``held``), the open shards
(``open``) and its generators (``draws``, ``picks``). A source epoch the mix starts fresh must start with
none of them (they belong to the epoch before: carried over, its samples would come twice), and an
elastic merge must count each part's owed samples once, in the epoch that part was reading.

Source ``a``: 3,000 samples in 10 indexed shards; ``b``: 1,000 in 5 (tests/support/mix_data.py). Weights
0.5 / 0.5 under ``stop=2400`` make the small source ``b`` run into its next source epoch. Samples are
compared by the digests of their bytes."""

import collections
import io

import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

import ais_wds
from tests.support.mix_data import all_ids, identify, make_mix_data
from tests.support.mix_states import mix_parts, read_with_epochs, walk

STOP = 2400


@pytest.fixture(scope="module")
def data(client, module_bucket):
    return make_mix_data(client, module_bucket)


def ids(batch):
    return [identify(s) for s in batch]


def _source(data, ep, name, seed, rank, world, open_shards):
    ds = ais_wds.WebDataset(data[name], client=ep, index=data[name + "_index"], seed=seed, rank=rank,
                            world_size=world)
    return ds.shuffle(10, open_shards=open_shards) if open_shards else ds.shuffle(10)


def _mix(data, ep, stop=STOP, rank=0, world=1, weights=(0.5, 0.5), open_shards=None):
    sources = [_source(data, ep, "a", 1, rank, world, open_shards), _source(data, ep, "b", 2, rank, world, open_shards)]
    return ais_wds.Mix(sources, list(weights), seed=7, stop=stop)


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def _source_epochs(items, source, share):
    """One worker's samples of ``source``, cut into its source epochs (``share`` samples each)."""
    seq = [x for x in items if x[0] == source]
    return [seq[k:k + share] for k in range(0, len(seq), share)]


@pytest.mark.parametrize("open_shards", [None, 2])
@pytest.mark.parametrize("workers, persistent", [(0, False), (2, True)])
def test_no_sample_twice_inside_a_source_epoch_across_source_and_mix_epochs(data, ais_endpoint, workers,
                                                                            persistent, open_shards):
    # two epochs of the mix in the same processes: the second one starts fresh source epochs while the
    # sources' last passes still hold buffered samples (held / open) of the first
    mix = _mix(data, ais_endpoint, open_shards=open_shards)
    loader = torch.utils.data.DataLoader(mix, batch_size=None, num_workers=workers, persistent_workers=persistent)
    parts = max(workers, 1)
    shares = {"a": 3000 // parts, "b": 1000 // parts}
    crossed = 0
    for _ in range(2):
        items = [identify(s) for s in loader]
        assert len(items) == STOP
        per_worker = [items[w::parts] for w in range(parts)]  # in-order DataLoader: items alternate by worker
        for source, share in shares.items():
            everything = all_ids(source)
            chunks = [_source_epochs(seq, source, share) for seq in per_worker]
            for k in range(max(len(c) for c in chunks)):
                got = [c[k] for c in chunks if len(c) > k]
                flat = [x for part in got for x in part]
                assert len(flat) == len(set(flat)), (source, k, collections.Counter(flat).most_common(3))
                assert set(flat) <= everything
                if len(got) == parts and all(len(p) == share for p in got):
                    assert set(flat) == everything  # a whole source epoch: every sample exactly once
                crossed += k > 0
    assert crossed >= 2  # b ran into its next source epoch in both epochs of the mix


@pytest.mark.parametrize("taken", [60, 215])  # 600 samples in (a and b in their first epoch), 2,150 (b crossed)
def test_same_shape_resume_mid_way_is_exact(data, ais_endpoint, taken):
    loader = StatefulDataLoader(_mix(data, ais_endpoint), batch_size=10, num_workers=2, collate_fn=ids)
    it = iter(loader)
    before = [x for _ in range(taken) for x in next(it)]
    state = _roundtrip(loader.state_dict())
    remainder = [x for b in it for x in b]
    resumed = StatefulDataLoader(_mix(data, ais_endpoint), batch_size=10, num_workers=2, collate_fn=ids)
    resumed.load_state_dict(state)
    assert [x for b in resumed for x in b] == remainder  # same samples (digests), same order
    assert len(before) + len(remainder) == STOP
    assert any(isinstance(v, dict) and v.get("held") for v in walk(state))  # it did hold buffered samples


def _read(loader, limit=None):
    """(sample id, epoch of its source) of each sample the loader yields; the loader's state after them."""
    return read_with_epochs(loader, lambda x: "ab".index(x[0]), limit)


def _stage(data, ep, stop, weights, open_shards, world, workers, takes=None, job=None):
    """One run of ``world`` simulated ranks (from ``job`` if given), each reading ``takes[rank]`` samples
    (all of its count without ``takes``): (sample, its source's epoch) read, and the loader states."""
    read, states = [], []
    for rank in range(world):
        mix = _mix(data, ep, stop, rank, world, weights, open_shards)
        if job is not None:
            mix.load_state_dict(job)
        loader = StatefulDataLoader(mix, batch_size=None, num_workers=workers, collate_fn=identify)
        got, state = _read(loader, takes[rank] if takes else None)
        read += got
        states.append(state)
    return read, states


def _check_epochs(read):
    """Inside each source epoch no sample twice; returns the samples of each (source, epoch)."""
    epochs = collections.defaultdict(list)
    for x, epoch in read:
        epochs[x[0], epoch].append(x)
    for (source, epoch), got in epochs.items():
        assert len(got) == len(set(got)), (source, epoch, collections.Counter(got).most_common(3))
        assert set(got) <= all_ids(source)
    return epochs


@pytest.mark.parametrize("open_shards", [None, 2])
def test_elastic_merge_with_parts_in_different_source_epochs_reads_each_sample_of_each_epoch_once(
        data, ais_endpoint, open_shards):
    # 3 ranks x 2 workers, 800 positions per rank, b weighted 0.7: a part's share of b's epoch is ~166
    # samples, reached after ~240 of its 400 positions. Rank 1 stops after 300 positions per worker (past
    # it: in b's second epoch), ranks 0 and 2 before it, every part with samples in its buffer. Each
    # sample is attributed to its source's epoch by the state of the worker that yielded it
    stop, weights = 800, (0.3, 0.7)
    read, states = _stage(data, ais_endpoint, stop, weights, open_shards, 3, 2, takes=(100, 600, 300))
    parts = mix_parts(states)
    assert len({int(p["sources"][1]["state"]["epoch"]) for p in parts}) == 2  # parts in two epochs of b
    assert all(p["sources"][1]["state"].get("held") for p in parts)
    job = _roundtrip(ais_wds.job_state(states))
    read += _stage(data, ais_endpoint, stop, weights, open_shards, 2, 3, job=job)[0]
    assert 3 * stop - 2 < len(read) <= 3 * stop
    epochs = _check_epochs(read)
    b_epochs = sorted(e for s, e in epochs if s == "b")
    assert len(b_epochs) >= 2 and set(epochs["b", b_epochs[0]]) == all_ids("b")  # b's first epoch: whole
    assert [e for s, e in epochs if s == "a"] == [0]  # a never left its first epoch


def test_a_second_elastic_merge_keeps_the_held_samples_of_a_queued_epoch_no_part_began(data, ais_endpoint):
    # as above, then on 2 x 3 every part reads a little of the rest of b's first epoch only (its second is
    # still queued, with the samples the first shape's buffers held in it), merged again, finished on 3 x 2:
    # b's first two epochs are read whole, each sample once
    stop, weights = 1200, (0.3, 0.7)
    read, states = _stage(data, ais_endpoint, stop, weights, None, 3, 2, takes=(100, 600, 300))
    first = _roundtrip(ais_wds.job_state(states))
    queued = first["sources"][1]["queue"]
    assert len(queued) == 2 and all(q.get("held") for q in queued)
    got, states = _stage(data, ais_endpoint, stop, weights, None, 2, 3, takes=(30, 30), job=first)
    read += got
    parts = mix_parts(states)
    assert {int(p["sources"][1]["state"]["epoch"]) for p in parts} == {int(queued[0]["epoch"])}
    assert all(len(p["sources"][1]["queue"]) == 1 for p in parts)  # the second epoch: begun by none
    read += _stage(data, ais_endpoint, stop, weights, None, 3, 2, job=_roundtrip(ais_wds.job_state(states)))[0]
    assert 3 * stop - 3 < len(read) <= 3 * stop
    epochs = _check_epochs(read)
    for epoch in (int(q["epoch"]) for q in queued):
        missing = all_ids("b") - set(epochs["b", epoch])
        assert not missing, (epoch, len(missing))  # whole: nothing lost (nothing twice: _check_epochs)
