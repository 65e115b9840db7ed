"""ais_wds.Mix against the live cluster: three sources of very different sizes (3,000 and 1,000 samples
in indexed tar shards read by ais_wds.WebDataset, 600 objects read by AISIterDataset), weights
0.5 / 0.3 / 0.2, DataLoader workers. Samples are compared by the digests of their bytes, in order where
the issue asks for the same order: proportions, exactly once per source epoch, exact resume after 40%
(StatefulDataLoader, torch.save), a weight change then a checkpoint then a resume, stratified batches,
equal counts per rank, elastic resume 3 ranks x 2 workers -> 2 x 3 (simulated ranks, and real gloo
process groups), the exhaustion rules, and an empty source refused by name."""

import collections
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

import ais_wds
from tests.support.mix_data import all_ids, identify, make_mix_data, tar_bytes
from tests.support.mix_states import mix_parts
from tests.support.ports import free_port

WEIGHTS = [0.5, 0.3, 0.2]
RANK_SCRIPT = Path(__file__).resolve().parents[1] / "support" / "mix_rank.py"


@pytest.fixture(scope="module")
def data(client, module_bucket):
    return make_mix_data(client, module_bucket)


def ids(batch):
    return [identify(s) for s in batch]


def _mix(data, ep, stop, rank=0, world=1, weights=WEIGHTS, **kw):
    sources = [ais_wds.WebDataset(data["a"], client=ep, index=data["a_index"], seed=1, rank=rank, world_size=world),
               ais_wds.WebDataset(data["b"], client=ep, index=data["b_index"], seed=2, rank=rank, world_size=world),
               ais_wds.AISIterDataset(ep, data["c"], shuffle=True, seed=3, rank=rank, world_size=world)]
    return ais_wds.Mix(sources, weights, seed=7, stop=stop, **kw)


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def _take(it, batches):
    return [x for _ in range(batches) for x in next(it)]


def _by_source(read):
    out = collections.defaultdict(list)
    for x in read:
        out[x[0]].append(tuple(x))
    return out


def test_realised_proportions_over_3000_draws_are_within_3_points_and_do_not_depend_on_the_workers(data,
                                                                                                  ais_endpoint):
    mix = _mix(data, ais_endpoint, stop=3000)
    assert len(mix) == 3000
    read = [x for b in torch.utils.data.DataLoader(mix, batch_size=10, num_workers=2, collate_fn=ids) for x in b]
    counts = collections.Counter(x[0] for x in read)
    assert len(read) == 3000
    for source, w in zip("abc", WEIGHTS):
        assert abs(counts[source] / 3000 - w) < 0.03, counts
    alone = [identify(s) for s in _mix(data, ais_endpoint, stop=3000)]  # no workers: the same draws
    assert collections.Counter(x[0] for x in alone) == counts


def test_no_source_sample_twice_inside_one_of_its_epochs_and_a_source_that_runs_out_starts_a_new_order(
        data, ais_endpoint):
    # 4,000 samples over 2 workers: each worker draws ~400 of source c, whose share is 300 per epoch
    loader = torch.utils.data.DataLoader(_mix(data, ais_endpoint, stop=4000), batch_size=None, num_workers=2)
    items = [identify(s) for s in loader]
    per_worker = [_by_source(items[w::2]) for w in range(2)]  # in-order DataLoader: items alternate by worker
    shares = {"a": 1500, "b": 500, "c": 300}
    crossed = 0
    for source, share in shares.items():
        everything = all_ids(source)
        chunks = [[seq[source][k:k + share] for k in range(0, len(seq[source]), share)] for seq in per_worker]
        for k in range(max(len(c) for c in chunks)):
            parts = [c[k] for c in chunks if len(c) > k]
            flat = [x for part in parts for x in part]
            assert len(flat) == len(set(flat)) and set(flat) <= everything, (source, k)
            if len(parts) == 2 and all(len(p) == share for p in parts):
                assert set(flat) == everything  # a whole source epoch: every sample exactly once
            if k:
                crossed += 1
    assert crossed >= 1  # source c started its next epoch in some worker


