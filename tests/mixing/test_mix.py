"""The pure logic of ais_wds.Mix, without a cluster: the seeded position-keyed draws, largest-remainder
batch composition, stop rules, weight checks, weights shared with a spawned process, and the job state
that merges every part's state (sources in different epochs included)."""

import collections
import multiprocessing
import pickle

import pytest

from ais_wds.errors import ConfigError
from ais_wds.mixing import state as mix_state
from ais_wds.mixing.draws import BLOCK, Draws, check_weights, uniforms
from ais_wds.mixing.stop import UNBOUNDED, StopRule
from ais_wds.mixing.stratify import batch_sources, largest_remainder
from ais_wds.mixing.weights import SharedWeights

WEIGHTS = [0.5, 0.3, 0.2]


def test_draws_realise_the_weights_within_three_points_over_3000_positions():
    d = Draws(seed=7, epoch=0, weights=WEIGHTS)
    counts = collections.Counter(d.source(p) for p in range(3000))
    for i, w in enumerate(WEIGHTS):
        assert abs(counts[i] / 3000 - w) < 0.03, counts


def test_a_draw_depends_only_on_seed_epoch_and_position_not_on_order_or_reader():
    forward = Draws(1, 2, WEIGHTS)
    expected = [forward.source(p) for p in range(5000)]
    backward = Draws(1, 2, WEIGHTS)
    assert [backward.source(p) for p in reversed(range(5000))][::-1] == expected
    strided = [Draws(1, 2, WEIGHTS) for _ in range(3)]  # three "workers" reading every third position
    assert [strided[p % 3].source(p) for p in range(5000)] == expected
    assert [Draws(1, 3, WEIGHTS).source(p) for p in range(5000)] != expected  # another epoch: other draws
    assert [Draws(2, 2, WEIGHTS).source(p) for p in range(5000)] != expected  # another seed
    assert list(uniforms(1, 2, 3)) == list(uniforms(1, 2, 3)) and len(uniforms(1, 2, 3)) == BLOCK


def test_remap_changes_only_the_mapping_and_a_source_out_of_the_draw_is_never_drawn():
    d = Draws(0, 0, WEIGHTS)
    before = [d.source(p) for p in range(2000)]
    d.remap(WEIGHTS, [True, False, True])
    after = [d.source(p) for p in range(2000)]
    assert 1 not in after
    # positions that drew source 0 or 2 under the old mapping still read a source of the same region:
    # the uniforms did not change, only the intervals
    assert sum(a == b for a, b in zip(before, after)) > 1000
    d.remap([0.0, 0.0, 1.0])
    assert set(d.source(p) for p in range(3000)) == {2}
    with pytest.raises(ValueError):
        d.remap(WEIGHTS, [False, False, False])


@pytest.mark.parametrize("weights, size, expected", [
    ([0.5, 0.3, 0.2], 20, [10, 6, 4]),
    ([0.5, 0.3, 0.2], 8, [4, 2, 2]),
    ([1, 1, 1], 10, [4, 3, 3]),  # ties go to the lower source
    ([0.0, 1.0, 3.0], 7, [0, 2, 5]),
    ([0.5, 0.3, 0.2], 0, [0, 0, 0]),
])
def test_largest_remainder_rounds_weights_times_size(weights, size, expected):
    assert largest_remainder(weights, size) == expected
    assert sum(expected) == size


def test_batch_sources_groups_each_sources_places_in_source_order():
    assert batch_sources(WEIGHTS, 10) == [0] * 5 + [1] * 3 + [2] * 2


def test_stop_rules_parse_counts_and_modes_and_refuse_anything_else():
    assert StopRule.parse(1000).positions(3) == 3000 and StopRule.parse(1000).even == "drop"
    assert StopRule.parse("first_exhausted").positions(3) == UNBOUNDED
    assert StopRule.parse("all_exhausted").even is None
    for bad in (0, -5, True, "longest", 2.5):
        with pytest.raises(ConfigError, match="stop="):
            StopRule.parse(bad)


@pytest.mark.parametrize("weights, match", [([1, 2], "2 weights for 3"), ([1, -1, 1], ">= 0"),
                                            ([0, 0, 0], "positive"), ([1, float("nan"), 1], "finite"),
                                            (["a", 1, 1], "numbers")])
