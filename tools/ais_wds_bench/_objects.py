"""Buckets of many tiny objects for listing benchmarks, made once by one AIS promote job and kept.

``ensure_objects(client, n)`` returns ``bench-list-<n>`` holding ``n`` one-byte objects named
``train/dDDDD/img-NNNNNNNNNN.jpg`` (10,000 per directory). The local cluster's targets share this
machine's filesystem, so files written under :data:`PROMOTE_ROOT` become objects in one job.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

PROMOTE_ROOT = "/var/lib/ais/promote"  # the only source tree AIS v1.5.0 promotes from (see sections/scale.py)


def object_name(i: int) -> str:
    return f"train/d{i // 10_000:04d}/img-{i:010d}.jpg"


def ensure_objects(client: Any, n: int) -> str:
    """The name of an ``ais://`` bucket holding exactly the ``n`` objects ``object_name(0..n-1)``."""
    from ais_wds.listing import list_objects

    bucket = f"bench-list-{n}"
    sdk_bucket = client.sdk.bucket(bucket)
    sdk_bucket.create(exist_ok=True)
    have = len(list_objects(f"ais://{bucket}/", client, allow_empty=True))
    if have == n:
        return bucket
    root = os.path.join(PROMOTE_ROOT, bucket)
    shutil.rmtree(root, ignore_errors=True)
    for d in range(0, n, 10_000):
        os.makedirs(os.path.join(root, f"d{d // 10_000:04d}"), exist_ok=True)
    for i in range(n):
        with open(os.path.join(root, object_name(i)[len("train/"):]), "wb") as f:
            f.write(b"x")
    job = sdk_bucket.object("train/").promote(root, recursive=True, overwrite_dest=True, delete_source=True)
    if job:
        client.sdk.job(job_id=job).wait(timeout=3600)
    deadline = time.monotonic() + 3600  # each target deletes what it promoted; the job's wait may return early
    while time.monotonic() < deadline and any(files for _, _, files in os.walk(root)):
        time.sleep(2)
    shutil.rmtree(root, ignore_errors=True)
    got = len(list_objects(f"ais://{bucket}/", client, allow_empty=True))
    if got != n:
        raise RuntimeError(f"ais://{bucket}: {got} objects after the promote job, expected {n}")
    return bucket
