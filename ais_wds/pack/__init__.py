"""Packing loose objects into WebDataset shards in AIS.

* :mod:`ais_wds.pack.plan`: the pure planner (which object goes into which shard, at which offset);
* :mod:`ais_wds.pack.run`: executes a plan (fetch, stream into all-or-nothing shard writers, index).

``from ais_wds.pack import pack`` is the one-call entry point.
"""

from .plan import DEFAULT_SHARD_SIZE, PackOptions, Plan, make_plan
from .run import PackReport, PackSettings, job_locations, pack, plan_pack

__all__ = ["DEFAULT_SHARD_SIZE", "PackOptions", "PackReport", "PackSettings", "Plan", "job_locations", "make_plan",
           "pack", "plan_pack"]
