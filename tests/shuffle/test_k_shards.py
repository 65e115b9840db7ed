"""k open shards (pure logic): every sample once, samples of many shards close together, exact resume."""

import pytest

from ais_wds.errors import ConfigError
from ais_wds.shuffle.k_shards import OpenShards
from ais_wds.shuffle.refs import unpack_ref
from ais_wds.shuffle.rng import SplitMix64

SHARDS, PER = 12, 30


def _opener(entry):
    shard, first, stop = entry
    end = PER if stop < 0 else stop
    return iter([f"{shard}-{j}" for j in range(first, end)])


def _pending(start=0):
    return iter([[s, 0, -1] for s in range(start, SHARDS)])


def test_every_sample_once_with_its_reference_and_many_shards_in_a_window():
    out = list(OpenShards(6, SplitMix64(1)).interleave(_pending(), _opener))
    assert sorted(i for i, _ in out) == sorted(f"{s}-{j}" for s in range(SHARDS) for j in range(PER))
    assert all(item == "{}-{}".format(*unpack_ref(ref)) for item, ref in out)
    shards_in_first_12 = {i.split("-")[0] for i, _ in out[:12]}
    assert len(shards_in_first_12) >= 4


@pytest.mark.parametrize("stop", [1, 50, 200, 355])
def test_reopened_entries_continue_exactly(stop):
    full = [i for i, _ in OpenShards(4, SplitMix64(9)).interleave(_pending(), _opener)]
    shards = OpenShards(4, SplitMix64(9))
    taken = [0]

    def pending():
        for entry in _pending():
            taken[0] += 1
            yield entry

    it = shards.interleave(pending(), _opener)
    before = [next(it)[0] for _ in range(stop)]
    entries, opened, picks = shards.state()
    nxt = taken[0]
    resumed = OpenShards(4, SplitMix64(picks))
    resumed.restore(entries, opened, _opener)
    after = [i for i, _ in resumed.interleave(_pending(nxt), _opener)]
    assert before + after == full


def test_queued_entries_are_opened_before_the_plan_s_own():
    shards = OpenShards(2, SplitMix64(1))
    shards.restore([[0, 28, -1], [1, 29, -1], [2, 0, 3]], 0, _opener)
    out = [i for i, _ in shards.interleave(_pending(3), _opener)]
    assert sorted(out[:6]) == ["0-28", "0-29", "1-29", "2-0", "2-1", "2-2"]


def test_k_below_one_is_a_config_error():
    with pytest.raises(ConfigError, match="open_shards"):
        OpenShards(0, SplitMix64(0))
