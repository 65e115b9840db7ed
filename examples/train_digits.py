"""Train a small classifier by streaming WebDataset shards from AIS (the `make demo` job).

1. Writes scikit-learn's digits data set (1797 8x8 images; shipped with the package, nothing is
   downloaded) as WebDataset shards into the AIS bucket ``ais://ais-wds-demo`` with ``wds.ShardWriter``.
2. Streams the training shards through ``ais_wds.WebDataset`` and a 2-worker DataLoader for a few
   epochs (shard order reshuffled every epoch, split across workers), training a small MLP.
3. Evaluates on the held-out shards and prints samples/s, MB/s and the accuracy.

Run:  AIS_ENDPOINT=http://127.0.0.1:PORT python examples/train_digits.py   (or just `make demo`)
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
import webdataset as wds
from sklearn.datasets import load_digits

import ais_wds

BUCKET = "ais-wds-demo"


def write_shards(client: ais_wds.Client) -> None:
    """Write the digits as shards: 80% train, 20% test, ~150 samples per shard."""
    client.sdk.bucket(BUCKET).create(exist_ok=True)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(images))
    split = int(0.8 * len(order))
    for name, idx in (("train", order[:split]), ("test", order[split:])):
        with wds.ShardWriter(f"ais://{BUCKET}/digits-{name}-%06d.tar", maxcount=150, verbose=0) as sink:
            for i in idx:
                buf = io.BytesIO()
                np.save(buf, images[i])
                sink.write({"__key__": f"digit{i:05d}", "input.npy": buf.getvalue(), "cls": int(digits.target[i])})


def make_loader(split: str, client: ais_wds.Client, *, shuffle: bool
                ) -> tuple[ais_wds.WebDataset, torch.utils.data.DataLoader]:
    dataset = ais_wds.WebDataset(f"ais://{BUCKET}/digits-{split}-", client=client, shuffle=shuffle, seed=0)
    pipeline = dataset.shuffle(300 if shuffle else 0).decode().to_tuple("input.npy", "cls").batched(64)
    # persistent workers keep their pipeline between epochs; each pass advances its epoch, so the
    # shard order still changes every epoch (with non-persistent workers, call set_epoch instead)
    loader = torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=2, persistent_workers=True)
    return dataset, loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()

    torch.manual_seed(0)
    client = ais_wds.Client()
    print(f"AIS endpoint: {client.endpoint}")
    t0 = time.perf_counter()
    write_shards(client)
    shards = ais_wds.list_objects(f"ais://{BUCKET}/digits-train-", client)
    print(f"wrote {len(shards)} training shards ({shards.total_size / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f}s")

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    _, train_loader = make_loader("train", client, shuffle=True)

    seen, start = 0, time.perf_counter()
    for epoch in range(args.epochs):
        total_loss, batches = 0.0, 0
        for images, labels in train_loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(torch.as_tensor(images)), torch.as_tensor(labels))
            loss.backward()
            optimizer.step()
            total_loss, batches, seen = total_loss + loss.item(), batches + 1, seen + len(labels)
        print(f"epoch {epoch}: loss {total_loss / max(batches, 1):.3f}")
    elapsed = time.perf_counter() - start
    print(f"streamed {seen} samples in {elapsed:.1f}s: {seen / elapsed:.0f} samples/s, "
          f"{shards.total_size * args.epochs / elapsed / 1e6:.2f} MB/s (shard bytes)")

    _, test_loader = make_loader("test", client, shuffle=False)
    correct = total = 0
    with torch.no_grad():
        for images, labels in test_loader:
            predicted = model(torch.as_tensor(images)).argmax(dim=1)
            correct += int((predicted == torch.as_tensor(labels)).sum())
            total += len(labels)
    accuracy = correct / total
    print(f"test accuracy: {accuracy:.3f} on {total} held-out samples (chance: 0.100)")
    if accuracy < 0.8:
        raise SystemExit("accuracy is far below what this model reaches; something is wrong")


if __name__ == "__main__":
    main()
