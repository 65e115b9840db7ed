"""The shuffle buffer (pure logic): webdataset's algorithm, a state of references, exact continuation."""

import pickle
import random

import pytest

from ais_wds.errors import ConfigError
from ais_wds.shuffle.buffer import ShuffleBuffer, shares
from ais_wds.shuffle.refs import pack_ref, unpack_ref
from ais_wds.shuffle.rng import SplitMix64


def _source(n, start=0):
    return iter([(f"item-{i}", pack_ref(i // 10, i % 10)) for i in range(start, n)])


def test_every_item_comes_out_once_and_not_in_input_order():
    out = list(ShuffleBuffer(50, SplitMix64(1)).shuffle(_source(1000)))
    assert sorted(out) == sorted(f"item-{i}" for i in range(1000))
    assert out != [f"item-{i}" for i in range(1000)]


def test_outputs_start_at_initial_and_the_buffer_fills_two_per_output_like_webdataset():
    buffer = ShuffleBuffer(20, SplitMix64(1), initial=6)
    it = buffer.shuffle(_source(100))
    next(it)
    assert len(buffer) == 5  # 3 steps of 2 in, then one out
    for _ in range(40):
        next(it)
    assert len(buffer) == 19  # full, less the one drawn


@pytest.mark.parametrize("stop", [1, 7, 300, 990])
def test_a_buffer_refilled_from_its_state_continues_exactly_like_the_uninterrupted_one(stop):
    full = list(ShuffleBuffer(64, SplitMix64(7)).shuffle(_source(1000)))
    buffer = ShuffleBuffer(64, SplitMix64(7))
    source = _source(1000)
    pulled = [0]

    def counted():
        for pair in source:
            pulled[0] += 1
            yield pair

    it = buffer.shuffle(counted())
    before = [next(it) for _ in range(stop)]
    state = pickle.loads(pickle.dumps(buffer.state()))
    items = {ref: item for item, ref in _source(1000)}
    resumed = ShuffleBuffer(64, SplitMix64(0))
    resumed.restore([items[r] for r in state["held"]], state["held"], state["draws"])
    after = list(resumed.shuffle(_source(1000, start=pulled[0])))
    assert before + after == full


def test_the_state_is_references_of_at_most_8_bytes_each_and_one_int():
    buffer = ShuffleBuffer(1000, SplitMix64(3), initial=1000)
    it = buffer.shuffle(_source(5000))
    next(it)
    state = buffer.state()
    assert len(state["held"]) == 999 and all(isinstance(r, int) for r in state["held"])
    assert len(pickle.dumps(state)) / 999 <= 12  # the bound is 32


def test_an_over_full_buffer_handed_more_at_resume_goes_back_to_its_size():
    buffer = ShuffleBuffer(10, SplitMix64(3))
    buffer.restore([f"old-{i}" for i in range(30)], list(range(30)))
    it = buffer.shuffle(_source(100))
    next(it)
    assert len(buffer) <= 30
    out = [next(it) for _ in range(25)]
    assert len(buffer) <= 11 and len(out) == 25


def test_restore_refuses_items_and_references_of_different_lengths():
    with pytest.raises(ConfigError, match="the shards changed"):
        ShuffleBuffer(10, SplitMix64(0)).restore(["a"], [1, 2])


def test_sizes_below_one_are_config_errors():
    with pytest.raises(ConfigError, match="size >= 1"):
        ShuffleBuffer(0, SplitMix64(0))


def test_shares_split_a_job_s_held_references_contiguously_and_completely():
    refs = list(range(17))
    parts = [shares(refs, i, 6) for i in range(6)]
    assert [r for p in parts for r in p] == refs
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_references_pack_shard_and_sample():
    for shard, sample in [(0, 0), (5, 7), (123456, (1 << 32) - 1)]:
        assert unpack_ref(pack_ref(shard, sample)) == (shard, sample)


def test_the_generator_is_seeded_reproducibly_and_draws_uniformly_enough():
    a, b = SplitMix64.seeded("x", 1, 2), SplitMix64.seeded("x", 1, 2)
    assert [a.next64() for _ in range(5)] == [b.next64() for _ in range(5)]
    assert SplitMix64.seeded("x", 1, 3).next64() != SplitMix64.seeded("x", 1, 2).next64()
    rng = SplitMix64(random.Random(0).getrandbits(64))
    counts = [0] * 10
    for _ in range(20000):
        counts[rng.below(10)] += 1
    assert all(1800 < c < 2200 for c in counts)
