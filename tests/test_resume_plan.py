"""Epoch plans (ais_wds._core.epochs), pure logic: every slot of an epoch is read exactly once across the
parts of any shape, `even=` gives every rank the same count, and resuming at the same or another shape
after any progress reads exactly the slots not consumed before."""

import pickle
import random

import pytest

from ais_wds._core.epochs import (
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


@pytest.mark.parametrize("seed", range(12))
def test_elastic_resume_over_several_interruptions_reads_every_slot_exactly_once(seed):
    rng = random.Random(seed)
    n = rng.randint(0, 300)
    layers, consumed = [], []
    for _ in range(rng.randint(1, 3)):
        layer, got = _consume(rng.randint(1, 4), rng.randint(1, 3), n, layers, rng)
        layers.append(layer)
        consumed += got
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
