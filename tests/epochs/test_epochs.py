"""Epoch plans (ais_wds.epochs.plan), pure logic: every slot of an epoch is read exactly once across the
parts of any shape, `even=` gives every rank the same count, and resuming at the same or another shape
after any progress reads exactly the slots not consumed before."""

import pickle
import random

import pytest

from ais_wds.epochs.plan import (
    Layer,
    PartPlan,
    SharedEpoch,
    merge_job_state,
    part_runs,
    plan_from_state,
    rank_runs,
    slots,
    total,
    universe,
)
from ais_wds.errors import ConfigError


def _parts(runs, world, workers, even=None):
    return [[list(slots(part_runs(runs, world, workers, r, w, even))) for w in range(workers)] for r in range(world)]


@pytest.mark.parametrize("n", [0, 1, 7, 100, 101])
@pytest.mark.parametrize("world,workers", [(1, 1), (2, 3), (3, 2), (4, 1)])
def test_every_slot_lands_in_exactly_one_part_and_ranks_differ_by_at_most_one(n, world, workers):
    parts = _parts(universe(n, None, []), world, workers)
    assert sorted(s for rank in parts for part in rank for s in part) == list(range(n))
    per_rank = [sum(len(p) for p in rank) for rank in parts]
    assert max(per_rank) - min(per_rank) <= 1


