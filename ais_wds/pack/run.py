"""Pack objects into WebDataset tar shards: execution of a :mod:`ais_wds.pack.plan` plan.

``pack(sources, "ais://dst/train-%06d.tar")`` lists the sources, makes the (deterministic) plan, then
writes this part's shards:

* members are fetched by a pool of ``workers`` GET threads, ahead of the writer, within a byte
  window per shard (whole objects straight from their target with :class:`ais_wds._core.fetch.DirectGetter`;
  objects over 8 MiB as resuming ranged chunks), and streamed into an
  all-or-nothing writer (:func:`ais_wds.writer.open_writer`) whose multipart parts are uploaded as
  they fill; memory is bounded by ``parallel_shards x (window + 2 x part size)`` whatever the
  shard size;
* a shard becomes visible only once complete, so a crash leaves whole shards or none, and
  ``resume=True`` writes exactly the missing ones (a plan marker object records the plan's
  fingerprint and refuses a resume whose sources or options changed);
* the shard index (msgpack) and its wids descriptor are written by the run that completes the set.

Thread safety: ``pack`` may be called from any thread; it runs its own thread pools.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..client import Client
from ..errors import AISWdsError, ConfigError, ReadError
from ..listing import list_objects
from ..objects.fetch import DirectGetter
from ..objects.reader import read_bytes, read_range
from ..objects.writer import DEFAULT_PART_SIZE, delete_object, open_writer, write_bytes
from ..shard_index.index import index_from_plan, save_index, wids_location
from ..tar import writer as tarwrite
from ..urls import expand_urls
from .cluster import Stopped, build_shards, cluster_unsupported, first_failure, proven
from .plan import (
    DEFAULT_SHARD_SIZE,
    KeyRule,
    PackError,
    PackOptions,
    Plan,
    PlannedMember,
    PlannedShard,
    ShardNames,
    iter_source_objects,
    make_plan,
    parse_size,
)

logger = logging.getLogger(__name__)

CHUNK_SIZE = 8 << 20
"""Objects larger than this are fetched as ranged chunks of this size."""
ENGINES = ("auto", "client", "cluster")
AUTO_CLUSTER_MAX_MEMBER = 128 << 10
"""``engine="auto"`` picks the cluster engine only when members average at most this many bytes: at
10 KiB it measured 3x the client engine's MB/s, at 100 KiB about the same, at 256 KiB and 1 MiB less
(docs/pack.md)."""
DEFAULT_WINDOW = 32 << 20
"""Bytes fetched ahead of the writer, per shard being written."""

Progress = Callable[[int, int], None]
"""``progress(samples_done, bytes_done)``: running totals of this run, called from worker threads."""


@dataclass
class PackReport:
    """What :func:`pack` planned and did.

    Attributes:
        plan: the whole job's plan (all parts).
        part: ``(I, N)`` of this run.
        dry_run: nothing was written.
        written, skipped: shard URLs this run wrote / found complete already (resume).
        samples, bytes: samples and shard bytes this run wrote.
        seconds: wall time of the writing phase.
        index_url, wids_url: where the index and descriptor were written (None when this run did not
            write them: dry run, or other parts still missing).
        plan_url: the plan marker object.
        engine: the engine that built the shards (``"client"`` or ``"cluster"``).
        engine_note: why the cluster engine was not used (asked for, or the ``auto`` default's choice).
        archived: shards the cluster engine built with AIS archive jobs (nothing through the client).
        batched: shards the cluster engine built with AIS get-batch (streamed through into the upload).
        rebuilt: shards an archive job built in another member order, deleted and built by get-batch.
        by_client: shards the cluster engine left to the client engine after their get-batch replies kept
            breaking (cut, short or refused; a warning names each shard and the cause).
    """

    plan: Plan
    part: Tuple[int, int] = (0, 1)
    dry_run: bool = False
    written: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    samples: int = 0
    bytes: int = 0
    seconds: float = 0.0
    index_url: Optional[str] = None
    wids_url: Optional[str] = None
    plan_url: Optional[str] = None
    engine: str = "client"
    engine_note: Optional[str] = None
    archived: List[str] = field(default_factory=list)
    batched: List[str] = field(default_factory=list)
    rebuilt: List[str] = field(default_factory=list)
    by_client: List[str] = field(default_factory=list)

    @property
    def bytes_per_second(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


def job_locations(dst_pattern: str, index: Optional[str] = None) -> Tuple[str, str, str]:
    """``(index URL, wids descriptor URL, plan marker URL)`` for a shard template."""
    stem = ShardNames(dst_pattern).stem_url()
    index = index or f"{stem}.index.msgpack"
    return index, wids_location(index), f"{stem}.pack-plan.json"


@dataclass(frozen=True)
class PackSettings:
    """Every setting of a pack job, in one value (the CLI's flags map onto it one to one).

    Planning (they decide the plan; see :class:`~ais_wds.pack.plan.PackOptions`):
        shard_size: target shard size (bytes or ``"256MiB"``); a shard exceeds it only when it holds
            one sample larger than the target.
        samples_per_shard: fixed number of samples per shard instead of a size.
        key: sample key rule: ``"wds"`` (webdataset's), ``"stem"`` or a regex with one group
            (see :class:`~ais_wds.pack.plan.KeyRule`).
        exts: extensions every sample should have; ``missing_extension`` says what to do when one is
            missing (``ignore``, ``warn``, ``abort``, ``exclude``; the same policy covers objects
            whose names yield no key or extension: they are skipped, or abort the job).
        shuffle: seed for a deterministic shuffle of the sample order (None keeps key order).
        strip_prefix: member names without the directory part of the source prefix.
        mtime: integer mtime of every member (0 makes shards byte-reproducible).

    Execution:
        dry_run: plan and report only; write nothing.
        workers: parallel GET requests.
        parallel_shards: shards written (PUT) at once; default ``max(1, workers // 4)``.
        resume: skip shards that already exist complete (same plan); write the others.
        overwrite: replace existing shards. Without ``resume`` or ``overwrite``, an existing shard of
            the plan is an error.
        part: ``(I, N)``: write only shards whose number is I modulo N (N machines, same arguments).
        index: where to write the shard index (default ``<stem>.index.msgpack`` beside the shards).
        engine: ``"auto"`` (default: ``"cluster"`` when the cluster engine can build the plan, i.e.
            source and destination are ``ais://`` buckets of one AIS cluster and members keep their
            object names, and the first shard's members average at most :data:`AUTO_CLUSTER_MAX_MEMBER`
            bytes (128 KiB);
            else ``"client"``), ``"client"`` (GET every member into this process, PUT
            the shards) or ``"cluster"`` (AIS assembles each shard in plan order, with an archive job
            or get-batch; see :mod:`ais_wds.pack.cluster`). A plan the cluster engine cannot build
            (renamed members, several source buckets per shard, ...) is built by the client engine;
            ``"auto"`` also leaves cloud sources to the client engine (``"cluster"`` has AIS prefetch
            them first); ``PackReport.engine_note`` says why (a warning when ``"cluster"`` was asked
            for). The cluster engine writes the objects' mtimes, not ``mtime``.
    """

    shard_size: Union[int, str] = DEFAULT_SHARD_SIZE
    samples_per_shard: Optional[int] = None
    key: str = "wds"
    exts: Sequence[str] = ()
    missing_extension: str = "warn"
    shuffle: Optional[int] = None
    strip_prefix: bool = False
    mtime: int = 0
    dry_run: bool = False
    workers: int = 16
    parallel_shards: Optional[int] = None
    resume: bool = False
    overwrite: bool = False
    part: Tuple[int, int] = (0, 1)
    index: Optional[str] = None
    engine: str = "auto"

    def plan_options(self) -> PackOptions:
        """The :class:`PackOptions` these settings plan with.

        Raises:
            ConfigError: an invalid value.
        """
        return PackOptions(shard_size=parse_size(self.shard_size), samples_per_shard=self.samples_per_shard,
                           key_rule=KeyRule.parse(self.key), exts=tuple(self.exts),
                           missing_extension=self.missing_extension, shuffle_seed=self.shuffle, mtime=self.mtime)


def plan_pack(sources: Union[str, Sequence[str]], dst_pattern: str, client: Union[Client, str, None] = None, *,
              options: PackOptions = PackOptions(), strip_prefix: bool = False) -> Plan:
    """List ``sources`` and plan the job (no writes). See :func:`pack` for the arguments.

    Raises:
        EmptyListingError: a source matched nothing. ConfigError / PackError: bad options or template.
    """
    client = Client.of(client)
    listed = [(source, list_objects(source, client))
              for source in expand_urls([sources] if isinstance(sources, str) else list(sources))]
    objects = (obj for source, listing in listed  # one SourceObject at a time: the listings are compact
               for obj in iter_source_objects(source, listing.urls, listing.sizes, strip_prefix=strip_prefix))
    return make_plan(objects, dst_pattern, options)


def pack(
    sources: Union[str, Sequence[str]],
    dst_pattern: str,
    client: Union[Client, str, None] = None,
    settings: Optional[PackSettings] = None,
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
        settings: a :class:`PackSettings` (default: all defaults).
        plan: a plan made earlier (:func:`plan_pack`) from the same sources with the same planning
            settings; skips listing and planning.
        progress: called with running (samples, member data bytes) totals, from worker threads.
        on_start: called with the shards this run is about to write (after resume/overwrite checks).
        **overrides: any :class:`PackSettings` field, e.g. ``pack(src, dst, shard_size="64MiB")``.

    Returns:
        A :class:`PackReport`.

    Raises:
        PackError: plan problems (key conflicts, missing extensions under ``abort``), existing shards
            without resume/overwrite, or a resume with a different plan.
        ConfigError: an unknown or invalid setting, or a ``plan`` made with other planning settings.
        PackJobError: (cluster engine) AIS could not build a shard (get-batch or archive job refused,
            aborted, or a shard of the wrong size or layout, after retries); names the shard and cause.
        EmptyListingError, WriteError, ReadError, NotFoundError: from listing, uploads and reads.
            On any error no partial shard is left behind.
    """
    try:
        settings = dataclasses.replace(settings or PackSettings(), **overrides)
    except TypeError as e:
        raise ConfigError(f"pack: {e}", hint="settings are the fields of PackSettings") from None
    client = Client.of(client)
    workers, index, part = settings.workers, settings.index, settings.part
    parallel_shards = settings.parallel_shards or max(1, workers // 4)
    if client.config.max_pool_size < workers + parallel_shards:
        # every GET thread and every uploading shard holds a connection: size the pool for them
        client = Client(client.config, max_pool_size=workers + parallel_shards)
    options = settings.plan_options()
    if plan is None:
        plan = plan_pack(sources, dst_pattern, client, options=options, strip_prefix=settings.strip_prefix)
    elif plan.options != options:
        raise ConfigError("pack: the given plan was made with other planning settings",
                          hint="plan with plan_pack(..., options=settings.plan_options()) or pass no plan")
    index_url, _, plan_url = job_locations(dst_pattern, index)
    report = PackReport(plan, part, settings.dry_run, plan_url=plan_url)
    _log_plan_warnings(plan)
    if settings.engine not in ENGINES:
        raise ConfigError(f"pack: engine must be one of {ENGINES}, got {settings.engine!r}")
    if settings.dry_run:
        return report
    plan.check()
    mine = plan.part(*part)
    engine = settings.engine
    if engine in ("auto", "cluster"):
        members = [m for x in (mine[0].samples if mine else []) for m in x.members]  # the first shard's
        mean = sum(m.size for m in members) / max(1, len(members))
        scheme = members[0].source.split("://", 1)[0] if members else "ais"
        if engine == "auto" and scheme != "ais":
            report.engine_note = (f"{scheme}:// sources: auto uses the client engine (--engine cluster has AIS "
                                  "prefetch the objects and assemble the shards)")
        elif engine == "auto" and mean > AUTO_CLUSTER_MAX_MEMBER:
            report.engine_note = (f"members average {mean / 1024:.0f} KiB; above {AUTO_CLUSTER_MAX_MEMBER >> 10} KiB "
                                  "the client engine measured faster (--engine cluster forces the cluster engine)")
        else:
            report.engine_note = cluster_unsupported(mine, dst_pattern)
        if report.engine_note:
            (logger.warning if engine == "cluster" else logger.info)(
                "the cluster engine cannot build this plan (%s); using the client engine", report.engine_note)
        engine = "client" if report.engine_note else "cluster"
    report.engine = engine
    existing = _existing_sizes(dst_pattern, client)
    resume, overwrite = settings.resume, settings.overwrite
    _check_marker(plan, plan_url, existing, client, resume=resume, overwrite=overwrite)
    todo = _select_shards(mine, existing, resume=resume, overwrite=overwrite, report=report)
    if engine == "cluster":
        todo = _prove_existing(mine, existing, todo, client, report)
    if overwrite and index_url in existing:
        delete_object(index_url, client)  # it describes the shards about to be replaced
    if plan_url not in existing or overwrite:
        write_bytes(plan_url, _marker(plan, dst_pattern), client)
    if on_start:
        on_start(todo)
    start = time.monotonic()
    if engine == "cluster":
        totals = _Totals(progress)

        def done(shard: PlannedShard) -> None:
            _count(report, shard)
            totals.add(shard.num_samples, sum(x.data_size for x in shard.samples) if progress else 0)

        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="pack-get") as gets:
            fetch, quiet = _Fetcher(client), _Totals(None)  # done() counts the shard's progress

            def by_client(shard: PlannedShard, stop: threading.Event) -> None:  # get-batch kept breaking
                _ShardJob(shard, client, gets, fetch, plan.options.mtime, stop, quiet, DEFAULT_WINDOW).run()

            built = build_shards(todo, client, lambda: _existing_sizes(dst_pattern, client),
                                 parallel=settings.parallel_shards or max(2, workers // 2), on_done=done,
                                 fallback=by_client)
        report.archived, report.batched, report.rebuilt = built.archived, built.batched, built.misordered
        report.by_client = built.by_client
    else:
        _write_shards(todo, client, plan.options.mtime, workers, parallel_shards, progress, report)
    report.seconds = time.monotonic() - start
    if _complete(plan, dst_pattern, client, part):
        report.index_url, report.wids_url = save_index(index_from_plan(plan), index_url, client)
    else:
        logger.info("other parts are not finished; the index will be written by the last part to finish")
    return report


# --------------------------------------------------------------------------------------------
# destination checks


def _listing_prefix(dst_pattern: str) -> str:
    cut = min((i for i in (dst_pattern.find("%"), dst_pattern.find("{")) if i >= 0), default=len(dst_pattern))
    return dst_pattern[:cut]


def _existing_sizes(dst_pattern: str, client: Client) -> Dict[str, int]:
    """URL -> size of the objects whose names start like the shards and the plan marker."""
    prefix = os.path.commonprefix([_listing_prefix(dst_pattern), ShardNames(dst_pattern).stem_url()])
    listing = list_objects(prefix, client, allow_empty=True)
    return dict(zip(listing.urls, listing.sizes))


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


def _select_shards(mine: List[PlannedShard], existing: Dict[str, int], *, resume: bool, overwrite: bool,
                   report: PackReport) -> List[PlannedShard]:
    present = [s for s in mine if s.url in existing]
    if present and not (resume or overwrite):
        names = ", ".join(s.url for s in present[:3])
        raise PackError(f"{len(present)} shard(s) of the plan already exist, e.g. {names}",
                        hint="use --resume to write only the missing ones, or --overwrite to replace them")
    if overwrite:
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


def _prove_existing(mine: List[PlannedShard], existing: Dict[str, int], todo: List[PlannedShard], client: Client,
                    report: PackReport) -> List[PlannedShard]:
    """Cluster engine: shards found complete are proven (an interrupted run may have left one that AIS
    built in another order); the unproven ones are deleted and rebuilt. Shards of the wrong size go too."""
    todo_urls = {s.url for s in todo}
    out = list(todo)
    for shard in mine:
        if shard.url in report.skipped and not proven(shard, client):
            logger.info("%s: exists but its layout is not the plan's; rebuilding it", shard.url)
            report.skipped.remove(shard.url)
            delete_object(shard.url, client)
            out.append(shard)
        elif shard.url in todo_urls and shard.url in existing:
            delete_object(shard.url, client)
    return out


def _count(report: PackReport, shard: PlannedShard) -> None:
    report.written.append(shard.url)
    report.samples += shard.num_samples
    report.bytes += shard.size


def _complete(plan: Plan, dst_pattern: str, client: Client, part: Tuple[int, int]) -> bool:
    if part[1] == 1:
        return True
    existing = _existing_sizes(dst_pattern, client)
    return all(existing.get(s.url) == s.size for s in plan.shards)


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


# --------------------------------------------------------------------------------------------
# writing


class _Totals:
    def __init__(self, progress: Optional[Progress]):
        self._lock = threading.Lock()
        self._progress = progress
        self.samples = 0
        self.bytes = 0

    def add(self, samples: int, nbytes: int) -> None:
        with self._lock:
            self.samples += samples
            self.bytes += nbytes
            if self._progress:
                self._progress(self.samples, self.bytes)


class _Fetcher:
    """GETs of member pieces: whole objects through the core's direct-to-target getter, chunks of
    large objects as resuming range reads."""

    def __init__(self, client: Client):
        self.client = client
        self.getter = DirectGetter(client)

    def __call__(self, url: str, start: int, end: int, whole: bool) -> Union[bytes, bytearray]:
        """Bytes [start, end) of ``url``; ``whole``: the object must be exactly ``end`` bytes long.

        Raises:
            ReadError: the object's size changed since listing. Other AISWdsError: from the read.
        """
        if not whole:
            return read_range(url, start, end, self.client)
        data = self.getter.get(url)
        if isinstance(data, AISWdsError):
            raise data
        if len(data) != end:
            raise ReadError(f"object size changed since listing ({len(data)} bytes, expected {end})", url=url,
                            hint="re-run the pack; the source changed while packing")
        return data


def _pieces(member: PlannedMember) -> List[Tuple[int, int, bool]]:
    if member.size <= CHUNK_SIZE:
        return [(0, member.size, True)] if member.size else []
    return [(s, min(s + CHUNK_SIZE, member.size), False) for s in range(0, member.size, CHUNK_SIZE)]




_HEADER, _DATA, _TAIL = range(3)
_ZEROS = bytes(tarwrite.BLOCK)


class _ShardJob:
    """Writes one shard: member pieces are fetched in order, ahead of the writer, within a byte window."""

    def __init__(self, shard: PlannedShard, client: Client, gets: ThreadPoolExecutor, fetch: _Fetcher, mtime: int,
                 stop: threading.Event, totals: _Totals, window: int):
        self.shard, self.client, self.gets, self.fetch, self.mtime = shard, client, gets, fetch, mtime
        self.stop, self.totals, self.window = stop, totals, window

    def _members(self) -> Iterator[Tuple[bool, PlannedMember]]:
        for sample in self.shard.samples:
            last = len(sample.members) - 1
            for i, member in enumerate(sample.members):
                yield i == last, member

    def run(self) -> None:
        """Raises: Stopped, ReadError, WriteError, NotFoundError. Commits the shard only on success."""
        shard = self.shard
        writer = open_writer(shard.url, self.client, part_size=DEFAULT_PART_SIZE)
        steps: Deque[Tuple[int, object, int]] = deque()
        members = self._members()
        inflight = 0

        def fill() -> None:
            nonlocal inflight
            while inflight < self.window:
                item = next(members, None)
                if item is None:
                    return
                sample_ends, member = item
                steps.append((_HEADER, member, member.header_size))
                for start, end, whole in _pieces(member):
                    steps.append((_DATA, self.gets.submit(self.fetch, member.source, start, end, whole),
                                  end - start))
                    inflight += end - start
                steps.append((_TAIL, sample_ends, tarwrite.padding(member.size)))

        written = 0
        try:
            fill()
            while steps:
                if self.stop.is_set():
                    raise Stopped()
                kind, payload, nbytes = steps.popleft()
                if kind == _HEADER:
                    member = payload
                    writer.write(tarwrite.member_header(member.name, member.size, mtime=self.mtime))  # type: ignore
                elif kind == _DATA:
                    data = payload.result()  # type: ignore[attr-defined]
                    inflight -= nbytes
                    fill()
                    writer.write(data)
                    self.totals.add(0, nbytes)
                else:
                    if nbytes:
                        writer.write(_ZEROS[:nbytes])
                    if payload:
                        self.totals.add(1, 0)
                written += nbytes
            writer.write(tarwrite.END_OF_ARCHIVE)
            written += len(tarwrite.END_OF_ARCHIVE)
            if written != shard.size:
                raise AISWdsError(f"internal error: wrote {written} bytes, the plan says {shard.size}", url=shard.url)
            writer.close()
        except BaseException:
            writer.abort()
            for kind, payload, _ in steps:
                if kind == _DATA:
                    payload.cancel()  # type: ignore[attr-defined]
            raise


def _write_shards(todo: List[PlannedShard], client: Client, mtime: int, workers: int, parallel_shards: int,
                  progress: Optional[Progress], report: PackReport) -> None:
    totals = _Totals(progress)
    stop = threading.Event()

    def ok(shard: PlannedShard) -> None:
        _count(report, shard)
        logger.debug("wrote %s (%d samples, %d bytes)", shard.url, len(shard.samples), shard.size)

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="pack-get") as gets, \
            ThreadPoolExecutor(max(1, parallel_shards), thread_name_prefix="pack-put") as puts:
        fetch = _Fetcher(client)
        first_failure({puts.submit(_ShardJob(s, client, gets, fetch, mtime, stop, totals, DEFAULT_WINDOW).run): s
                       for s in todo}, stop, ok)
