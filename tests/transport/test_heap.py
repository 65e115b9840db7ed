"""ais_wds._core.heap: where the malloc heap bound applies (each case in a fresh Python, so this test
process's malloc is never changed)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the bound is glibc's mallopt")

PROBE = "from ais_wds._core import heap; print(heap.bound_worker_heap(), heap.bounded())"
# Compared before and after: CPython 3.12's own start-up leaves objects frozen (375 on 3.12.x here), so the
# absolute count is not zero in every interpreter.
FREEZE_PROBE = ("import gc; from ais_wds._core import heap; before = gc.get_freeze_count(); "
                "print(heap.freeze_inherited(), gc.get_freeze_count() - before)")


def _probe(**env: str) -> str:
    return _run(PROBE, **env)


def _run(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("AIS_WDS_HEAP", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def test_by_default_no_process_is_touched():
    assert _probe() == "False False"


def test_workers_leaves_a_process_that_is_not_a_dataloader_worker_alone():
    assert _probe(AIS_WDS_HEAP="workers") == "False False"


def test_all_bounds_every_process():
    assert _probe(AIS_WDS_HEAP="all") == "True True"


def test_off_leaves_every_process_alone():
    assert _probe(AIS_WDS_HEAP="off") == "False False"


@pytest.mark.parametrize("knob", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"])
def test_the_users_own_glibc_settings_win(knob):
    assert _probe(AIS_WDS_HEAP="all", **{knob: "4194304"}) == "False False"


def test_a_process_that_is_not_a_dataloader_worker_freezes_nothing():
    assert _run(FREEZE_PROBE) == "False 0"
