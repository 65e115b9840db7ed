"""Imported once by the benchmark's fork server: loads every library a contender uses, so that each
measurement runs in a fresh process (forked from the server) without paying seconds of imports.

Also the one place that papers over a missing optional dependency of a peer: ``aistore.pytorch``
2.0.0 imports ``alive_progress`` (its ``[pytorch]`` extra), which ais_wds does not install. When it is
absent a no-op ``alive_it`` stands in; the peers call it with ``disable=True`` anyway, so this only
removes a wrapper generator from their loop.
"""

from __future__ import annotations

import sys
import types


def ensure_alive_progress() -> bool:
    """Make ``import aistore.pytorch`` work; returns True when the stand-in was installed."""
    try:
        import alive_progress  # noqa: F401
        return False
    except ImportError:
        shim = types.ModuleType("alive_progress")
        shim.alive_it = lambda it, *args, **kwargs: it
        sys.modules["alive_progress"] = shim
        return True


ALIVE_PROGRESS_SHIM = ensure_alive_progress()

import ais_wds  # noqa: E402,F401  (registers the ais:// gopen handlers)
import aistore.pytorch  # noqa: E402,F401
import torch  # noqa: E402,F401
import urllib3  # noqa: E402,F401
import webdataset  # noqa: E402,F401
