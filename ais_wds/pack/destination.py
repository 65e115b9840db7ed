"""The destination of a pack job: what exists there, which shards this run writes, and the job's own
objects (the plan marker, the index location).

A plan marker object (``<stem>.pack-plan.json``) records the plan's fingerprint; a resume whose sources
or options changed is refused by it. Shards are whole or absent (all-or-nothing uploads), so what
exists with the plan's size is complete.

Thread safety: functions without state; call from any thread.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Dict, List, Optional, Tuple

from ..client import Client
from ..listing import list_objects
from ..objects.reader import read_bytes
from ..objects.writer import delete_object, write_bytes
from ..shard_index.index import wids_location
from .options import PackOptions
from .plan import PackError, Plan, PlannedShard, ShardNames
from .report import PackReport

logger = logging.getLogger(__name__)


def job_locations(dst_pattern: str, index: Optional[str] = None) -> Tuple[str, str, str]:
    """``(index URL, wids descriptor URL, plan marker URL)`` for a shard template."""
    stem = ShardNames(dst_pattern).stem_url()
    index = index or f"{stem}.index.msgpack"
    return index, wids_location(index), f"{stem}.pack-plan.json"


def existing_sizes(dst_pattern: str, client: Client) -> Dict[str, int]:
    """URL -> size of the objects whose names start like the shards and the plan marker."""
    prefix = os.path.commonprefix([_listing_prefix(dst_pattern), ShardNames(dst_pattern).stem_url()])
    listing = list_objects(prefix, client, allow_empty=True)
    return dict(zip(listing.urls, listing.sizes))


def shards_to_write(plan: Plan, mine: List[PlannedShard], existing: Dict[str, int], plan_url: str,
                    client: Client, options: PackOptions, report: PackReport) -> List[PlannedShard]:
    """The shards of ``mine`` this run writes; those found complete go to ``report.skipped``.

    Raises:
        PackError: shards of the plan exist and neither ``resume`` nor ``overwrite`` is set, or a resume
            finds the marker of another plan.
    """
    _check_marker(plan, plan_url, existing, client, resume=options.resume, overwrite=options.overwrite)
    present = [s for s in mine if s.url in existing]
    if present and not (options.resume or options.overwrite):
        names = ", ".join(s.url for s in present[:3])
        raise PackError(f"{len(present)} shard(s) of the plan already exist, e.g. {names}",
                        hint="use --resume to write only the missing ones, or --overwrite to replace them")
    if options.overwrite:
        return mine
    todo = []
    for shard in mine:
        if shard.url in existing and existing[shard.url] == shard.size:
            report.skipped.append(shard.url)
        else:
            if shard.url in existing:
                logger.warning("%s exists with %d bytes, the plan says %d: rewriting it", shard.url,
                               existing[shard.url], shard.size)
            todo.append(shard)
    return todo


def start_job(plan: Plan, dst_pattern: str, existing: Dict[str, int], index_url: str, plan_url: str,
              client: Client, *, overwrite: bool) -> None:
    """Before the first shard is written: drop an index that ``overwrite`` makes stale, and write the
    plan marker (unless a resume finds it there)."""
    if overwrite and index_url in existing:
        delete_object(index_url, client)  # it describes the shards about to be replaced
    if plan_url not in existing or overwrite:
        write_bytes(plan_url, _marker(plan, dst_pattern), client)


def complete(plan: Plan, dst_pattern: str, client: Client, part: Tuple[int, int]) -> bool:
    """True when every shard of the whole job exists with its planned size (always, for one part)."""
    if part[1] == 1:
        return True
    existing = existing_sizes(dst_pattern, client)
    return all(existing.get(s.url) == s.size for s in plan.shards)


def _listing_prefix(dst_pattern: str) -> str:
    cut = min((i for i in (dst_pattern.find("%"), dst_pattern.find("{")) if i >= 0), default=len(dst_pattern))
    return dst_pattern[:cut]


def _marker(plan: Plan, dst_pattern: str) -> bytes:
    return json.dumps({"kind": "ais-wds-pack-plan-v1", "fingerprint": plan.fingerprint(), "template": dst_pattern,
                       "shards": len(plan.shards), "samples": plan.num_samples, "bytes": plan.total_size},
                      indent=1).encode()


def _check_marker(plan: Plan, plan_url: str, existing: Dict[str, int], client: Client, *, resume: bool,
                  overwrite: bool) -> None:
    if not resume or overwrite or plan_url not in existing:
        return
    try:
        recorded = json.loads(read_bytes(plan_url, client)).get("fingerprint")
    except (ValueError, AttributeError):
        recorded = None
    if recorded != plan.fingerprint():
        raise PackError("cannot resume: the sources or options changed since the interrupted run "
                        f"(plan {recorded} there, {plan.fingerprint()} now)", url=plan_url,
                        hint="run with the same sources and options, or use --overwrite to rewrite every shard")
