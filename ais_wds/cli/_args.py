"""Argument types and output formats shared by the subcommands."""

from __future__ import annotations

import argparse
from typing import Optional, Tuple


def byte_range(text: str) -> Tuple[int, Optional[int]]:
    """``START-END`` (END exclusive; either may be empty) as ``(start, end or None)``; for argparse ``type=``,
    so a bad value ends in argparse's usage error (exit 2), never a traceback."""
    a, dash, b = text.partition("-")
    try:
        start, end = int(a or 0), (int(b) if b else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not START-END in bytes (e.g. 0-1024)") from None
    if not dash or start < 0 or (end is not None and end < start):
        raise argparse.ArgumentTypeError(f"{text!r} is not START-END with 0 <= START <= END (e.g. 0-1024)")
    return start, end


def human_size(n: float) -> str:
    """Bytes with a binary unit: ``512 B``, ``1.5 KiB``, ... ``2.0 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
