"""partition(): a part's contiguous run of the epoch plan, the one rank-splitting rule of every front end."""

import itertools

import pytest

from ais_wds import ConfigError, Part, current_part, epoch_order, partition


def _parts(world, workers):
    return [Part(r, world, w, workers) for r in range(world) for w in range(workers)]


@pytest.mark.parametrize("n", [0, 1, 5, 12, 97, 1000])
@pytest.mark.parametrize("world,workers", [(1, 1), (1, 4), (2, 1), (2, 3), (4, 2), (3, 5), (8, 8)])
def test_every_entry_lands_in_exactly_one_part(n, world, workers):
    order = epoch_order(n, seed=7, epoch=3)
    seen = list(itertools.chain.from_iterable(partition(order, p) for p in _parts(world, workers)))
    assert sorted(seen) == list(range(n))


@pytest.mark.parametrize("n,world", [(10, 3), (11, 4), (7, 7), (5, 8), (100, 6)])
def test_even_drop_gives_equal_counts_and_drops_the_remainder(n, world):
    order = epoch_order(n, seed=1)
    shares = [partition(order, Part(r, world), even="drop") for r in range(world)]
    assert len({len(s) for s in shares}) == 1
    flat = [i for s in shares for i in s]
    assert len(flat) == n - n % world and len(set(flat)) == len(flat)


@pytest.mark.parametrize("n,world", [(10, 3), (11, 4), (5, 8), (100, 6)])
def test_even_repeat_gives_equal_counts_and_covers_everything(n, world):
    order = epoch_order(n, seed=1)
    shares = [partition(order, Part(r, world), even="repeat") for r in range(world)]
    assert len({len(s) for s in shares}) == 1
    flat = [i for s in shares for i in s]
    assert set(flat) == set(range(n))
    assert len(flat) == -(-n // world) * world


def test_ranks_get_contiguous_balanced_runs_of_the_epoch_order():
    order = epoch_order(10, seed=3)
    shares = [partition(order, Part(r, 3)) for r in range(3)]
    assert shares == [order[0:3], order[3:6], order[6:10]]


def test_workers_get_contiguous_runs_of_their_rank_share():
    order = list(range(20))
    assert [partition(order, Part(1, 2, w, 3)) for w in range(3)] == [[10, 11, 12], [13, 14, 15], [16, 17, 18, 19]]


def test_drop_leaves_out_the_end_of_the_order_and_repeat_reuses_its_start():
    order = list(range(10))
    assert [partition(order, Part(r, 4), even="drop") for r in range(4)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [partition(order, Part(r, 4), even="repeat") for r in range(4)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8],
                                                                               [9, 0, 1]]


@pytest.mark.parametrize("n,world,even", [(10, 3, None), (11, 4, "drop"), (5, 8, "repeat"), (97, 6, None),
                                          (100, 7, "repeat")])
def test_partition_gives_each_rank_exactly_what_the_sampler_of_a_front_end_yields(n, world, even):
    from ais_wds.datasets import AISSampler

    order = epoch_order(n, seed=11, epoch=0)
    for rank in range(world):
        sampler = AISSampler(range(n), shuffle=True, seed=11, rank=rank, world_size=world, even=even)
        assert partition(order, Part(rank, world), even=even) == list(sampler)


def test_rank_share_is_split_among_its_workers_exactly():
    order = epoch_order(50, seed=None)
    rank_share = partition(order, Part(1, 2))
    workers = [partition(order, Part(1, 2, w, 3)) for w in range(3)]
    assert sorted(i for w in workers for i in w) == sorted(rank_share)


def test_epoch_order_is_deterministic_per_seed_and_epoch_and_changes_across_epochs():
    assert epoch_order(100, seed=5, epoch=0) == epoch_order(100, seed=5, epoch=0)
    assert epoch_order(100, seed=5, epoch=0) != epoch_order(100, seed=5, epoch=1)
    assert epoch_order(100, seed=5, epoch=0) != epoch_order(100, seed=6, epoch=0)
    assert epoch_order(5, seed=None, epoch=9) == [0, 1, 2, 3, 4]


def test_current_part_reads_rank_and_world_size_from_the_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert current_part() == Part(3, 4, 0, 1)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert current_part() == Part(0, 1, 0, 1)


def test_invalid_parts_and_modes_are_rejected():
    with pytest.raises(ConfigError):
        Part(2, 2)
    with pytest.raises(ConfigError):
        partition([1, 2], Part(), even="pad")
