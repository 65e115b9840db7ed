"""Resume a Lightning run mid-epoch with the data position in the checkpoint, reading every sample once.

1. Writes its own small shards (240 samples in 8 shards) into an AIS bucket (default ``ais://ais-wds-lightning``).
2. A ``LightningDataModule`` serves ``ais_wds.WebDataset`` through torchdata's ``StatefulDataLoader``
   (2 workers). Lightning saves a stateful loader's ``state_dict()`` in its checkpoint and loads it back on
   ``fit(ckpt_path=...)``, so the data position travels with the model.

   The dataset is given a shard index (``ais_wds.build_index``; ``ais-wds pack`` writes one too) and
   batches in the workers (``.batched(n)``), so the loader has an exact ``len()``. That matters: when a
   loader has no length, Lightning fetches one batch ahead of the training step (to see the end of the
   epoch coming), the loader's state in the checkpoint then counts that batch, and the resumed run skips
   it (measured with this example's shards and a loader without ``len()``: the 8 samples of one batch
   were never trained). With a length, Lightning does
   not fetch ahead.
3. A first ``Trainer`` (CPU) checkpoints every few steps and "crashes" (a callback raises) in the middle of
   the epoch. A second ``Trainer`` resumes from the last checkpoint and finishes the epoch.
4. The model records the key of every sample it trained on (kept in the checkpoint too). The keys of the
   steps before the checkpoint plus those after the resume must be every sample of the epoch, each once;
   the example prints a line saying so and exits 0, or names what was missed or repeated and exits 1.

Run:  AIS_ENDPOINT=http://127.0.0.1:PORT python examples/lightning_resume.py [--bucket NAME]
"""

from __future__ import annotations

import argparse
import collections
import io
import logging
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List, Tuple

import lightning as L
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

import ais_wds

FEATURES = 8


class Crash(RuntimeError):
    """The simulated failure of the first run."""


def write_shards(client: ais_wds.Client, bucket: str, samples: int, per_shard: int) -> List[str]:
    """``samples`` samples (``KEY.x``: FEATURES float32, ``KEY.y``: a class) as tar shards; their keys."""
    client.sdk.bucket(bucket).create(exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    keys = []
    for shard in range(0, samples, per_shard):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(shard, min(shard + per_shard, samples)):
                key = f"sample{i:05d}"
                keys.append(key)
                x = torch.randn(FEATURES, generator=gen).numpy().tobytes()
                for ext, body in (("x", x), ("y", str(i % 2).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mtime = len(body), 1_700_000_000
                    tar.addfile(info, io.BytesIO(body))
        ais_wds.write_bytes(f"ais://{bucket}/lightning/train-{shard // per_shard:06d}.tar", buf.getvalue(), client)
    return keys


def to_item(sample: Dict[str, Any]) -> Tuple[str, torch.Tensor, torch.Tensor]:
    x = torch.frombuffer(bytearray(sample["x"]), dtype=torch.float32)
    return sample["__key__"], x, torch.tensor(int(sample["y"]))


class ShardData(L.LightningDataModule):
    """The training shards under ``ais://BUCKET/lightning/`` through a 2-worker ``StatefulDataLoader``."""

    def __init__(self, bucket: str, batch_size: int = 8, workers: int = 2):
        super().__init__()
        self.bucket, self.batch_size, self.workers = bucket, batch_size, workers
        self.index: ais_wds.ShardIndex | None = None

    def setup(self, stage: str) -> None:
        # the index gives the loader its len() (see the module docstring); built once, sent to the workers
        self.index = ais_wds.build_index(f"ais://{self.bucket}/lightning/")

    def train_dataloader(self) -> StatefulDataLoader:
        dataset = ais_wds.WebDataset(f"ais://{self.bucket}/lightning/", index=self.index, shuffle=True, seed=7)
        batches = dataset.map(to_item).batched(self.batch_size)  # whole batches per worker; len() = batches
        return StatefulDataLoader(batches, batch_size=None, num_workers=self.workers)


class KeyRecordingModel(L.LightningModule):
    """A linear classifier that records the key of every sample it trains on (in its checkpoint too)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(FEATURES, 2)
        self.seen: List[str] = []

    def training_step(self, batch: Tuple[List[str], torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        keys, x, y = batch
        self.seen.extend(keys)
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["seen_keys"] = list(self.seen)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self.seen = list(checkpoint["seen_keys"])


class CrashAfter(L.Callback):
    """Raises :class:`Crash` when batch ``steps + 1`` is about to be trained (after the checkpoint of
    step ``steps``)."""

    def __init__(self, steps: int):
        self.steps = steps

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.steps:
            raise Crash(f"simulated crash after {trainer.global_step} steps")


def trainer(ckpt_dir: Path, *callbacks: L.Callback, every: int) -> L.Trainer:
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=every,
                                                      save_top_k=-1, filename="{step}")
    return L.Trainer(accelerator="cpu", devices=1, max_epochs=1, callbacks=[checkpoints, *callbacks],
                     logger=False, enable_progress_bar=False, enable_model_summary=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", default="ais-wds-lightning", help="ais:// bucket to write the shards into")
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--per-shard", type=int, default=30)
    parser.add_argument("--stop-after", type=int, default=11, help="steps before the simulated crash")
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.WARNING)
    for noise in (".*set_vital.*", ".*LeafSpec.*", ".*has `__len__` defined.*", ".*exists and is not empty.*",
                  ".*callbacks used to create the checkpoint.*"):
        warnings.filterwarnings("ignore", message=noise)
    torch.manual_seed(0)

    client = ais_wds.Client()
    keys = write_shards(client, args.bucket, args.samples, args.per_shard)
    print(f"AIS endpoint {client.endpoint}: wrote {len(keys)} samples into ais://{args.bucket}/lightning/")

    with tempfile.TemporaryDirectory() as tmp:
        ckpt_dir = Path(tmp)
        first = KeyRecordingModel()
        try:
            trainer(ckpt_dir, CrashAfter(args.stop_after), every=args.stop_after).fit(first, ShardData(args.bucket))
            print("the first run finished without crashing: --stop-after is past the end of the epoch")
            return 1
        except Crash as e:
            print(f"first run: {e}; it trained {len(first.seen)} samples")
        ckpt = ckpt_dir / f"step={args.stop_after}.ckpt"
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        before = state["seen_keys"]
        print(f"checkpoint {ckpt.name}: {len(before)} samples trained; the data position is in it: "
              f"{bool(state['loops']['fit_loop']['state_dict'].get('combined_loader'))}")

        second = KeyRecordingModel()
        trainer(ckpt_dir, every=args.stop_after).fit(second, ShardData(args.bucket), ckpt_path=str(ckpt))
        after = second.seen[len(before):]
        print(f"resumed run: {len(after)} more samples")

    counts = collections.Counter(before + after)
    missed = sorted(set(keys) - set(counts))
    repeated = sorted(k for k, n in counts.items() if n > 1)
    if missed or repeated or set(counts) != set(keys):
        print(f"FAILED: {len(missed)} samples missed (e.g. {missed[:3]}), {len(repeated)} repeated "
              f"(e.g. {repeated[:3]})")
        return 1
    print(f"every one of the {len(keys)} samples of the epoch was trained on exactly once "
          f"({len(before)} before the crash, {len(after)} after resuming from the checkpoint, 2 DataLoader workers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
