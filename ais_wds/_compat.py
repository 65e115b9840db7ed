"""Import paths of ais_wds 0.1 that moved in 0.2 (``ais_wds.tario`` -> ``ais_wds.streaming.stages``, ...).

A meta-path finder answers only for the names in :data:`MOVED`, by importing the new module and
returning it under the old name, so ``import ais_wds.tario`` and ``from ais_wds.shard_dataset import
AISShardDataset`` keep working without a file per old name. New code should use the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Optional, Sequence

MOVED = {
    "ais_wds.tario": "ais_wds.streaming.stages",
    "ais_wds.tarwrite": "ais_wds.tar.writer",
    "ais_wds.gopen": "ais_wds.streaming.gopen",
    "ais_wds.shards": "ais_wds.streaming.shards",
    "ais_wds.pipeline": "ais_wds.streaming.pipeline",
    "ais_wds.map_dataset": "ais_wds.datasets.map",
    "ais_wds.iter_dataset": "ais_wds.datasets.iterable",
    "ais_wds.pipes": "ais_wds.datasets.pipes",
    "ais_wds.shard_dataset": "ais_wds.shard_index.dataset",
    "ais_wds.pack_plan": "ais_wds.pack.plan",
    "ais_wds.fetch": "ais_wds.objects.fetch",
    "ais_wds.prefetch": "ais_wds.objects.prefetch",
    "ais_wds.distributed": "ais_wds._core.dist",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
                  ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """The new module has already run."""


def install() -> None:
    """Add the finder to ``sys.meta_path`` once per process."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
