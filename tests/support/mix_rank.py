"""One DDP rank of the elastic mixing test (tests/mixing/test_mix_cluster.py): gloo on loopback,
launched with torch.multiprocessing.spawn.

    python tests/support/mix_rank.py CONFIG.json

Phase "before": every rank reads some batches of a 3-source mix through a StatefulDataLoader, changes
the weights on the way, and gathers the job state over the process group (``ais_wds.job_state``); rank 0
saves it. Phase "after": every rank of the new shape loads it and reads the rest of the epoch. Each rank
writes what it read (source, key, digest) as JSON.
"""

import json
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def ids(batch):
    from tests.support.mix_data import identify

    return [list(identify(s)) for s in batch]


def rank_main(rank, cfg):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{cfg['port']}", rank=rank,
                            world_size=cfg["world"])
    from torchdata.stateful_dataloader import StatefulDataLoader

    import ais_wds

    ep, data = cfg["endpoint"], cfg["data"]
    sources = [ais_wds.WebDataset(data["a"], client=ep, index=data["a_index"], seed=1),
               ais_wds.WebDataset(data["b"], client=ep, index=data["b_index"], seed=2),
               ais_wds.AISIterDataset(ep, data["c"], shuffle=True, seed=3)]
    mix = ais_wds.Mix(sources, cfg["weights"], seed=7, stop=cfg["stop"])
    job_path = os.path.join(cfg["dir"], "job.pt")
    if cfg["phase"] == "after":
        mix.load_state_dict(torch.load(job_path, weights_only=False))
    loader = StatefulDataLoader(mix, batch_size=10, num_workers=cfg["workers"], collate_fn=ids)
    out = {"rank": rank, "len": len(mix), "weights": mix.weights, "read": []}
    if cfg["phase"] == "before":
        it = iter(loader)
        for step in range(cfg["batches"][rank]):
            if step == cfg["change_at"]:
                mix.set_weights(cfg["new_weights"])
            out["read"] += next(it)
        job = ais_wds.job_state(loader.state_dict())  # a collective over the process group
        if rank == 0:
            torch.save(job, job_path)
        del it
    else:
        out["read"] = [x for batch in loader for x in batch]
    with open(os.path.join(cfg["dir"], f"{cfg['phase']}-rank{rank}.json"), "w") as f:
        json.dump(out, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        config = json.load(f)
    mp.spawn(rank_main, args=(config,), nprocs=config["world"], join=True)