def test_resume_after_40_percent_yields_exactly_the_uninterrupted_remainder_in_order(data, ais_endpoint):
    loader = StatefulDataLoader(_mix(data, ais_endpoint, stop=1500), batch_size=10, num_workers=2, collate_fn=ids)
    it = iter(loader)
    before = _take(it, 60)  # 600 of 1,500
    state = _roundtrip(loader.state_dict())
    remainder = [x for b in it for x in b]
    resumed = StatefulDataLoader(_mix(data, ais_endpoint, stop=1500), batch_size=10, num_workers=2, collate_fn=ids)
    resumed.load_state_dict(state)
    after = [x for b in resumed for x in b]
    assert len(before) + len(remainder) == 1500
    assert after == remainder  # same samples (digests of their bytes), same order
    assert len(json.dumps(state, default=str)) < 20000  # small plain data


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_weight_change_reaches_persistent_workers_and_a_resume_after_it_is_exact(data, ais_endpoint, context):
    mix = _mix(data, ais_endpoint, stop=1500)
    loader = StatefulDataLoader(mix, batch_size=10, num_workers=2, collate_fn=ids, persistent_workers=True,
                                multiprocessing_context=context)
    it = iter(loader)
    before = _take(it, 20)
    mix.set_weights([0.1, 0.1, 0.8])
    changed = [next(it) for _ in range(30)]
    state = _roundtrip(loader.state_dict())
    remainder = [x for b in it for x in b]
    shares = [sum(x[0] == "c" for x in b) / len(b) for b in changed]
    first = next(i for i, s in enumerate(shares) if s >= 0.5)
    assert first <= 10, shares  # within a few batches (what the workers had prefetched, then 16 samples)
    assert sum(x[0] == "c" for x in remainder) / len(remainder) > 0.7
    parts = mix_parts(state)
    assert len(parts) == 2 and all(p["weights"] == [0.1, 0.1, 0.8] and p["changes"] for p in parts)
    fresh = _mix(data, ais_endpoint, stop=1500)
    resumed = StatefulDataLoader(fresh, batch_size=10, num_workers=2, collate_fn=ids)
    resumed.load_state_dict(state)
    assert [x for b in resumed for x in b] == remainder
    assert len(before) == 200


