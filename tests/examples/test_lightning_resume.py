"""examples/lightning_resume.py runs as a user would run it: a real Lightning Trainer on CPU over
``ais_wds.WebDataset`` and a 2-worker ``StatefulDataLoader`` against the session cluster, crashed mid-epoch
and resumed from its checkpoint; it proves by itself that every sample was trained on exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lightning_resume.py"


def test_lightning_resume_example_trains_every_sample_of_the_epoch_exactly_once(ais_endpoint, bucket):
    pytest.importorskip("lightning", reason="lightning is in the dev extra")
    env = {**os.environ, "AIS_ENDPOINT": ais_endpoint}
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--bucket", bucket], capture_output=True, text=True,
                          env=env, timeout=600, stdin=subprocess.DEVNULL)
    out = proc.stdout
    assert proc.returncode == 0, f"{out}\n{proc.stderr[-4000:]}"
    assert "simulated crash after 11 steps; it trained 88 samples" in out, out
    assert "the data position is in it: True" in out, out
    last = out.strip().splitlines()[-1]
    assert "exactly once" in last and "every one of the 240 samples" in last, out
    assert "(88 before the crash, 152 after resuming" in last, out
