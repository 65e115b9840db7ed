"""One DDP rank of tests/system/test_distributed.py: builds every front end, reads one epoch (two for
ais_wds.WebDataset) through a DataLoader, counts listing calls, writes what it saw as JSON: "KEY DIGEST"
per sample and "URL SHA1" per object (the bytes, not only the names).

    python tests/support/dist_rank.py CONFIG.json          # launcher "mp": torch.multiprocessing.spawn + tcp://
    RANK=r WORLD_SIZE=w MASTER_ADDR=... MASTER_PORT=... python tests/support/dist_rank.py CONFIG.json   # "env"
    SLURM_PROCID=r SLURM_NTASKS=w SLURM_STEP_NUM_TASKS=w ... python tests/support/dist_rank.py CONFIG.json  # "slurm"

The "slurm" launcher starts no process group (srun sets only its variables): the datasets take the rank
from the environment, and every rank lists for itself.
"""

import json
import multiprocessing
import os
import sys

import torch.distributed as dist
import torch.multiprocessing as mp
from shards import blob_digest, digest  # tests/support/shards.py (this folder is on PYTHONPATH)
from torch.utils.data import DataLoader


def key_of(sample):
    """"KEY DIGEST": the key and a digest of the sample's bytes (compared with what was written)."""
    return f"{sample['__key__']} {digest(sample)}"


def keys_of(batch):
    return [key_of(s) for s in batch]


def urls_of(batch):
    """"URL SHA1" for each (url, bytes) of a batch."""
    return [f"{u} {blob_digest(data)}" for u, data in batch]


def read_urls(batch):
    out = []
    for url, stream in batch:
        with stream:
            out.append(f"{url} {blob_digest(stream.read())}")
    return out


def _count(module, name, counter):
    real = getattr(module, name)

    def counted(*args, **kwargs):
        counter[name] = counter.get(name, 0) + 1
        return real(*args, **kwargs)

    setattr(module, name, counted)


def rank_main(rank, cfg):
    if cfg["launcher"] == "mp":
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{cfg['port']}", rank=rank,
                                world_size=cfg["world"])
    elif cfg["launcher"] == "env":
        dist.init_process_group("gloo")
    import ais_wds
    import ais_wds.datasets._common as common
    import ais_wds.datasets.pipes as pipes
    import ais_wds.shard_index.dataset as shard_ds
    import ais_wds.streaming.pipeline as pipeline
    import ais_wds.streaming.shards as shards
    from ais_wds.partition import dist_rank_world

    calls = {}
    for module, name in ((shards, "list_objects"), (common, "list_objects"), (pipes, "list_objects"),
                         (pipeline, "load_index"), (shard_ds, "resolve_index")):
        _count(module, name, calls)
    ep, data, workers = cfg["endpoint"], cfg["data"], cfg["workers"]
    if cfg["context"] == "forkserver":  # as users do: the server imports once, its workers fork from it
        multiprocessing.set_forkserver_preload(["torch.utils.data", "ais_wds.datasets", "ais_wds.streaming"])
    kw = {"num_workers": workers}
    if workers:
        kw.update(multiprocessing_context=cfg["context"], persistent_workers=cfg.get("persistent", False))
    out = {"rank": rank, "detected": list(dist_rank_world())}
    fronts = cfg.get("fronts") or ["wds_index", "wds_shards", "iter", "map", "shard_ds", "pipes"]

    if "wds_index" in fronts:
        ds = ais_wds.WebDataset(data["shards"], client=ep, index=data["index"], even="drop", seed=1).map(key_of)
        loader = DataLoader(ds, batch_size=None, **kw)
        out["wds_index"] = [list(loader), list(loader)]  # two epochs: they must differ in order
        out["wds_index_len"] = len(ds)

    if "wds_shards" in fronts:
        plain = ais_wds.WebDataset(data["shards"], client=ep, seed=2).map(key_of)
        out["wds_shards"] = list(DataLoader(plain, batch_size=None, **kw))

    if "iter" in fronts:
        it = ais_wds.AISIterDataset(ep, data["objects"], shuffle=True, seed=3, even="drop")
        out["iter"] = [u for b in DataLoader(it, batch_size=4, collate_fn=urls_of, **kw) for u in b]
        out["iter_len"] = len(it)

    if "map" in fronts:
        m = ais_wds.AISDataset(ep, data["objects"])
        sampler = m.sampler(shuffle=True, seed=4, even="drop")
        out["map"] = [u for b in DataLoader(m, batch_size=4, sampler=sampler, collate_fn=urls_of, **kw) for u in b]
        out["map_len"] = len(sampler)

    if "shard_ds" in fronts:
        sds = ais_wds.AISShardDataset(data["index"], ep)
        ssampler = sds.sampler(shuffle=True, seed=5, even="drop")
        out["shard_ds"] = [k for b in DataLoader(sds, batch_size=4, sampler=ssampler, collate_fn=keys_of, **kw)
                           for k in b]
        out["shard_ds_len"] = len(ssampler)

    if "pipes" in fronts:
        loader_pipe = ais_wds.AISFileLoader(ep, ais_wds.AISFileLister(ep, data["objects"]), even="drop")
        out["pipes"] = [u for b in DataLoader(loader_pipe, batch_size=1, collate_fn=read_urls, **kw) for u in b]
        out["pipes_len"] = len(loader_pipe)

    out["calls"] = calls
    with open(os.path.join(cfg["out"], f"rank{rank}.json"), "w") as f:
        json.dump(out, f)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        config = json.load(f)
    if config["launcher"] == "mp":
        mp.spawn(rank_main, args=(config,), nprocs=config["world"], join=True)
    else:
        rank_main(int(os.environ["RANK" if config["launcher"] == "env" else "SLURM_PROCID"]), config)
