"""Packing loose objects into WebDataset shards in AIS.

* :mod:`ais_wds.pack.options`: :class:`PackOptions`, every setting of a job in one value;
* :mod:`ais_wds.pack.plan`: the pure planner (which object goes into which shard, at which offset);
* :mod:`ais_wds.pack.engine_choice`: which engine builds the shards (pure);
* :mod:`ais_wds.pack.engines`: the engines behind one interface, ``client`` (this process fetches and
  writes) and ``cluster`` (AIS assembles);
* :mod:`ais_wds.pack.destination`: what exists at the destination, resume checks, the plan marker;
* :mod:`ais_wds.pack.run`: the orchestrator, :func:`pack` (plan -> engine -> index -> :class:`PackReport`).

``from ais_wds.pack import pack`` is the one-call entry point.
"""

from typing import Any

from .options import DEFAULT_SHARD_SIZE, PackOptions
from .plan import Plan, make_plan
from .report import PackReport
from .run import job_locations, pack, plan_pack

__all__ = ["DEFAULT_SHARD_SIZE", "PackOptions", "PackReport", "Plan", "job_locations", "make_plan", "pack",
           "plan_pack"]


def __getattr__(name: str) -> Any:
    if name == "PackSettings":  # deprecated: PackOptions (the warning comes from run)
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
