"""Stream WebDataset shards from an s3:// bucket through AIS.

1. Writes a few shards into ``s3://BUCKET/shards/`` with ``wds.ShardWriter`` (the s3 scheme routed through
   AIS by ``ais_wds.register(schemes=["s3"])``): AIS writes them into the S3 bucket through its aws backend.
2. Streams them back through ``ais_wds.WebDataset`` over a 2-worker DataLoader: the first epoch is a cold
   GET (AIS fetches from S3 and caches), the second is warm. Prints samples/s and checks every byte.

Run against the local cluster with the aws backend and its S3 emulator (moto)::

    eval "$(scripts/ais-local start --backends aws | sed 's/^/export /')"
    scripts/ais-local cloud-bucket s3://ais-wds-example
    .venv/bin/python examples/stream_s3.py --bucket ais-wds-example

With a real S3 bucket, point AIS_ENDPOINT at an AIS cluster whose aws backend can reach it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import torch
import webdataset as wds

import ais_wds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bucket", default="ais-wds-example", help="an existing s3 bucket AIS can reach")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--samples", type=int, default=200, help="samples per shard")
    args = parser.parse_args()

    client = ais_wds.Client()  # AIS_ENDPOINT
    prefix = f"s3://{args.bucket}/shards/"
    ais_wds.register(client, schemes=["s3"])  # plain webdataset's s3:// URLs go through AIS
    expected = {}
    with wds.ShardWriter(prefix + "train-%06d.tar", maxcount=args.samples, verbose=0) as sink:
        for i in range(args.shards * args.samples):
            data = os.urandom(4096)
            expected[f"sample{i:06d}"] = hashlib.sha256(data).hexdigest()
            sink.write({"__key__": f"sample{i:06d}", "bin": data, "cls": str(i % 10).encode()})
    client.bucket(prefix).evict(keep_md=True)  # drop AIS's copies: the first epoch reads from S3

    ds = ais_wds.WebDataset(prefix, client=client, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    for epoch in ("cold", "warm"):
        t0, got = time.perf_counter(), {}
        for sample in loader:
            got[sample["__key__"]] = hashlib.sha256(sample["bin"]).hexdigest()
        dt = time.perf_counter() - t0
        assert got == expected, "samples differ from what was written"
        print(f"{epoch}: {len(got)} samples from {prefix} in {dt:.2f}s ({len(got) / dt:,.0f} samples/s), bytes match")


if __name__ == "__main__":
    main()
