"""Pack objects into WebDataset tar shards: the orchestrator.

``pack(sources, "ais://dst/train-%06d.tar")`` plans (lists the sources, :func:`~ais_wds.pack.plan.make_plan`),
chooses the engine (:func:`~ais_wds.pack.engine_choice.choose_engine`), has it build this part's missing
shards (:mod:`ais_wds.pack.engines`), writes the index and returns a :class:`PackReport`:

* a shard becomes visible only once complete, so a crash leaves whole shards or none, and
  ``resume=True`` writes exactly the missing ones (a plan marker object records the plan's
  fingerprint and refuses a resume whose sources or options changed: :mod:`ais_wds.pack.destination`);
* the shard index (msgpack) and its wids descriptor are written by the run that completes the set.

Thread safety: ``pack`` may be called from any thread; its engine runs its own thread pools.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from typing import Any, Callable, List, Optional, Sequence, Union

from ..client import Client
from ..errors import ConfigError
from ..listing import list_objects
from ..shard_index.index import index_from_plan, save_index
from ..urls import expand_urls
from . import destination
from .destination import job_locations
from .engine_choice import choose_engine
from .engines import Engine, Progress
from .engines.client import ClientEngine
from .engines.cluster import ClusterEngine
from .options import PackOptions, resolve
from .plan import Plan, PlannedShard, plan_rows, source_rows
from .report import PackReport

__all__ = ["PackReport", "job_locations", "pack", "plan_pack"]

logger = logging.getLogger(__name__)


def plan_pack(sources: Union[str, Sequence[str]], dst_pattern: str, client: Union[Client, str, None] = None, *,
              options: PackOptions = PackOptions(), strip_prefix: Optional[bool] = None) -> Plan:
    """List ``sources`` and plan the job (no writes). See :func:`pack` for the arguments; ``strip_prefix``
    (default ``options.strip_prefix``) overrides that field.

    Raises:
        EmptyListingError: a source matched nothing. ConfigError / PackError: bad options or template.
    """
    if strip_prefix is not None and strip_prefix != options.strip_prefix:
        options = dataclasses.replace(options, strip_prefix=strip_prefix)
    client = Client.of(client)
    listed = [(source, list_objects(source, client))
              for source in expand_urls([sources] if isinstance(sources, str) else list(sources))]
    rows = (row for source, listing in listed  # one (url, name, size) at a time: the listings are compact
            for row in source_rows(source, listing.urls, listing.sizes, strip_prefix=options.strip_prefix))
    return plan_rows(rows, dst_pattern, options)


def pack(
    sources: Union[str, Sequence[str]],
    dst_pattern: str,
    client: Union[Client, str, None] = None,
    options: Optional[PackOptions] = None,
    *,
    plan: Optional[Plan] = None,
    progress: Optional[Progress] = None,
    on_start: Optional[Callable[[List[PlannedShard]], None]] = None,
    **overrides: Any,
) -> PackReport:
    """Pack the objects under ``sources`` into tar shards named by ``dst_pattern``.

    Args:
        sources: prefix URL(s) of any provider (braces expanded).
        dst_pattern: ``ais://dst/train-%06d.tar`` or ``ais://dst/train-{000000..000099}.tar``.
        client: a :class:`Client` or an endpoint.
        options: a :class:`PackOptions` (default: all defaults).
        plan: a plan made earlier (:func:`plan_pack`) from the same sources with the same planning
            options; skips listing and planning.
        progress: called with running (samples, member data bytes) totals, from worker threads.
        on_start: called with the shards this run is about to write (after resume/overwrite checks).
        **overrides: any :class:`PackOptions` field, e.g. ``pack(src, dst, shard_size="64MiB")``. The
            names of before (``key``, ``shuffle``, ``settings``) still work, with a DeprecationWarning.

    Returns:
        A :class:`PackReport`.

    Raises:
        PackError: plan problems (key conflicts, missing extensions under ``abort``), existing shards
            without resume/overwrite, or a resume with a different plan.
        ConfigError: an unknown or invalid setting, or a ``plan`` made with other planning options.
        PackJobError: (cluster engine) AIS could not build a shard (get-batch or archive job refused,
            aborted, or a shard of the wrong size or layout, after retries); names the shard and cause.
        EmptyListingError, WriteError, ReadError, NotFoundError: from listing, uploads and reads.
            On any error no partial shard is left behind.
    """
    options = resolve(options, overrides)
    client = _pooled(Client.of(client), options)
    if plan is None:
        plan = plan_pack(sources, dst_pattern, client, options=options)
    elif plan.options.plan_fields() != options.plan_fields():
        raise ConfigError("pack: the given plan was made with other planning settings",
                          hint="plan with plan_pack(..., options=) given the same PackOptions, or pass no plan")
    index_url, _, plan_url = job_locations(dst_pattern, options.index)
    report = PackReport(plan, options.part, options.dry_run, plan_url=plan_url)
    _log_plan_warnings(plan)
    if options.dry_run:
        return report
    plan.check()
    mine = plan.part(*options.part)
    choice = choose_engine(options.engine, mine, dst_pattern)
    if choice.note:
        (logger.warning if options.engine == "cluster" else logger.info)(
            "the cluster engine cannot build this plan (%s); using the client engine", choice.note)
    report.engine, report.engine_note = choice.engine, choice.note
    with _engine(choice.engine, client, dst_pattern, options, plan.options.mtime, progress) as engine:
        existing = destination.existing_sizes(dst_pattern, client)
        todo = destination.shards_to_write(plan, mine, existing, plan_url, client, options, report)
        todo = engine.reconcile(mine, existing, todo, report)
        destination.start_job(plan, dst_pattern, existing, index_url, plan_url, client, overwrite=options.overwrite)
        if on_start:
            on_start(todo)
        start = time.monotonic()
        engine.build(todo, report)
        report.seconds = time.monotonic() - start
    if destination.complete(plan, dst_pattern, client, options.part):
        report.index_url, report.wids_url = save_index(index_from_plan(plan), index_url, client)
    else:
        logger.info("other parts are not finished; the index will be written by the last part to finish")
    return report


def _client_parallel(options: PackOptions) -> int:
    return options.parallel_shards or max(1, options.workers // 4)


def _pooled(client: Client, options: PackOptions) -> Client:
    """``client``, or one like it whose pool holds a connection for every GET thread and uploading shard."""
    needed = options.workers + _client_parallel(options)
    return client if client.config.max_pool_size >= needed else Client(client.config, max_pool_size=needed)


def _engine(name: str, client: Client, dst_pattern: str, options: PackOptions, mtime: int,
            progress: Optional[Progress]) -> Engine:
    """The engine ``name``; the cluster engine gets the client engine as its fallback (which then
    reports no progress of its own: the cluster engine counts each shard it completes)."""
    by_client = ClientEngine(client, workers=options.workers, parallel_shards=_client_parallel(options), mtime=mtime,
                             progress=progress if name == "client" else None)
    if name == "client":
        return by_client
    return ClusterEngine(client, dst_pattern, parallel=options.parallel_shards or max(2, options.workers // 2),
                         fallback=by_client, progress=progress)


def _log_plan_warnings(plan: Plan) -> None:
    policy = plan.options.missing_extension
    if plan.unkeyed and policy in ("warn", "abort"):
        logger.warning("%d object(s) have no sample key or extension and are skipped, e.g. %s", len(plan.unkeyed),
                       plan.unkeyed[:3])
    if plan.incomplete and policy == "warn":
        logger.warning("%d sample(s) lack a required extension, e.g. %s", len(plan.incomplete), plan.incomplete[:3])
    if plan.oversize_samples:
        logger.warning("%d sample(s) are larger than the shard size; each gets a shard of its own",
                       plan.oversize_samples)


def __getattr__(name: str) -> Any:
    if name == "PackSettings":  # its name while 0.2 was developed: one settings object now
        warnings.warn("ais_wds.pack.PackSettings is PackOptions now (same fields; key -> key_rule, shuffle -> "
                      "shuffle_seed)", DeprecationWarning, stacklevel=2)
        return PackOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
