"""The shuffles of :class:`ais_wds.WebDataset`, wired into its pipeline (the algorithms are in
:mod:`ais_wds.shuffle`).

* :class:`ReaderStage` (the pipeline's first stage after the shard source) turns pieces into samples:
  sequentially (the default: ``piece_samples``), from k shards open at once (``.shuffle(n,
  open_shards=k)``), or, with ``shuffle="samples"``, every sample of the epoch's permutation at its own
  byte range with read-ahead (:func:`global_samples`).
* :class:`BufferStage` is ``.shuffle(n)``: a :class:`~ais_wds.shuffle.buffer.ShuffleBuffer` whose
  checkpoint names the samples it holds; refilled on resume by range reads (with an index) or by reading
  their shards again (without).
* :class:`PassContext` ties one pass together: the plan and cursor of the shard source, what a loaded
  state handed over, and the shuffles' states for ``state_dict``.

State keys added to WebDataset's part state (only where the shuffle is used): ``held`` (the buffer's
references), ``draws`` (its generator), ``open`` (the k-shard entries, open then queued) and ``picks``
(``[generator, entries open]``). A job state keeps ``held`` and ``open`` (concatenated over the parts, see
:data:`ais_wds.epochs.plan.OWED_KEYS`) and the new parts share them out: exactly once.

Thread safety: one pass belongs to one thread (its read-ahead threads are private to it).
"""

from __future__ import annotations

import collections
import itertools
import logging
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..client import Client
from ..epochs.plan import JOB_KIND, PartPlan, slots
from ..errors import ConfigError
from ..shuffle.buffer import ShuffleBuffer, shares
from ..shuffle.global_samples import SampleOrder
from ..shuffle.k_shards import Entry, OpenShards
from ..shuffle.refs import pack_ref
from ..shuffle.rng import SplitMix64
from . import sample_reads

logger = logging.getLogger(__name__)

GLOBAL_CHUNK = 256
"""Positions of the global shuffle located at once (one numpy lookup)."""
OPEN_SHARDS_MEMORY = 32 << 20
"""``open_shards="auto"``: the bytes of read buffers the open shards may take (k = this / a stream's buffer)."""


class PassContext:
    """One pass of one process: the shard source's plan and cursor, what a loaded state handed over
    (``resume``: its ``held``/``draws``/``open``/``picks``, and whether it is a job state), the tar
    stage's settings and the shuffles' live state."""

    def __init__(self, source: Any, plan: PartPlan, cursor: Any, client: Client, tar_kw: Dict[str, Any],
                 resume: Optional[Dict[str, Any]]):
        self.source = source
        self.plan = plan
        self.cursor = cursor
        self.client = client
        self.tar_kw = tar_kw
        self.resume = resume or {}
        self.last_ref: Optional[int] = None  # set by readers that know each sample's reference
        self.buffer: Optional[ShuffleBuffer] = None
        self.open: Optional[OpenShards] = None

    @property
    def from_job(self) -> bool:
        return self.resume.get("kind") == JOB_KIND

    @property
    def part(self) -> Tuple[int, int]:
        """(this part's number, parts) in the shape running now (rank-major)."""
        plan = self.plan
        return plan.rank * plan.num_workers + plan.worker, plan.world_size * plan.num_workers

    def handed(self, key: str) -> List[Any]:
        """What the loaded state owes this part under ``key``: all of it from a part state, this part's
        share from a job state."""
        owed = list(self.resume.get(key) or ())
        return shares(owed, *self.part) if self.from_job else owed

    def private(self, key: str) -> Any:
        """A loaded part state's private value (None from a job state: the parts were others)."""
        return None if self.from_job else self.resume.get(key)

    def seed(self, what: str) -> SplitMix64:
        plan = self.plan
        return SplitMix64.seeded("ais_wds", what, self.source.seed, plan.epoch, len(plan.layers), plan.rank,
                                 plan.worker)

    def ref(self) -> int:
        """The reference of the sample the reader handed out last."""
        if self.last_ref is not None:
            return self.last_ref
        cursor = self.cursor
        return pack_ref(cursor.shard, cursor.base + cursor.count - 1)

    # -- reading samples back by reference -----------------------------------------------------------------
    def read_refs(self, refs: Sequence[int]) -> List[Dict[str, Any]]:
        """Raw samples (the tar stage's dicts) named by ``refs``, in that order."""
        counts, urls = self.source.counts, self.source.urls
        if counts is not None:
            return sample_reads.read_indexed(self.client, self.sample_range, refs, **self.tar_kw)
        return sample_reads.reread(self.client, urls, refs, **self.tar_kw)

    def sample_range(self, shard: int, sample: int) -> sample_reads.Range:
        """``(url, start, length)`` of one sample."""
        start, end = self.source.counts.sample_bytes(shard, sample, sample + 1)
        return self.source.urls[shard], start, end - start

    def open_entry(self, entry: Entry) -> Iterator[Dict[str, Any]]:
        """The samples of a k-shard entry from its next sample on (lazy)."""
        shard, first, stop = entry
        url = self.source.urls[shard]
        counts = self.source.counts
        if stop >= 0 and first >= stop:
            return iter(())
        if counts is None:
            return sample_reads.open_from(self.client, url, skip=first, **self.tar_kw)
        start, end = counts.sample_bytes(shard, first, stop if stop >= 0 else counts.counts[shard])
        return sample_reads.open_from(self.client, url, skip=0, start=start, end=end, **self.tar_kw)

    def state(self) -> Dict[str, Any]:
        """The shuffles' part of this pass's state (empty without a shuffle stage)."""
        out: Dict[str, Any] = {}
        if self.buffer is not None:
            out.update(self.buffer.state())
        if self.open is not None:
            entries, opened, picks = self.open.state()
            out["open"] = entries
            out["picks"] = [picks, opened]
        return out


