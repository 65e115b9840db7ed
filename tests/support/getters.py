"""A getter for the fetch engine (``ais_wds.objects.prefetch.Prefetcher``) that records what it is asked
for: tests of the engine's and the read-ahead's windows, without a cluster."""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Sequence


class RecordingGetter:
    """Records every fetch as it starts (the keys it names); returns ``make(key)`` for each key
    (default: the key as bytes)."""

    def __init__(self, make: Callable[[str], Any] = str.encode) -> None:
        self.make = make
        self.calls: List[List[str]] = []
        self.lock = threading.Lock()

    def fetch(self, keys: Sequence[str]) -> List[Any]:
        with self.lock:
            self.calls.append(list(keys))
        return [self.make(k) for k in keys]

    @property
    def started(self) -> int:
        """Keys asked for so far."""
        with self.lock:
            return sum(len(c) for c in self.calls)
