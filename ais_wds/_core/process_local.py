"""The one fork-safety rule of ais_wds: state that belongs to a process is a :class:`ProcessLocal`.

Connection pools, cluster maps, thread pools and the locks that guard them must not be shared by a
parent and its forked DataLoader workers: a pool's sockets would be read by two processes, a thread
pool's threads do not exist in the child, and a lock held by another thread at the moment of ``fork``
stays locked forever in the child. A :class:`ProcessLocal` builds its value lazily, on first use in
each process; ``os.register_at_fork`` drops every instance's value and replaces its lock in the child
right after ``fork``. Pickling (spawn/forkserver workers) never carries the value: owners pickle their
settings, not their ProcessLocals.

The registry of live instances (a ``WeakSet``, so it keeps nothing alive) is the only module state.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable, Generic, NoReturn, Optional, TypeVar

T = TypeVar("T")

_live: weakref.WeakSet[ProcessLocal[Any]] = weakref.WeakSet()


class ProcessLocal(Generic[T]):
    """A value built by ``factory()`` once per process, on first :meth:`get`.

    Thread safety: :meth:`get` may race from many threads; ``factory`` runs once per process.
    """

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._value: Optional[T] = None
        self._lock = threading.Lock()
        _live.add(self)

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
                value = self._value
        return value

    def peek(self) -> Optional[T]:
        """The value if this process has built it, else None (never builds)."""
        return self._value

    def clear(self) -> Optional[T]:
        """Forget this process's value (the next :meth:`get` builds a new one); returns the old one."""
        with self._lock:
            value, self._value = self._value, None
        return value

    def _forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._value = None

    def __reduce__(self) -> NoReturn:
        raise TypeError("a ProcessLocal belongs to its process; pickle its owner's settings instead")


def _after_fork_in_child() -> None:
    for instance in list(_live):
        instance._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
