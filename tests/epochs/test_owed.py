"""Job states carry what part states owe (a shuffle buffer's held samples, a k-shard shuffle's open
entries): concatenated rank-major, private generator states dropped, and an epoch whose every part read
its share but still holds samples is not finished."""

from ais_wds.epochs.plan import JOB_KIND, PartPlan, merge_job_state


def _parts(n, world, workers, progress, extra):
    states = []
    for r in range(world):
        for w in range(workers):
            plan = PartPlan.make(2, n, None, (), world, workers, r, w, identity={"seed": 0})
            plan.progress = progress(plan)
            states.append({**plan.state(), **extra(r, w)})
    return states


def test_held_and_open_are_concatenated_rank_major_and_generators_dropped():
    states = _parts(40, 2, 2, lambda p: (3, 0),
                    lambda r, w: {"held": [r * 10 + w, r * 10 + w + 100], "draws": 7 + r, "open": [[r, w, -1]],
                                  "picks": [5, 1]})
    job = merge_job_state(list(reversed(states)))
    assert job["kind"] == JOB_KIND
    assert job["held"] == [0, 100, 1, 101, 10, 110, 11, 111]
    assert job["open"] == [[0, 0, -1], [0, 1, -1], [1, 0, -1], [1, 1, -1]]
    assert "draws" not in job and "picks" not in job


def test_an_epoch_read_to_its_end_with_samples_still_held_is_not_finished():
    whole = _parts(10, 2, 1, lambda p: (p.length, 0), lambda r, w: {"held": [r] if r == 1 else []})
    job = merge_job_state(whole)
    assert job["epoch"] == 2 and job["held"] == [1] and job["layers"]
    done = _parts(10, 2, 1, lambda p: (p.length, 0), lambda r, w: {"held": []})
    assert merge_job_state(done)["epoch"] == 3


def test_states_without_shuffle_keys_merge_as_before():
    job = merge_job_state(_parts(40, 2, 2, lambda p: (3, 0), lambda r, w: {}))
    assert "held" not in job and "open" not in job
