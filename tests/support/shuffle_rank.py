"""One DDP rank of tests/system/test_shuffle_elastic.py: reads part of an epoch of an ais_wds.WebDataset with
a shuffle through a StatefulDataLoader, gathers the job state over gloo (``ais_wds.job_state``), or loads
one and reads the rest; writes "KEY DIGEST" per sample it read (the bytes, not only the names) as JSON.

    python tests/support/shuffle_rank.py CONFIG.json    # torch.multiprocessing.spawn, one process per rank
"""

import json
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from shards import digest  # tests/support/shards.py (this folder is on PYTHONPATH)
from torchdata.stateful_dataloader import StatefulDataLoader


def keys_of(batch):
    return [f"{s['__key__']} {digest(s)}" for s in batch]


def dataset(cfg):
    import ais_wds

    mode, data = cfg["mode"], cfg["data"]
    kw = {"client": cfg["endpoint"], "seed": 5}
    if mode in ("buffer_index", "samples"):
        kw["index"] = data["index"]
    if mode == "samples":
        return ais_wds.WebDataset(data["shards"], shuffle="samples", **kw)
    ds = ais_wds.WebDataset(data["shards"], **kw)
    if mode == "open_shards":
        return ds.shuffle(8, open_shards=2)
    return ds.shuffle(16)


def rank_main(rank, cfg):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{cfg['port']}", rank=rank,
                            world_size=cfg["world"])
    import ais_wds

    ds = dataset(cfg)
    out = {"rank": rank, "read": []}
    if cfg["phase"] == "first":
        loader = StatefulDataLoader(ds, num_workers=2, batch_size=2, collate_fn=keys_of)
        it = iter(loader)
        for _ in range(cfg["stops"][rank]):
            out["read"] += next(it)
        job = ais_wds.job_state(loader.state_dict())  # a collective: every rank gets the job state
        if rank == 0:
            torch.save(job, cfg["job"])
    else:
        ds.load_state_dict(torch.load(cfg["job"], weights_only=False))
        loader = StatefulDataLoader(ds, num_workers=3, batch_size=2, collate_fn=keys_of)
        out["read"] = [k for b in loader for k in b]
    with open(os.path.join(cfg["out"], f"{cfg['phase']}{rank}.json"), "w") as f:
        json.dump(out, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        config = json.load(f)
    mp.spawn(rank_main, args=(config,), nprocs=config["world"], join=True)