class ReaderStage:
    """Pieces from the shard source -> samples. ``open_shards``: None (sequential) or k (k-shard shuffle)."""

    def __init__(self, client: Client, tar_kw: Dict[str, Any], sequential: Callable[..., Iterator[Any]],
                 open_shards: Optional[int] = None):
        self.client = client
        self.tar_kw = tar_kw
        self.sequential = sequential
        self.open_shards = open_shards

    def with_open_shards(self, k: Optional[int]) -> ReaderStage:
        return ReaderStage(self.client, self.tar_kw, self.sequential, k)

    def start(self, pieces: Iterator[Dict[str, Any]], ctx: PassContext) -> Iterator[Any]:
        if ctx.source.global_order:
            if self.open_shards:
                raise ConfigError("shuffle='samples' with .shuffle(n, open_shards=k): the global shuffle "
                                  "reads single samples, it opens no shard", hint="drop open_shards")
            return global_samples(pieces, ctx)
        if self.open_shards:
            return k_shard_samples(pieces, ctx, self.open_shards)
        if ctx.resume.get("open"):
            raise ConfigError("this state was taken with .shuffle(n, open_shards=k): resume with the same pipeline")
        return self.sequential(pieces, client=self.client, **self.tar_kw)


class BufferStage:
    """``.shuffle(size, initial)``: a shuffle buffer whose state names what it holds (see the module)."""

    def __init__(self, size: int, initial: Optional[int]):
        ShuffleBuffer(size, SplitMix64(0), initial)  # validates
        self.size = size
        self.initial = initial

    def start(self, source: Iterator[Any], ctx: PassContext, between: Callable[[Iterator[Any]], Iterator[Any]]
              ) -> Iterator[Any]:
        """Begin the buffer of this pass, refilled now with what the loaded state held (its samples read
        back and passed through the stages ``between`` the reader and this one)."""
        buffer = ShuffleBuffer(self.size, ctx.seed("buffer"), self.initial)
        held = [int(r) for r in ctx.handed("held")]
        if held:
            raw = ctx.read_refs(held)
            items = list(between(iter(raw)))
            buffer.restore(items, held, ctx.private("draws"))
            logger.debug("shuffle buffer refilled with %d samples", len(items))
        ctx.buffer = buffer
        return buffer.shuffle(_with_refs(source, ctx))


def _with_refs(source: Iterable[Any], ctx: PassContext) -> Iterator[Tuple[Any, int]]:
    ref = ctx.ref
    for item in source:
        yield item, ref()


def k_shard_samples(pieces: Iterator[Dict[str, Any]], ctx: PassContext, k: int) -> Iterator[Any]:
    """Samples drawn from k shards open at once (see :mod:`ais_wds.shuffle.k_shards`). The plan counts a
    piece consumed when its shard is opened; the open entries are the part's state."""
    picks = ctx.private("picks")
    rng = SplitMix64(int(picks[0])) if picks else ctx.seed("open_shards")
    shards = OpenShards(k, rng)
    ctx.open = shards
    entries = ctx.handed("open")
    shards.restore(entries, int(picks[1]) if picks else 0, ctx.open_entry)
    cursor = ctx.cursor
    cursor.external = True
    cursor.count = 0

    def pending() -> Iterator[Entry]:
        for piece in pieces:
            cursor.done += piece["slots"]
            yield [piece["shard"], piece["first"], piece["stop"]]

    def run() -> Iterator[Any]:
        try:
            for item, ref in shards.interleave(pending(), ctx.open_entry):
                ctx.last_ref = ref
                yield item
        finally:
            shards.close()

    return run()


def global_samples(pieces: Iterator[Dict[str, Any]], ctx: PassContext) -> Iterator[Any]:
    """``shuffle="samples"``: this part's positions of the epoch's sample permutation, each sample read at
    its byte range (batched, with read-ahead: :func:`ais_wds.streaming.sample_reads.read_in_order`),
    counted as each is handed out."""
    piece = next(pieces)
    order: SampleOrder = piece["order"]
    runs = piece["runs"]
    cursor = ctx.cursor
    cursor.count = 0
    located: Deque[Tuple[int, int]] = collections.deque()

    def ranges() -> Iterator[sample_reads.Range]:
        batch: List[int] = []
        for pos in itertools.chain(slots(runs), [None]):
            if pos is not None:
                batch.append(pos)
                if len(batch) < GLOBAL_CHUNK:
                    continue
            for shard, sample in order.locate(batch):
                located.append((shard, sample))
                yield ctx.sample_range(shard, sample)
            batch = []

    def run() -> Iterator[Any]:
        urls, tar_kw = ctx.source.urls, ctx.tar_kw
        datas = sample_reads.read_in_order(ctx.client, ranges())
        try:
            for data in datas:
                shard, sample = located.popleft()
                item = sample_reads.sample_of(urls[shard], data, **tar_kw)
                cursor.done += 1
                ctx.last_ref = pack_ref(shard, sample)
                yield item
        finally:
            close = getattr(datas, "close", None)
            if close is not None:
                close()

    return run()


__all__ = ["BufferStage", "PassContext", "ReaderStage", "global_samples", "k_shard_samples"]
