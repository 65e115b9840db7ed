"""ais_wds.WebDataset shortens the GIL switch interval in the DataLoader workers that iterate it (their
helper threads hand batches to the main process), and leaves the main process and other settings alone."""

from __future__ import annotations

import io
import sys
import tarfile

import pytest

import ais_wds
import ais_wds.streaming.pipeline as pipeline
from ais_wds import write_bytes


def _shard(n: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(n):
            info = tarfile.TarInfo(f"s{i:03d}.txt")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return out.getvalue()


def _interval(sample):
    return sys.getswitchinterval()


def test_workers_take_the_short_switch_interval_and_the_main_process_keeps_its_own(client, bucket):
    from torch.utils.data import DataLoader

    for k in range(2):
        write_bytes(f"ais://{bucket}/train-{k}.tar", _shard(3), client)
    ds = ais_wds.WebDataset(f"ais://{bucket}/train-", client=client, shuffle=False).map(_interval)
    seen = list(DataLoader(ds, batch_size=None, num_workers=2))
    assert seen == [pytest.approx(pipeline.WORKER_SWITCH_INTERVAL)] * 6
    assert sys.getswitchinterval() == 0.005
    assert list(ds) == [0.005] * 6  # not in a worker: untouched
