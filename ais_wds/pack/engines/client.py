"""The client engine of ``pack``: this process builds every shard from the loose objects.

Members are fetched by a pool of ``workers`` GET threads, ahead of the writer, within a byte window per
shard (whole objects straight from their target with :class:`ais_wds.objects.fetch.DirectGetter`;
objects over :data:`CHUNK_SIZE` as resuming ranged chunks), and streamed into an all-or-nothing writer
(:func:`ais_wds.objects.writer.open_writer`) whose multipart parts are uploaded as they fill; memory is
bounded by ``parallel_shards x (window + 2 x part size)`` whatever the shard size. A shard becomes
visible only once complete. Honours ``mtime`` (byte-reproducible shards).

Thread safety: :meth:`ClientEngine.build_shard` may be called from several threads at once (they share
the GET pool); :meth:`ClientEngine.build` one call at a time.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Deque, Iterator, List, Optional, Tuple, Union

from ...client import Client
from ...errors import AISWdsError, ReadError
from ...objects.fetch import DirectGetter
from ...objects.reader import read_range
from ...objects.writer import DEFAULT_PART_SIZE, open_writer
from ...tar import writer as tarwrite
from ..plan import PlannedMember, PlannedShard
from ..report import PackReport
from . import Engine, Progress, Stopped, Totals, first_failure

logger = logging.getLogger(__name__)

CHUNK_SIZE = 8 << 20
"""Objects larger than this are fetched as ranged chunks of this size."""
DEFAULT_WINDOW = 32 << 20
"""Bytes fetched ahead of the writer, per shard being written."""


class ClientEngine(Engine):
    """Builds shards by GETting their members into this process and PUTting the shards.

    Args:
        client: the :class:`Client` (its pool should hold ``workers + parallel_shards`` connections).
        workers: parallel GET requests (one pool, shared by the shards being written).
        parallel_shards: shards written at once by :meth:`build`.
        mtime: the mtime of every member header.
        progress: called with running (samples, member data bytes) totals, from worker threads.
    """

    name = "client"

    def __init__(self, client: Client, *, workers: int, parallel_shards: int, mtime: int,
                 progress: Optional[Progress] = None, window: int = DEFAULT_WINDOW):
        self.client, self.parallel_shards, self.mtime, self.window = client, parallel_shards, mtime, window
        self._totals = Totals(progress)
        self._fetch = _Fetcher(client)
        self._gets = ThreadPoolExecutor(max(1, workers), thread_name_prefix="pack-get")  # threads start on use

    def build(self, shards: List[PlannedShard], report: PackReport) -> None:
        """Write ``shards``, ``parallel_shards`` at a time; the first failure stops the others."""
        stop = threading.Event()
        with ThreadPoolExecutor(max(1, self.parallel_shards), thread_name_prefix="pack-put") as puts:
            first_failure({puts.submit(self.build_shard, s, stop): s for s in shards}, stop, report.count)

    def build_shard(self, shard: PlannedShard, stop: threading.Event) -> None:
        _ShardJob(shard, self, stop).run()
        logger.debug("wrote %s (%d samples, %d bytes)", shard.url, shard.num_samples, shard.size)

    def close(self) -> None:
        self._gets.shutdown(wait=True)


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

    def __init__(self, shard: PlannedShard, engine: ClientEngine, stop: threading.Event):
        self.shard, self.engine, self.stop = shard, engine, stop
        self.steps: Deque[Tuple[int, object, int]] = deque()
        self.members = self._members()
        self.inflight = 0  # bytes submitted to the GET pool and not yet written

    def _members(self) -> Iterator[Tuple[bool, PlannedMember]]:
        for sample in self.shard.samples:
            last = len(sample.members) - 1
            for i, member in enumerate(sample.members):
                yield i == last, member

    def _fill(self) -> None:
        """Queue the next members' steps until the window is full (their GETs start now)."""
        engine = self.engine
        while self.inflight < engine.window:
            item = next(self.members, None)
            if item is None:
                return
            sample_ends, member = item
            self.steps.append((_HEADER, member, member.header_size))
            for start, end, whole in _pieces(member):
                self.steps.append((_DATA, engine._gets.submit(engine._fetch, member.source, start, end, whole),
                                   end - start))
                self.inflight += end - start
            self.steps.append((_TAIL, sample_ends, tarwrite.padding(member.size)))

    def run(self) -> None:
        """Raises: Stopped, ReadError, WriteError, NotFoundError. Commits the shard only on success."""
        shard, steps, totals, mtime = self.shard, self.steps, self.engine._totals, self.engine.mtime
        writer = open_writer(shard.url, self.engine.client, part_size=DEFAULT_PART_SIZE)
        written = 0
        try:
            self._fill()
            while steps:
                if self.stop.is_set():
                    raise Stopped()
                kind, payload, nbytes = steps.popleft()
                if kind == _HEADER:
                    member = payload
                    writer.write(tarwrite.member_header(member.name, member.size, mtime=mtime))  # type: ignore
                elif kind == _DATA:
                    data = payload.result()  # type: ignore[attr-defined]
                    self.inflight -= nbytes
                    self._fill()
                    writer.write(data)
                    totals.add(0, nbytes)
                else:
                    if nbytes:
                        writer.write(_ZEROS[:nbytes])
                    if payload:
                        totals.add(1, 0)
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
