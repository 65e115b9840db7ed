"""epoch_order's fast shuffle is random.Random.shuffle, bit for bit (saved job states depend on the order)."""

import random

import pytest

from ais_wds import epoch_order
from ais_wds.epochs.shuffle import FAST_MIN, shuffled_range


@pytest.mark.parametrize("n", [FAST_MIN, 100_003, (1 << 17) + 1])
@pytest.mark.parametrize("seed", ["ais_wds:7:3", 12345])
def test_shuffled_range_is_the_permutation_random_shuffle_makes(n, seed):
    expected = list(range(n))
    random.Random(seed).shuffle(expected)
    assert shuffled_range(n, random.Random(seed)) == expected


@pytest.mark.parametrize("n", [0, 1, 2, 10, FAST_MIN - 1])
def test_small_orders_take_random_shuffle_itself(n):
    expected = list(range(n))
    random.Random("s").shuffle(expected)
    assert shuffled_range(n, random.Random("s")) == expected


def test_epoch_order_keeps_the_orders_of_existing_seeds():
    n = 200_000
    for seed, epoch in ((0, 0), (3, 5)):
        expected = list(range(n))
        random.Random(f"ais_wds:{seed}:{epoch}").shuffle(expected)
        assert epoch_order(n, seed=seed, epoch=epoch) == expected
    assert epoch_order(n, seed=None) == list(range(n))
    order = epoch_order(n, seed=1)
    assert sorted(order) == list(range(n)) and order != epoch_order(n, seed=1, epoch=1)
