"""The global sample order (pure logic): a permutation per (seed, epoch), located to (shard, sample)."""

import pytest

from ais_wds.errors import ConfigError
from ais_wds.shuffle.global_samples import SampleOrder, permutation
from ais_wds.shuffle.modes import ShuffleMode, shuffle_mode


def test_an_epoch_is_a_permutation_that_depends_only_on_seed_and_epoch():
    a = permutation(1000, 1, 0)
    assert sorted(a.tolist()) == list(range(1000))
    assert a.tolist() == permutation(1000, 1, 0).tolist()
    assert a.tolist() != permutation(1000, 1, 1).tolist()
    assert a.tolist() != permutation(1000, 2, 0).tolist()


def test_locate_names_each_position_s_shard_and_sample():
    counts = [3, 0, 5, 2]
    order = SampleOrder(counts, seed=4, epoch=2)
    located = order.locate(range(10))
    assert sorted(located) == [(0, 0), (0, 1), (0, 2), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4), (3, 0), (3, 1)]
    starts = [0, 3, 3, 8]
    assert [starts[s] + j for s, j in located] == order.perm.tolist()


@pytest.mark.parametrize("value, mode", [(True, ShuffleMode.SHARDS), ("shards", ShuffleMode.SHARDS),
                                         (False, ShuffleMode.NONE), ("none", ShuffleMode.NONE)])
def test_shuffle_values_accepted(value, mode):
    assert shuffle_mode(value, has_index=False) is mode


def test_samples_needs_an_index_and_unknown_values_name_themselves_and_the_accepted_ones():
    assert shuffle_mode("samples", has_index=True) is ShuffleMode.SAMPLES
    with pytest.raises(ConfigError, match="needs a shard index"):
        shuffle_mode("samples", has_index=False)
    for bad in ("Samples", 2, None, "random", 1.0):
        with pytest.raises(ConfigError, match=r"is not one of True, False, 'shards', 'samples', 'none'"):
            shuffle_mode(bad, has_index=True)
