"""Tar shards written by Python's ``tarfile`` (not by ais_wds), for tests that need shards of their own."""

from __future__ import annotations

import io
import tarfile
from typing import Iterable, Tuple


def tar_bytes(members: Iterable[Tuple[str, bytes]], mtime: int = 1_700_000_000) -> bytes:
    """A ustar archive of ``(name, body)`` members, in order, with a fixed ``mtime``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, body in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(body), mtime
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()
