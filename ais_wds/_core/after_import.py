"""Run a callback right after a module has been imported, without importing it: how ais_wds hooks into
optional libraries (wids) whichever of the two a script imports first.

:func:`call_after_import` calls ``callback(module)`` at once when the module is loaded, else puts a
finder at the front of ``sys.meta_path`` that answers for that one name only: it asks the other finders
for the module's spec and wraps its loader so that ``callback`` runs right after the module's own code.
The finder leaves ``sys.meta_path`` once a callback has succeeded; when a callback raises, the import
fails with that error and the finder stays, so a second import of the module fails the same way rather
than succeeding without the callback.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Sequence

Callback = Callable[[ModuleType], None]

_lock = threading.Lock()


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of ``name`` found by the finders after it."""

    def __init__(self, name: str):
        self.name = name
        self.callbacks: List[Callback] = []

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
                  ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != self.name:
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or isinstance(finder, _AfterImportFinder) or find is None:
                continue
            spec: Optional[importlib.machinery.ModuleSpec] = find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _CallingLoader(spec.loader, self)
                return spec
        return None

    def run(self, module: ModuleType) -> None:
        for callback in list(self.callbacks):
            callback(module)
        with _lock:
            if self in sys.meta_path:
                sys.meta_path.remove(self)


class _CallingLoader(importlib.abc.Loader):
    """The module's own loader, then the finder's callbacks."""

    def __init__(self, inner: Any, finder: _AfterImportFinder):
        self._inner = inner
        self._finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
        module: Optional[ModuleType] = self._inner.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        self._finder.run(module)

    def __getattr__(self, name: str) -> Any:
        # get_resource_reader, is_package, get_code, ...: the inner loader's
        return getattr(self._inner, name)


def call_after_import(name: str, callback: Callback) -> None:
    """Call ``callback(module)`` now if the module ``name`` is loaded, else right after it is imported
    (in this process; a spawned process needs its own call, made when it imports ais_wds).

    Registering the same callback twice for a pending module is a no-op.

    Raises:
        Whatever ``callback`` raises, when it runs now.
    """
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    with _lock:
        finder = next((f for f in sys.meta_path if isinstance(f, _AfterImportFinder) and f.name == name), None)
        if finder is None:
            finder = _AfterImportFinder(name)
            sys.meta_path.insert(0, finder)
        if callback not in finder.callbacks:
            finder.callbacks.append(callback)


def pending() -> Dict[str, int]:
    """Module name -> number of callbacks waiting for its import (for tests and diagnostics)."""
    return {f.name: len(f.callbacks) for f in sys.meta_path if isinstance(f, _AfterImportFinder)}