@pytest.mark.parametrize("taken", [20, 32, 47])
def test_a_change_the_state_saw_but_had_not_applied_takes_effect_where_the_uninterrupted_run_applied_it(
        data, ais_endpoint, taken):
    # in one process: set_weights between two looks at the weights (every 16 positions), then the state
    mix = _mix(data, ais_endpoint, stop=300)
    it = iter(mix)
    [next(it) for _ in range(taken)]
    mix.set_weights([0.1, 0.1, 0.8])
    state = _roundtrip(mix.state_dict())
    assert state["latest"] == [0.1, 0.1, 0.8] and state["weights"] == WEIGHTS
    remainder = [identify(s) for s in it]
    resumed = _mix(data, ais_endpoint, stop=300)
    resumed.load_state_dict(state)
    assert [identify(s) for s in resumed] == remainder
    assert resumed.state_dict()["changes"] == mix.state_dict()["changes"] == [[0, -(-taken // 16) * 16,
                                                                             [0.1, 0.1, 0.8]]]


def test_stratified_batches_hold_exactly_10_6_4_of_20_and_resume_exactly(data, ais_endpoint):
    def make():
        return _mix(data, ais_endpoint, stop=1000, batch_size=20, stratified=True)

    mix = make()
    assert len(mix) == 50
    loader = StatefulDataLoader(mix, batch_size=None, num_workers=2, collate_fn=ids)
    it = iter(loader)
    before = [next(it) for _ in range(20)]
    state = _roundtrip(loader.state_dict())
    remainder = list(it)
    for batch in before + remainder:
        assert collections.Counter(x[0] for x in batch) == {"a": 10, "b": 6, "c": 4}
    assert len(before) + len(remainder) == 50
    resumed = StatefulDataLoader(make(), batch_size=None, num_workers=2, collate_fn=ids)
    resumed.load_state_dict(state)
    assert list(resumed) == remainder


@pytest.mark.parametrize("stop", ["all_exhausted", "first_exhausted"])
def test_stratified_batches_under_the_exhaustion_rules(data, ais_endpoint, stop):
    batches = [ids(b) for b in _mix(data, ais_endpoint, stop=stop, batch_size=20, stratified=True)]
    read = [x for b in batches for x in b]
    assert len(read) == len(set(read))
    exact = [b for b in batches if collections.Counter(x[0] for x in b) == {"a": 10, "b": 6, "c": 4}]
    if stop == "first_exhausted":  # every batch exact, up to the one a source could not fill (not yielded)
        assert exact == batches and len(batches) == 150  # c's 600 samples: 150 batches of 4
    else:  # every sample once; once c, then b, ran out, the rest of each batch went to the others
        assert set(read) == all_ids("a") | all_ids("b") | all_ids("c")
        assert exact == batches[:150] and all(len(b) == 20 for b in batches[:-1])


def test_every_rank_yields_exactly_the_count_and_no_sample_twice_across_ranks(data, ais_endpoint):
    reads = []
    for rank in range(3):
        mix = _mix(data, ais_endpoint, stop=700, rank=rank, world=3)
        reads.append([x for b in torch.utils.data.DataLoader(mix, batch_size=8, num_workers=2, collate_fn=ids)
                      for x in b])
        assert len(mix) == 700
    assert [len(r) for r in reads] == [700, 700, 700]
    flat = [x for r in reads for x in r]
    assert len(flat) == len(set(flat))


@pytest.mark.parametrize("workers, persistent", [(0, False), (2, False), (2, True)])
def test_epochs_of_the_mix_advance_by_themselves_with_new_draws_and_new_source_orders(data, ais_endpoint, workers,
                                                                                    persistent):
    mix = _mix(data, ais_endpoint, stop=1000)
    loader = torch.utils.data.DataLoader(mix, batch_size=10, num_workers=workers, collate_fn=ids,
                                         persistent_workers=persistent)
    epochs = [[x for b in loader for x in b] for _ in range(2)]
    assert [len(e) for e in epochs] == [1000, 1000]
    assert all(len(set(e)) == 1000 for e in epochs)  # nothing twice inside an epoch
    assert epochs[0] != epochs[1]
    assert [x[0] for x in epochs[0]] != [x[0] for x in epochs[1]]  # other draws


def _elastic(data, ep, stop, stops=(5, 12, 9)):
    before, states = [], []
    for rank, n in zip(range(3), stops):
        loader = StatefulDataLoader(_mix(data, ep, stop=stop, rank=rank, world=3), batch_size=10, num_workers=2,
                                    collate_fn=ids)
        it = iter(loader)
        before += _take(it, n)
        states.append(loader.state_dict())
        del it
    job = _roundtrip(ais_wds.job_state(states))  # one process here; over torch.distributed it gathers
    after = []
    for rank in range(2):
        mix = _mix(data, ep, stop=stop, rank=rank, world=2)
        mix.load_state_dict(job)
        after.append([x for b in StatefulDataLoader(mix, batch_size=10, num_workers=3, collate_fn=ids) for x in b])
    return before, after


def test_elastic_resume_3x2_to_2x3_reads_each_source_epoch_exactly_once_and_the_rest_of_the_count(
        data, ais_endpoint):
    before, after = _elastic(data, ais_endpoint, stop=600)
    assert len(after[0]) == len(after[1])  # equal counts per rank after the resume
    read = before + after[0] + after[1]
    assert len(read) == len(set(read))
    assert 1800 - 2 < len(read) <= 1800  # the epoch's count, less fewer than the new world size


def test_elastic_resume_with_all_exhausted_reads_every_sample_of_every_source_once(data, ais_endpoint):
    before, after = _elastic(data, ais_endpoint, stop="all_exhausted")
    read = before + after[0] + after[1]
    assert len(read) == len(set(read))
    assert set(read) == all_ids("a") | all_ids("b") | all_ids("c")


def test_exhaustion_rules_in_one_process(data, ais_endpoint):
    everything = all_ids("a") | all_ids("b") | all_ids("c")
    read = [identify(s) for s in _mix(data, ais_endpoint, stop="all_exhausted")]
    assert len(read) == len(everything) and set(read) == everything
    first = [identify(s) for s in _mix(data, ais_endpoint, stop="first_exhausted")]
    assert len(first) == len(set(first)) and len(first) < len(everything)
    counts = collections.Counter(x[0] for x in first)
    assert counts["c"] == 600 or counts["b"] == 1000 or counts["a"] == 3000  # one source was read to its end
    with pytest.raises(TypeError, match="len"):
        len(_mix(data, ais_endpoint, stop="first_exhausted"))


def test_a_source_that_fails_follows_its_own_error_policy(data, ais_endpoint, client, bucket):
    # a copy of source c whose objects 0-9 are deleted after listing: skipped under on_error="skip", the
    # mix reads on (every other object once); under "raise" the mix raises the source's own error
    for i in range(40):
        ais_wds.write_bytes(f"ais://{bucket}/c/obj-{i:04d}.bin", f"object {i}".encode(), client)

    def make(on_error):
        objects = ais_wds.AISIterDataset(ais_endpoint, f"ais://{bucket}/c/", on_error=on_error, fetch="get")
        shards = ais_wds.WebDataset(data["b"], client=ais_endpoint, index=data["b_index"], seed=2)
        return ais_wds.Mix([shards, objects], [0.5, 0.5], stop="all_exhausted")

    skipping, raising = make("skip"), make("raise")
    for i in range(10):
        client.sdk.bucket(bucket).object(f"c/obj-{i:04d}.bin").delete()
    read = [identify(s) for s in skipping]
    names = sorted(x[1] for x in read if x[0] == "c")
    assert names == [f"obj-{i:04d}.bin" for i in range(10, 40)] and len(read) == 1000 + 30
    with pytest.raises(ais_wds.AISWdsError, match="obj-00"):
        list(raising)


def test_an_empty_source_is_a_config_error_naming_it(data, ais_endpoint, client, bucket):
    from ais_wds.shard_index.index import build_index, save_index

    ais_wds.write_bytes(f"ais://{bucket}/empty/e-000000.tar", tar_bytes([]), client)
    index = f"ais://{bucket}/empty.index.msgpack"
    save_index(build_index(f"ais://{bucket}/empty/", client), index, client)
    empty = ais_wds.WebDataset(f"ais://{bucket}/empty/", client=ais_endpoint, index=index)
    full = ais_wds.WebDataset(data["b"], client=ais_endpoint, index=data["b_index"])
    with pytest.raises(ais_wds.ConfigError, match=r"source 1 .*empty/e-000000.tar.* is empty"):
        ais_wds.Mix([full, empty], [0.5, 0.5])


def _ranks(tmp_path, cfg):
    cfg = {**cfg, "port": free_port(), "dir": str(tmp_path)}
    path = tmp_path / f"{cfg['phase']}.json"
    path.write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(RANK_SCRIPT.parents[2]), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, str(RANK_SCRIPT), str(path)], env=env, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((tmp_path / f"{cfg['phase']}-rank{r}.json").read_text()) for r in range(cfg["world"])]


