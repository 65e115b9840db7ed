"""Real DDP ranks (gloo on loopback), launched the way PyTorch's tutorial does (torch.multiprocessing.spawn
+ init_process_group, no RANK in the environment) and the way torchrun does (RANK / WORLD_SIZE /
MASTER_ADDR / MASTER_PORT), and as srun does (SLURM_PROCID / SLURM_NTASKS / SLURM_STEP_NUM_TASKS, no
process group): every front end reads every sample exactly once per epoch across ranks x DataLoader
workers (fork, spawn and forkserver), `even=` gives every rank the same count, `len()` is what a rank
yields, epochs advance, and only rank 0 lists (or loads the index) when there is a process group."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.shards import COUNTS, N_OBJECTS, make_data, object_digests, sample_digests, shard_keys

RANK_SCRIPT = Path(__file__).resolve().parents[1] / "support" / "dist_rank.py"


@pytest.fixture(scope="module")
def data(client, module_bucket):
    return make_data(client, module_bucket)


def _launch(tmp_path, ais_endpoint, data, launcher, world, workers, context="fork", persistent=False, fronts=None):
    cfg = {"launcher": launcher, "world": world, "workers": workers, "context": context, "persistent": persistent,
           "fronts": fronts,
           "endpoint": ais_endpoint, "data": data, "out": str(tmp_path), "port": free_port()}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(RANK_SCRIPT.parent), env.get("PYTHONPATH", "")])
    if launcher == "mp":
        procs = [subprocess.Popen([sys.executable, str(RANK_SCRIPT), str(path)], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)]
    elif launcher == "slurm":  # what srun sets for each task of a one-node step
        procs = [subprocess.Popen([sys.executable, str(RANK_SCRIPT), str(path)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env={**env, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r),
                                       "SLURM_NTASKS": str(world), "SLURM_STEP_NUM_TASKS": str(world),
                                       "SLURM_NNODES": "1", "SLURM_NODEID": "0", "SLURM_JOB_ID": "4242",
                                       "SLURM_STEP_ID": "0"})
                 for r in range(world)]
    else:
        procs = [subprocess.Popen([sys.executable, str(RANK_SCRIPT), str(path)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env={**env, "RANK": str(r), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
                                       "MASTER_PORT": str(cfg["port"])})
                 for r in range(world)]
    for p in procs:
        _, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-4000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]


SAMPLES, OBJECTS = sample_digests(), object_digests()


def _names(entries, written, name=lambda k: k):
    """The keys (or URLs) of a rank's "KEY DIGEST" entries, each digest checked against what was written."""
    out = []
    for entry in entries:
        key, got = entry.rsplit(" ", 1)
        assert got == written[name(key)], f"{key}: not the bytes that were written"
        out.append(key)
    return out


def _check(outs, world, fronts=("wds_index", "wds_shards", "iter", "map", "shard_ds", "pipes"), shared=True):
    all_keys, all_objects = set(shard_keys()), {f"obj-{i:03d}.bin" for i in range(N_OBJECTS)}
    total = sum(COUNTS)
    assert [o["detected"] for o in outs] == [[r, world] for r in range(world)]
    for o in outs:  # bytes, not only names: every sample and object as written
        for kind in fronts:
            epochs = o[kind] if kind == "wds_index" else [o[kind]]
            written = OBJECTS if kind in ("iter", "map", "pipes") else SAMPLES
            o[kind] = [_names(e, written, lambda u: u.rsplit("/", 1)[-1]) for e in epochs]
            o[kind] = o[kind] if kind == "wds_index" else o[kind][0]

    def exactly_once(lists):
        flat = [x for lst in lists for x in lst]
        assert len(flat) == len(set(flat))
        return set(flat)

    for epoch in (0, 1):  # index split by sample, even="drop": equal counts, nothing twice
        per_rank = [o["wds_index"][epoch] for o in outs]
        assert [len(k) for k in per_rank] == [total // world] * world
        assert exactly_once(per_rank) <= all_keys
    assert outs[0]["wds_index"][0] != outs[0]["wds_index"][1]  # the epoch advanced: another order
    assert [o["wds_index_len"] for o in outs] == [total // world] * world
    if "wds_shards" in fronts:
        assert exactly_once([o["wds_shards"] for o in outs]) == all_keys  # by shard, even=None: everything
    for kind in [k for k in ("iter", "map", "pipes") if k in fronts]:
        lists = [[u.rsplit("/", 1)[1] for u in o[kind]] for o in outs]
        assert [len(x) for x in lists] == [N_OBJECTS // world] * world, kind
        assert exactly_once(lists) <= all_objects
        assert [o[f"{kind}_len"] for o in outs] == [N_OBJECTS // world] * world
    # one listing per job: rank 0 lists (once per front end) and loads the index (once for the
    # WebDataset, once for AISShardDataset); the other ranks receive them over torch.distributed
    expected = {"list_objects": len([f for f in fronts if f != "shard_ds"]), "load_index": 1}
    if "shard_ds" in fronts:
        expected["resolve_index"] = 1
    if shared:
        assert outs[0]["calls"] == expected
        assert all(o["calls"] == {} for o in outs[1:])
    else:  # no process group: nothing to share over, each rank lists for itself
        assert all(o["calls"] == expected for o in outs)
    if "shard_ds" not in fronts:
        return
    assert [len(o["shard_ds"]) for o in outs] == [total // world] * world
    assert exactly_once([o["shard_ds"] for o in outs]) <= all_keys
    assert [o["shard_ds_len"] for o in outs] == [total // world] * world


def test_mp_spawn_launch_three_ranks_with_two_fork_workers_each(tmp_path, ais_endpoint, data):
    _check(_launch(tmp_path, ais_endpoint, data, "mp", 3, 2, "fork"), 3)


def test_torchrun_style_env_launch_two_ranks_with_two_persistent_spawn_workers_each(tmp_path, ais_endpoint, data):
    fronts = ("wds_index", "iter")  # (spawned workers import torch: the two front ends of the issue only)
    _check(_launch(tmp_path, ais_endpoint, data, "env", 2, 2, "spawn", persistent=True, fronts=fronts), 2, fronts)


def test_mp_spawn_launch_two_ranks_without_workers(tmp_path, ais_endpoint, data):
    _check(_launch(tmp_path, ais_endpoint, data, "mp", 2, 0), 2)


def test_mp_spawn_launch_two_ranks_with_two_forkserver_workers_each(tmp_path, ais_endpoint, data):
    fronts = ("wds_index", "iter", "pipes")
    _check(_launch(tmp_path, ais_endpoint, data, "mp", 2, 2, "forkserver", fronts=fronts), 2, fronts)


def test_slurm_style_launch_without_a_process_group_reads_every_sample_once(tmp_path, ais_endpoint, data):
    fronts = ("wds_index", "iter", "pipes")
    _check(_launch(tmp_path, ais_endpoint, data, "slurm", 2, 2, "fork", fronts=fronts), 2, fronts, shared=False)


def test_rank_is_not_taken_from_slurm_ntasks_alone(monkeypatch):
    # sbatch sets SLURM_NTASKS (and SLURM_PROCID=0) for its one batch-script process: only srun's
    # SLURM_STEP_NUM_TASKS says how many ranks a step runs
    from ais_wds.partition import dist_rank_world

    for name in ("RANK", "WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert dist_rank_world() == (0, 1)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert dist_rank_world() == (3, 4)