def test_bad_weights_are_a_config_error(weights, match):
    with pytest.raises(ConfigError, match=match):
        check_weights(weights, 3)


def test_weights_are_normalised():
    assert check_weights([5, 3, 2], 3) == WEIGHTS


def _read_weights_in_child(shared, queue):
    queue.put(shared.read())


def test_shared_weights_reach_a_spawned_process_and_torch_save_makes_a_private_copy():
    shared = SharedWeights(WEIGHTS)
    assert shared.version == 0
    assert shared.set([0.1, 0.1, 0.8]) == 1
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_weights_in_child, args=(shared, queue))
    child.start()
    assert queue.get(timeout=60) == (1, [0.1, 0.1, 0.8])
    child.join(60)
    copy = pickle.loads(pickle.dumps(shared))  # not a worker start: a private copy
    shared.set(WEIGHTS)
    assert copy.read() == (1, [0.1, 0.1, 0.8]) and shared.read() == (2, WEIGHTS)
    shared.seed_if_untouched([1.0, 0.0, 0.0])  # set() was called: unchanged
    assert shared.read()[1] == WEIGHTS


# -- the job state of a mix: synthetic part states of a 2-rank x 1-worker job ----------------------
def _source_part(rank, epoch, progress, n=10):
    return {"kind": "ais_wds.part", "version": 2, "dataset": "AISIterDataset", "num_objects": n, "shuffle": False,
            "seed": 0, "epoch": epoch, "n": n, "even": None, "layers": [], "world_size": 2, "num_workers": 1,
            "align": 1, "rank": rank, "worker": 0, "progress": [progress, 0]}


def _mix_part(rank, consumed, source_epoch, source_progress):
    identity = {"dataset": "ais_wds.Mix", "num_sources": 1, "seed": 0, "stop": 8, "batch_size": 0, "stratified": False}
    positions = {"kind": "ais_wds.part", "version": 2, **identity, "epoch": 0, "n": 16, "even": "drop",
                 "layers": [], "world_size": 2, "num_workers": 1, "align": 1, "rank": rank, "worker": 0,
                 "progress": [consumed, 0]}
    return {**identity, "kind": mix_state.PART_KIND, "version": mix_state.VERSION, "positions": positions,
            "sources": [{"state": _source_part(rank, source_epoch, source_progress), "queue": []}],
            "weights": [1.0], "latest": [1.0], "changes": [], "exhausted": []}


def test_job_state_keeps_the_rest_of_every_source_epoch_some_part_was_reading():
    from ais_wds.epochs.plan import Layer, universe

    # rank 0 read its 5 objects of source epoch 0 and 2 of epoch 1; rank 1 read 3 of its 5 of epoch 0
    job = mix_state.merge([_mix_part(0, 7, 1, 2), _mix_part(1, 3, 0, 3)])
    assert job["kind"] == mix_state.JOB_MIX_KIND
    queue = job["sources"][0]["queue"]
    assert [q["epoch"] for q in queue] == [0, 1] and job["sources"][0]["epoch"] == 0
    left = [universe(q["n"], q["even"], [Layer.from_list(x) for x in q["layers"]]) for q in queue]
    assert left[0] == [(8, 10, 0)]  # epoch 0: rank 0's share done, rank 1's last two
    assert left[1] == [(2, 10, 0)]  # epoch 1: all but rank 0's first two
    assert universe(16, "drop", [Layer.from_list(x) for x in job["positions"]["layers"]]) == [(7, 8, 0), (11, 16, 0)]


def test_job_state_after_the_whole_mix_epoch_starts_the_next_one_fresh():
    job = mix_state.merge([_mix_part(0, 8, 1, 3), _mix_part(1, 8, 0, 5)])
    assert job["positions"]["epoch"] == 1 and job["sources"] == [{"queue": []}]


def test_a_state_of_another_mix_is_refused():
    part = _mix_part(0, 1, 0, 1)
    with pytest.raises(ConfigError, match="seed"):
        mix_state.check(part, {"seed": 1})
    with pytest.raises(ConfigError, match="not an ais_wds Mix state"):
        mix_state.check({"kind": "ais_wds.part"}, {})