def test_elastic_resume_over_real_process_groups_3x2_to_2x3_after_a_weight_change(tmp_path, data, ais_endpoint):
    base = {"endpoint": ais_endpoint, "data": data, "weights": WEIGHTS, "stop": 600}
    new = [0.4, 0.4, 0.2]
    first = _ranks(tmp_path, {**base, "phase": "before", "world": 3, "workers": 2, "batches": [9, 12, 10],
                              "change_at": 1, "new_weights": new})
    second = _ranks(tmp_path, {**base, "phase": "after", "world": 2, "workers": 3})
    assert [o["len"] for o in first] == [600] * 3
    assert all(o["weights"] == pytest.approx(new) for o in second)  # the change is part of the job state
    after = [[tuple(x) for x in o["read"]] for o in second]
    assert len(after[0]) == len(after[1])
    read = [tuple(x) for o in first for x in o["read"]] + after[0] + after[1]
    assert len(read) == len(set(read))  # per source, nothing read twice in its epoch
    assert 1800 - 2 < len(read) <= 1800
    counts = collections.Counter(x[0] for x in after[0] + after[1])
    total = sum(counts.values())
    for source, w in zip("abc", new):  # the realised proportions after the resume follow the new weights
        assert abs(counts[source] / total - w) < 0.05, counts