@pytest.mark.parametrize("n,world", [(10, 3), (11, 4), (2, 3), (9, 3)])
def test_even_drop_and_repeat_give_every_rank_the_same_count(n, world):
    for even in ("drop", "repeat"):
        runs = universe(n, even, [])
        counts = [total(rank_runs(runs, world, r, even)) for r in range(world)]
        assert len(set(counts)) == 1
        got = [s for r in range(world) for s in slots(rank_runs(runs, world, r, even))]
        if even == "drop":
            assert counts[0] == n // world and len(set(got)) == len(got)
        else:
            assert counts[0] == -(-n // world) and set(got) == set(range(n))


def _consume(world, workers, n, layers, rng, even=None):
    """Random progress for every part of one layer; returns (layer, consumed slots with partial skips)."""
    runs = universe(n, even, layers)
    progress, consumed = [], []
    for r in range(world):
        for w in range(workers):
            mine = list(slots(part_runs(runs, world, workers, r, w, even)))
            done = rng.randint(0, len(mine))
            progress.append((done, 0))
            consumed += mine[:done]
    return Layer(world, workers, tuple(progress)), consumed


def _interrupted(n, rng, even=None, max_world=4):
    """1 to 3 interruptions at random shapes with random progress: (layers, consumed slots)."""
    layers, consumed = [], []
    for _ in range(rng.randint(1, 3)):
        layer, got = _consume(rng.randint(1, max_world), rng.randint(1, 3), n, layers, rng, even)
        layers.append(layer)
        consumed += got
    return layers, consumed


@pytest.mark.parametrize("seed", range(12))
def test_elastic_resume_over_several_interruptions_reads_every_slot_exactly_once(seed):
    rng = random.Random(seed)
    n = rng.randint(0, 300)
    layers, consumed = _interrupted(n, rng)
    world, workers = rng.randint(1, 4), rng.randint(1, 3)
    rest = [s for rank in _parts(universe(n, None, layers), world, workers) for part in rank for s in part]
    assert sorted(consumed + rest) == list(range(n))


def test_a_partly_read_slot_is_resumed_with_its_skip_by_the_next_shape():
    layer = Layer(2, 1, ((3, 5), (0, 2)))  # rank 0: 3 shards done, 5 samples into the 4th; rank 1: 2 into its 1st
    runs = universe(10, None, [layer])
    assert runs == [(3, 5, 5), (5, 10, 2)]  # slots 3..4 (5 samples of 3 read), 5..9 (2 of 5 read)


def test_part_state_resumes_the_same_part_and_refuses_another_shape():
    plan = PartPlan.make(4, 50, None, (), 2, 2, 1, 0, identity={"seed": 1})
    plan.progress = (5, 0)
    state = pickle.loads(pickle.dumps(plan.state()))
    again = plan_from_state(state, {"seed": 1}, "x", 2, 2, 1, 0)
    assert (again.epoch, again.progress, again.runs) == (4, (5, 0), plan.runs)
    with pytest.raises(ConfigError, match="job_state"):
        plan_from_state(state, {"seed": 1}, "x", 3, 2, 1, 0)
    with pytest.raises(ConfigError, match="seed"):
        plan_from_state(state, {"seed": 2}, "x", 2, 2, 1, 0)


def test_job_state_merges_every_part_and_names_missing_ones():
    states = []
    for r in range(2):
        for w in range(2):
            plan = PartPlan.make(0, 40, None, (), 2, 2, r, w, identity={"seed": 0})
            plan.progress = (3, 0)
            states.append(plan.state())
    job = merge_job_state(states)
    left = universe(40, None, [Layer.from_list(x) for x in job["layers"]])
    assert total(left) == 40 - 4 * 3
    with pytest.raises(ConfigError, match="missing"):
        merge_job_state(states[:3])


def test_job_state_of_a_finished_epoch_starts_the_next_one():
    states = []
    for r in range(2):
        plan = PartPlan.make(3, 10, None, (), 2, 1, r, 0)
        plan.progress = (plan.length, 0)
        states.append(plan.state())
    job = merge_job_state(states)
    assert (job["epoch"], job["layers"]) == (4, [])


def test_shared_epoch_advances_per_pass_in_the_owner_and_per_generation_in_workers():
    shared = SharedEpoch()
    assert [shared.begin(None) for _ in range(3)] == [0, 1, 2]
    shared.set(10)
    # the first worker of a DataLoader iteration (generation 111) takes the next epoch; its later passes follow
    assert shared.begin(111) == 10
    assert shared.claims(None, 111)
    assert shared.begin(111) == 11


def _resume_after(n, even, layers, world, workers):
    """Per rank, the slots the resumed run reads."""
    runs = universe(n, even, layers)
    return [[s for w in range(workers) for s in slots(part_runs(runs, world, workers, r, w, even))]
            for r in range(world)]


@pytest.mark.parametrize("seed", range(12))
def test_elastic_resume_with_even_drop_reads_nothing_twice_and_leaves_out_fewer_than_the_last_world_size(seed):
    rng = random.Random(seed)
    n = rng.randint(5, 300)
    layers, consumed = _interrupted(n, rng, "drop", max_world=5)
    world, workers = rng.randint(1, 5), rng.randint(1, 3)
    after = _resume_after(n, "drop", layers, world, workers)
    assert len({len(r) for r in after}) == 1  # every rank of the resumed run reads the same count
    read = consumed + [s for r in after for s in r]
    assert len(read) == len(set(read))
    assert n - len(read) < world  # (re-applying drop at every shape left out up to W'-1 more each time)


def test_drop_left_out_by_the_first_shape_is_read_after_an_elastic_resume():
    # 10 slots at world 3: slot 9 is left out; the job stops with each rank 1 slot in; it resumes at world 2
    layer = Layer(3, 1, ((1, 0), (1, 0), (1, 0)))
    assert universe(10, "drop", [layer]) == [(1, 3, 0), (4, 6, 0), (7, 10, 0)]
    after = _resume_after(10, "drop", [layer], 2, 1)
    assert after == [[1, 2, 4], [5, 7, 8]]  # 7 left, 6 read (3 per rank), slot 9 left out: 1 < 2


@pytest.mark.parametrize("seed", range(8))
def test_elastic_resume_with_even_repeat_reads_every_slot_and_repeats_fewer_than_the_last_world_size(seed):
    rng = random.Random(seed)
    n = rng.randint(5, 200)
    layer, consumed = _consume(rng.randint(2, 5), rng.randint(1, 3), n, [], rng, even="repeat")
    world, workers = rng.randint(1, 5), rng.randint(1, 3)
    after = _resume_after(n, "repeat", [layer], world, workers)
    assert len({len(r) for r in after}) == 1
    flat = [s for r in after for s in r]
    assert set(consumed) | set(flat) == set(range(n))
    assert len(flat) - len(set(flat)) < world


@pytest.mark.parametrize("n,workers,align", [(101, 2, 10), (110, 2, 10), (7, 3, 4), (50, 4, 8), (3, 4, 2)])
def test_worker_shares_in_whole_batches_give_a_rank_ceil_n_over_batch_batches_whatever_the_workers(n, workers, align):
    parts = [list(slots(part_runs(universe(n, None, []), 1, workers, 0, w, None, align))) for w in range(workers)]
    assert [s for p in parts for s in p] == list(range(n))
    assert sum(-(-len(p) // align) for p in parts) == -(-n // align)  # partial batches kept
    assert sum(len(p) // align for p in parts) == n // align  # partial batches dropped
    nonempty = [p for p in parts if p]
    assert all(len(p) % align == 0 for p in nonempty[:-1])


def test_aligned_shares_resume_elastically_through_a_job_state():
    states = []
    for r in range(2):
        for w in range(3):
            plan = PartPlan.make(0, 95, "drop", (), 2, 3, r, w, identity={"seed": 0}, align=8)
            plan.progress = (min(8, plan.length), 0)
            states.append(plan.state())
    job = merge_job_state(pickle.loads(pickle.dumps(states)))
    left = [s for w in range(2) for s in slots(plan_from_state(job, {"seed": 0}, "x", 1, 2, 0, w, 4).runs)]
    consumed = [s for st in states for s in list(slots(PartPlan.make(0, 95, "drop", (), 2, 3, st["rank"], st["worker"],
                                                                     align=8).runs))[:st["progress"][0]]]
    assert sorted(left + consumed) == list(range(95))


def test_job_state_of_a_finished_epoch_under_even_drop_starts_the_next_one():
    states = []
    for r in range(3):  # 10 slots at world 3: 3 each, slot 9 left out
        plan = PartPlan.make(2, 10, "drop", (), 3, 1, r, 0)
        plan.progress = (plan.length, 0)
        states.append(plan.state())
    job = merge_job_state(states)
    assert (job["epoch"], job["layers"]) == (3, [])
