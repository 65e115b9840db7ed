"""``ais_wds.WebDataset``: the ready pipeline for streaming tar shards from AIS, right by default.

Where plain ``wds.WebDataset`` bites, this one:

* takes the DDP rank where it is built (torch.distributed, RANK/WORLD_SIZE or SLURM; or ``rank=`` /
  ``world_size=``) and carries it to the DataLoader workers, so spawned workers split right too;
* splits the epoch into contiguous, balanced shares per rank then per worker: every shard exactly once
  per epoch across all (rank, worker) parts. With a shard index (``index=``: ``ais-wds pack`` writes
  one, ``ais-wds index`` makes one for any shards) the split is by sample, so ``even=`` gives every rank
  exactly the same number of samples, and a share that starts inside a shard starts there with a range
  GET;
* shuffles shards in a different order every epoch, deterministically from ``seed`` (same on every rank),
  and advances the epoch by itself (persistent workers or not, ``resampled``, ``.with_epoch(n)``); with
  an index, ``shuffle="samples"`` makes every epoch a uniform permutation of all samples instead, read
  by batched byte ranges (:mod:`ais_wds.streaming.shuffling`);
* ``.shuffle(n)`` is its own buffer, whose checkpoint names the samples it holds (8 bytes each), so
  resume stays exact with it; ``.shuffle(n, open_shards=k)`` reads k shards at once (docs/shuffle.md);
* resumes exactly, mid-shard included, through torchdata's ``StatefulDataLoader`` (``state_dict`` /
  ``load_state_dict``), and at another world size or worker count from a job state
  (``ais_wds.job_state``); counting the samples for that state runs in C (no Python frame per sample);
* ``.batched(n)`` hands a batch on as soon as it is full (so resume stays exact) and, with an index,
  gives each worker whole batches, so ``len()`` is the number of batches a rank yields;
* lets a worker with no shard yield nothing (logged once) instead of raising;
* lists prefixes once per job (rank 0, shared over torch.distributed), never per worker;
* opens shards through the reader core directly (no gopen lookup, so spawn workers need nothing
  registered) and expands them with ais_wds's fast tar path (:mod:`ais_wds.streaming.stages`).

It is a ``wds.DataPipeline`` with webdataset's fluid methods (``.shuffle``, ``.decode``, ``.to_tuple``,
``.map``, ``.batched``, ``.with_epoch`` ...), so code written for ``wds.WebDataset`` keeps working.
Exact resume counts the samples that leave the tar stage, and the ``.shuffle(n)`` buffer's state names
what it held; other stages that hold samples back across items (``.unbatched()`` after ``.batched()``,
a user's own buffering stage) lose what they held at the checkpoint.
"""

from __future__ import annotations

import bisect
import functools
import inspect
import itertools
import logging
import random
from array import array
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import webdataset as wds
from torch.utils.data import IterableDataset
from webdataset import filters as wds_filters
from webdataset.handlers import reraise_exception

from .._core.dist import run_on_rank0_and_share
from ..client import Client
from ..epochs.plan import OWED_KEYS, PRIVATE_KEYS, Epochs, PartPlan, rank_length
from ..errors import ConfigError, ShardIndexError
from ..listing import Listing
from ..objects.reader import open_object
from ..partition import epoch_order, rank_world
from ..shard_index.index import ShardIndex, load_index
from ..shuffle.global_samples import SampleOrder
from ..shuffle.modes import ShuffleMode, shuffle_mode
from .shards import DEFAULT_SHARD_SUFFIXES, shard_urls
from .shuffling import OPEN_SHARDS_MEMORY, BufferStage, PassContext, ReaderStage
from .stages import tar_samples

logger = logging.getLogger(__name__)

Handler = Callable[[BaseException], bool]

SHARD_BUFSIZE = 256 << 10
"""Read-ahead buffer of each shard stream. Members larger than it are read straight into their own
bytes (one copy); measured at 1 MiB samples: 2,113 MB/s with 256 KiB vs 1,849 with 1 MiB, equal at 1 KiB."""


class Cursor:
    """Where one pass stands: ``done`` slots before the current piece, ``count`` samples into it (a
    piece that starts inside a shard without an index counts the samples it skips).

    While a piece streams, ``count`` is read from the ``itertools.count`` that :func:`piece_samples`
    gives ``itertools.compress`` as its (always true) selectors, so counting runs in C, with no Python
    frame per sample; setting ``count`` detaches it."""

    __slots__ = ("done", "_count", "_counter", "shard", "base", "external")

    def __init__(self, done: int = 0, count: int = 0):
        self.done = done
        self._count = count
        self._counter: Optional[Iterator[int]] = None
        self.shard = 0  # the current piece's shard (its number in the job's list)
        self.base = 0  # sample number in that shard of the piece's first counted sample, minus what count starts at
        self.external = False  # the reader counts (k-shard and global shuffles): the pieces leave done/count alone

    @property
    def count(self) -> int:
        if self._counter is None:
            return self._count
        return int(repr(self._counter)[6:-1]) - 1  # "count(N)": N is the next value, one past the count

    @count.setter
    def count(self, value: int) -> None:
        self._count = value
        self._counter = None

    def counting(self) -> Iterator[int]:
        """A counter from ``count + 1`` (never zero), read by :attr:`count` until ``count`` is set."""
        self._counter = itertools.count(self.count + 1)
        return self._counter


class SampleCounts:
    """Sample counts and byte ranges of every shard, from a shard index (16 bytes a sample).

    Raises:
        ShardIndexError: a shard of the job is not in the index (names ``ais-wds index``).
    """

    def __init__(self, urls: Sequence[str], index: ShardIndex):
        by_url = {record.url: record for record in index.shards}
        missing = [u for u in urls if u not in by_url]
        if missing:
            raise ShardIndexError(f"{len(missing)} of {len(urls)} shards are not in the shard index",
                                  url=missing[0], hint="index these shards with `ais-wds index PREFIX`")
        self.counts = [len(by_url[u]) for u in urls]
        self.offsets = [array("q", by_url[u].offsets) for u in urls]
        self.ends = [array("q", (o + n for o, n in zip(by_url[u].offsets, by_url[u].lengths))) for u in urls]

    def byte_range(self, shard: int, first: int, end: int) -> Tuple[int, Optional[int]]:
        """``(start, end)`` bytes of samples ``first..end-1`` of ``shard`` (end None: to the shard's end)."""
        offsets = self.offsets[shard]
        return (offsets[first] if first < len(offsets) else 0), (offsets[end] if end < len(offsets) else None)

    def sample_bytes(self, shard: int, first: int, end: int) -> Tuple[int, int]:
        """``(start, end)`` bytes of samples ``first..end-1`` of ``shard`` (``first < end``), no padding after."""
        return self.offsets[shard][first], self.ends[shard][end - 1]


class ShardSource(IterableDataset):
    """Yields this process's pieces of the epoch: ``{"url", "start", "end", "skip", "cursor"}`` (a shard, a
    byte range of it, samples to skip at its start, and the pass's :class:`Cursor`).

    Args:
        urls: all shard URLs of the job (the same list on every rank).
        counts: sample counts and offsets per shard (from a shard index), or None: then the unit of the
            split is the shard and ``even`` is refused.
        shuffle: shuffle shard order per epoch from ``seed``.
        seed: shuffle seed; the order depends only on (seed, epoch).
        even: None, ``"drop"`` or ``"repeat"``: exactly the same sample count on every rank (needs counts).
        resampled: draw shards with replacement forever (like ``wds.ResampledShards``), seeded per
            (seed, epoch, rank, worker).
        rank: this rank (default: detected now, in the building process).
        world_size: the number of ranks (default: detected now, with ``rank``).

    Raises:
        ConfigError: ``even`` without sample counts (the error names ``ais-wds index``).
    """

    def __init__(self, urls: Sequence[str], *, counts: Optional[SampleCounts] = None, shuffle: bool = True,
                 seed: int = 0, even: Optional[str] = None, resampled: bool = False, rank: Optional[int] = None,
                 world_size: Optional[int] = None, samples: bool = False):
        super().__init__()
        rank, world_size = rank_world(rank, world_size)
        if samples and (counts is None or resampled):
            raise ConfigError("shuffle='samples' needs a shard index and no resampled=True",
                              hint="pass index= (made by `ais-wds pack` or `ais-wds index PREFIX`)")
        if even is not None and counts is None and not resampled:
            raise ConfigError(
                f"even={even!r} needs the sample count of every shard, to give every rank the same number of "
                "samples; shard counts alone cannot promise it",
                hint="pass index= (the .index.msgpack that `ais-wds pack` writes, or make one with "
                     "`ais-wds index PREFIX`)")
        self.urls = list(urls)
        self.counts = counts
        self.shuffle = shuffle
        self.global_order = samples  # every epoch a permutation of all samples (shuffle="samples")
        self.seed = seed
        self.even = even
        self.resampled = resampled
        self.epochs = Epochs(rank, world_size, even if counts is not None else None, "ais_wds.WebDataset")
        self.align = 1  # samples per batch made inside the worker: worker shares are whole batches
        self._cursor: Optional[Cursor] = None
        self.owed = 0  # samples a loaded state handed this pass besides its slots (a shuffle's held/open ones)

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_cursor"] = None
        return state

    # -- epochs and state ----------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.epochs.epoch

    def set_epoch(self, epoch: int) -> None:
        self.epochs.set_epoch(epoch)

    def _slots(self) -> int:
        return sum(self.counts.counts) if self.counts is not None else len(self.urls)

    def _identity(self) -> Dict[str, Any]:
        return {"dataset": "ais_wds.WebDataset", "shards": len(self.urls),
                "shuffle": "samples" if self.global_order else self.shuffle, "seed": self.seed,
                "unit": "sample" if self.counts is not None else "shard", "resampled": self.resampled}

    def _sync(self) -> None:
        plan, cursor = self.epochs.plan, self._cursor
        if plan is None or cursor is None:
            return
        if self.counts is not None and not self.resampled:
            plan.progress = (cursor.done + cursor.count, 0)
        else:
            plan.progress = (cursor.done, cursor.count)

    def state_dict(self) -> Dict[str, Any]:
        self._sync()
        return self.epochs.state(self._slots(), self._identity(), align=self._align())

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.epochs.load(state, self._identity())

    def __len__(self) -> int:
        """Samples this rank reads in a whole epoch (with an index), else shards."""
        return rank_length(self._slots(), self.epochs.world_size, self.epochs.rank, self.epochs.even)

    def _align(self) -> int:
        return self.align if self.counts is not None and not self.resampled else 1

    # -- iteration -----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return self.iterate()

    def iterate(self) -> Iterator[Dict[str, Any]]:
        """Begin a pass now (the next epoch, or a loaded state) and return its pieces."""
        plan = self.epochs.begin(self._slots(), self._identity(), align=self._align())
        cursor = self._cursor = Cursor(*plan.progress)
        if self.resampled:
            return self._resampled(plan, cursor)
        if self.global_order:
            return self._global(plan, cursor)
        return self._pieces(plan, cursor)

    def _global(self, plan: PartPlan, cursor: Cursor) -> Iterator[Dict[str, Any]]:
        """One piece: the epoch's sample permutation and this part's runs left of it (the reader counts)."""
        assert self.counts is not None
        cursor.external = True
        yield {"order": SampleOrder(self.counts.counts, self.seed, plan.epoch), "runs": plan.left(), "cursor": cursor}

    def _resampled(self, plan: PartPlan, cursor: Cursor) -> Iterator[Dict[str, Any]]:
        index = plan.rank * plan.num_workers + plan.worker
        rng = random.Random(f"ais_wds:resampled:{self.seed}:{plan.epoch}:{index}")
        for _ in range(cursor.done):
            rng.randrange(len(self.urls))
        while True:
            shard = rng.randrange(len(self.urls))
            skip = cursor.count
            cursor.shard, cursor.base = shard, 0
            yield {"url": self.urls[shard], "start": 0, "end": None, "skip": skip, "cursor": cursor,
                   "shard": shard, "first": skip, "stop": -1, "slots": 1}
            if not cursor.external:
                cursor.done += 1
                cursor.count = 0

    def _pieces(self, plan: PartPlan, cursor: Cursor) -> Iterator[Dict[str, Any]]:
        order = epoch_order(len(self.urls), seed=self.seed if self.shuffle else None, epoch=plan.epoch)
        left = plan.left()
        if not plan.runs and self.owed:  # after an elastic resume: what the old parts held is what is left
            logger.debug("rank %d worker %d has no slots left in epoch %d; it delivers what the loaded state "
                         "handed it (%d held samples and open shards)", plan.rank, plan.worker, plan.epoch, self.owed)
        elif not plan.runs:
            logger.warning("rank %d worker %d has nothing to read in epoch %d (%d shards for %d parts); "
                           "it yields nothing", plan.rank, plan.worker, plan.epoch, len(self.urls),
                           plan.world_size * plan.num_workers)
        if self.counts is None:
            for first, end, skip in left:
                for slot in range(first, end):
                    shard, skipped = order[slot], skip if slot == first else 0
                    if not cursor.external:
                        cursor.count = skipped
                    cursor.shard, cursor.base = shard, 0
                    yield {"url": self.urls[shard], "start": 0, "end": None, "skip": skipped, "cursor": cursor,
                           "shard": shard, "first": skipped, "stop": -1, "slots": 1}
                    if not cursor.external:
                        cursor.done += 1
            if not cursor.external:
                cursor.count = 0
            return
        counts = self.counts
        starts = list(itertools.accumulate((counts.counts[s] for s in order), initial=0))
        for first, end, _ in left:
            k = _shard_at(starts, first)
            pos = first
            while pos < end:
                while starts[k + 1] <= pos:
                    k += 1
                shard = order[k]
                a, b = pos - starts[k], min(end, starts[k + 1]) - starts[k]
                byte_start, byte_end = counts.byte_range(shard, a, b)
                if not cursor.external:
                    cursor.count = 0
                cursor.shard, cursor.base = shard, a
                yield {"url": self.urls[shard], "start": byte_start, "end": byte_end, "skip": 0, "cursor": cursor,
                       "shard": shard, "first": a, "stop": b, "slots": b - a}
                if not cursor.external:
                    cursor.done += b - a
                pos += b - a
        if not cursor.external:
            cursor.count = 0


def _shard_at(starts: List[int], slot: int) -> int:
    """The position k in the epoch's shard order with ``starts[k] <= slot < starts[k + 1]``."""
    return bisect.bisect_right(starts, slot) - 1


def piece_samples(src: Iterable[Dict[str, Any]], *, client: Client, handler: Handler = reraise_exception,
                  select_files: Optional[Callable[[str], bool]] = None,
                  rename_files: Optional[Callable[[str], str]] = None) -> Iterator[Dict[str, Any]]:
    """Pipeline stage: pieces from :class:`ShardSource` -> samples, counted in each piece's cursor.

    Opens each piece's byte range through the reader core (lazy: the GET happens on the first read, so
    errors surface under ``handler``, as webdataset's tar stage does), skips its ``skip`` first samples.
    Per sample it adds no Python frame to the tar stage's (the counting is ``itertools.compress``
    with a counter as its selectors).
    """
    return itertools.chain.from_iterable(_piece_streams(src, client, handler, select_files, rename_files))


def _piece_streams(src: Iterable[Dict[str, Any]], client: Client, handler: Handler,
                   select_files: Optional[Callable[[str], bool]], rename_files: Optional[Callable[[str], str]]
                   ) -> Iterator[Iterator[Dict[str, Any]]]:
    for piece in src:
        url, cursor, skip = piece["url"], piece["cursor"], piece["skip"]
        try:
            stream = open_object(url, client, start=piece["start"], end=piece["end"], bufsize=SHARD_BUFSIZE)
        except Exception as e:  # noqa: BLE001 - delegated to the webdataset handler
            e.args = e.args + (url,)
            if handler(e):
                continue
            break
        samples = tar_samples(({"url": url, "stream": stream},), handler, select_files, rename_files)
        if skip:
            for _ in itertools.islice(samples, skip):
                pass
        yield itertools.compress(samples, cursor.counting())  # a sample is drawn before its count


def batched_now(data: Iterable[Any], batchsize: int = 20,
                collation_fn: Optional[Callable[[List[Any]], Any]] = wds_filters.default_collation_fn,
                partial: bool = True) -> Iterator[Any]:
    """webdataset's ``batched`` stage, except that a batch leaves as soon as it is full (webdataset's
    waits for the next sample, which the resume state would then count as consumed, and lose)."""
    batch: List[Any] = []
    for sample in data:
        batch.append(sample)
        if len(batch) >= batchsize:
            yield collation_fn(batch) if collation_fn is not None else batch
            batch = []
    if batch and partial:
        yield collation_fn(batch) if collation_fn is not None else batch


def _batching(stages: Sequence[Any]) -> Optional[Tuple[int, bool]]:
    """``(batch size, partial)`` of the one batching stage of a pipeline, None when it has none.

    Raises:
        TypeError: several batching stages, or an ``unbatched`` one (the item count is unknown).
    """
    found: Optional[Tuple[int, bool]] = None
    for stage in stages:
        f = getattr(stage, "f", None)
        if f is wds_filters._unbatched or (found is not None and f in _BATCHERS):
            raise TypeError("ais_wds.WebDataset with several .batched() / .unbatched() stages: no len()")
        if f in _BATCHERS:
            bound = inspect.signature(f).bind(None, *stage.args, **stage.kw)
            bound.apply_defaults()
            found = int(bound.arguments["batchsize"]), bool(bound.arguments["partial"])
    return found


_BATCHERS = (batched_now, wds_filters._batched)


class WebDataset(wds.DataPipeline, wds.FluidInterface):
    """Stream tar shards from AIS as webdataset samples (dicts with ``__key__``, ``__url__`` and one
    entry per file extension).

    Args:
        source: prefix URL(s) to list (``"ais://bucket/train/"``), shard URL patterns
            (``"ais://bucket/train-{000000..000099}.tar"``), a Listing or a saved ``.msgpack`` listing,
            or a list of any of these.
        client: Client or endpoint; default from the environment.
        shuffle: ``True`` / ``"shards"``: shuffle the shard order every epoch (deterministic from ``seed``);
            ``False`` / ``"none"``: storage order; ``"samples"`` (needs ``index``): every epoch a uniform
            random permutation of all samples of the job, split over ranks and workers as usual, each
            sample read at its byte range (GetBatch, with read-ahead). Add ``.shuffle(n)`` for a buffer.
        seed: the shard shuffle seed, shared by all ranks.
        even: ``"drop"`` or ``"repeat"``: exactly the same number of samples on every rank (needs
            ``index``); None: ranks differ by at most one sample (with ``index``) or one shard.
        index: a shard index (:class:`~ais_wds.ShardIndex`, or the URL / path of a saved
            ``.index.msgpack``): splits by sample, gives ``len()``, resumes inside a shard by range GET.
            Loaded once per job (rank 0, shared over torch.distributed).
        resampled: draw shards with replacement forever (combine with ``.with_epoch(n)``).
        rank: this process's DDP rank; default: detected now (torch.distributed, else
            RANK/WORLD_SIZE, else SLURM) and carried to the DataLoader workers.
        world_size: the number of DDP ranks; default: detected now with ``rank``, the same way.
        handler: webdataset exception handler (``wds.warn_and_continue`` to skip bad shards).
        select_files, rename_files: as in ``wds.WebDataset``.
        suffixes: which listed objects are shards.

    Raises:
        EmptyListingError: no shard found under ``source`` (at construction, never a silent empty epoch).
        ConfigError: ``even`` without ``index``; ``shuffle`` not one of the values above (named), or
            ``"samples"`` without ``index`` or with ``resampled``. ShardIndexError: a shard missing from ``index``.

    Process safety: picklable (fork, spawn and forkserver workers). ``state_dict()`` describes this
    process's pass (in a DataLoader worker: that worker's), as torchdata's ``StatefulDataLoader`` expects.
    """

    def __init__(
        self,
        source: Union[str, Listing, Sequence[Union[str, Listing]]],
        *,
        client: Union[Client, str, None] = None,
        shuffle: Union[bool, str] = True,
        seed: int = 0,
        even: Optional[str] = None,
        index: Union[ShardIndex, str, None] = None,
        resampled: bool = False,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        handler: Handler = reraise_exception,
        select_files: Optional[Callable[[str], bool]] = None,
        rename_files: Optional[Callable[[str], str]] = None,
        suffixes: Iterable[str] = DEFAULT_SHARD_SUFFIXES,
    ):
        mode = shuffle_mode(shuffle, has_index=index is not None)
        if mode is ShuffleMode.SAMPLES and resampled:
            raise ConfigError("shuffle='samples' with resampled=True: a permutation reads every sample once",
                              hint="use one of them")
        self.client = Client.of(client)
        self.client.load_sdk()  # forked workers inherit the SDK import
        rank, world_size = rank_world(rank, world_size)
        urls: Sequence[str] = shard_urls(source, suffixes=suffixes, client=self.client)
        counts = None
        if index is not None:
            loaded = index if isinstance(index, ShardIndex) else \
                run_on_rank0_and_share(lambda: load_index(str(index), self.client))
            counts = SampleCounts(urls, loaded)
        self.shards = ShardSource(urls, counts=counts, shuffle=mode is ShuffleMode.SHARDS, seed=seed, even=even,
                                  resampled=resampled, rank=rank, world_size=world_size,
                                  samples=mode is ShuffleMode.SAMPLES)
        self._window = 0  # outputs of the current .with_epoch(n) window in this process
        self._window_resume: Optional[int] = None
        self._pass: Optional[PassContext] = None  # the pass in progress in this process (never pickled)
        self._shuffle_resume: Optional[Dict[str, Any]] = None  # a loaded state's shuffle keys, for the next pass
        tar_kw = {"handler": handler, "select_files": select_files, "rename_files": rename_files}
        super().__init__(self.shards, ReaderStage(self.client, tar_kw, piece_samples))

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_pass"] = None
        return state

    @property
    def urls(self) -> List[str]:
        """All shard URLs of the job."""
        return self.shards.urls

    @property
    def epoch(self) -> int:
        """The epoch in progress in this process, else the next one."""
        return self.shards.epoch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` at the next iteration (optional: epochs advance by themselves)."""
        self.shards.set_epoch(epoch)

    def shuffle(self, size: int, initial: Optional[int] = None, *, open_shards: Union[int, str, None] = None,
                rng: Any = None, seed: Any = None, handler: Any = None) -> WebDataset:
        """Shuffle samples in a buffer of ``size`` (webdataset's algorithm and ``initial``), whose state is
        saved in checkpoints as references (shard, sample number; 8 bytes each), never bytes: resume
        refills it with exactly those samples (range reads with an index, the shards read again without)
        and goes on in exactly the order of the uninterrupted run; a job state hands them to the new
        shape's parts (exactly once).

        ``open_shards=k`` (an int, or ``"auto"``: as many as 32 MiB of read buffers allow, 128) also
        reads k shards of this part at once and takes each sample from a random one of them, so the
        buffer mixes samples of k shards (no index needed; resumes exactly too). ``size=0`` with
        ``open_shards`` interleaves without a buffer. The draws are seeded from ``seed=`` of the dataset
        (``rng``/``seed`` here are refused: the generator must be one whose state a checkpoint can hold).

        Stages before it must hand on one item per sample (``map``, ``decode``, ``select``...).

        Raises:
            ConfigError: a second ``.shuffle``, ``rng``/``seed`` given, ``open_shards`` below 1 or with
                ``shuffle="samples"``, a negative size.
        """
        if rng is not None or seed is not None:
            raise ConfigError("ais_wds.WebDataset.shuffle() draws from its own generator (seeded from the "
                              "dataset's seed=), so that a checkpoint holds its state; rng= / seed= are refused",
                              hint="pass seed= to ais_wds.WebDataset(...)")
        if any(isinstance(stage, BufferStage) for stage in self.pipeline) or \
                (open_shards is not None and self.pipeline[1].open_shards):
            raise ConfigError("ais_wds.WebDataset.shuffle() twice in one pipeline", hint="keep one .shuffle()")
        if int(size) < 0:
            raise ConfigError(f"shuffle buffer size {size!r} is negative")
        result: WebDataset = self
        if open_shards is not None:
            k = OPEN_SHARDS_MEMORY // SHARD_BUFSIZE if open_shards == "auto" else open_shards
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ConfigError(f"open_shards={open_shards!r} is not an int >= 1 or 'auto'")
            if self.shards.global_order:
                raise ConfigError("open_shards with shuffle='samples': the global shuffle reads single samples",
                                  hint="drop open_shards (shuffle='samples' mixes all samples already)")
            result = self.compose()
            result.pipeline[1] = self.pipeline[1].with_open_shards(k)
        if size >= 1:
            result = result.compose(BufferStage(int(size), initial))
        return result

    def batched(self, batchsize: int, collation_fn: Optional[Callable[[List[Any]], Any]] =
                wds_filters.default_collation_fn, partial: bool = True) -> WebDataset:
        """Batches of ``batchsize`` made in the DataLoader worker (as ``wds.WebDataset.batched``). With an
        index, each worker's share is whole batches (all but the last), so a rank yields
        ``ceil(len / batchsize)`` batches (``partial=False``: ``len // batchsize``) whatever the number
        of workers, and ``len()`` says so. A batch leaves as soon as it is full, so resume is exact."""
        return self.compose(wds.pipelinefilter(batched_now)(batchsize, collation_fn=collation_fn, partial=partial))

    def __len__(self) -> int:
        """Items this rank yields per epoch, over all its DataLoader workers: samples, or after
        ``.batched(n)`` batches (see :meth:`batched`). Stages that drop samples (``.select``, a
        handler skipping bad ones) are not counted.

        Raises:
            TypeError: no ``index`` was given, so the sample count is unknown; or ``.with_epoch(n)`` made
                the epoch ``n`` items per DataLoader worker (webdataset's rule), which a rank cannot know;
                or several ``.batched`` / ``.unbatched`` stages.
        """
        if self.nsamples > 0:
            raise TypeError("ais_wds.WebDataset.with_epoch(n) yields n items per DataLoader worker: no len()")
        if self.shards.counts is None:
            raise TypeError("ais_wds.WebDataset has no len() without a shard index: pass index= (made by "
                            "`ais-wds pack` or `ais-wds index`), or use .with_epoch(n)")
        samples = len(self.shards)
        batching = _batching(self.pipeline[1:])
        if batching is None:
            return samples
        size, partial = batching
        return samples // size + (1 if partial and samples % size else 0)

    def state_dict(self) -> Dict[str, Any]:
        """This process's position: epoch, part, samples consumed (and the ``.with_epoch`` window); with a
        ``.shuffle(n)``, the samples its buffer holds (``held``) and its generator (``draws``); with
        ``open_shards``, the open shards (``open``, ``picks``)."""
        state = {**self.shards.state_dict(), "window": self._window}
        if self._pass is not None:
            state.update(self._pass.state())
        elif self._shuffle_resume:
            state.update(self._shuffle_resume)
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume at the next iteration, from a part state (same rank and worker) or a job state
        (``ais_wds.job_state``: any world size and worker count).

        Raises:
            ConfigError: not a state of this dataset (what ``state_dict()`` or ``ais_wds.job_state()`` made).
        """
        if not isinstance(state, dict):
            raise ConfigError(f"not an ais_wds WebDataset state: {type(state).__name__}",
                              hint="pass what state_dict() or ais_wds.job_state() returned")
        state = dict(state)
        window = state.pop("window", 0)
        extra = {k: state.pop(k) for k in OWED_KEYS + PRIVATE_KEYS if k in state}
        if extra.get("held") and not any(isinstance(stage, BufferStage) for stage in self.pipeline):
            raise ConfigError(f"this state holds {len(extra['held'])} samples of a .shuffle(n) buffer, and this "
                              "pipeline has no .shuffle(n)", hint="resume with the same pipeline")
        self.shards.load_state_dict(state)
        self._shuffle_resume = {**extra, "kind": state.get("kind")} if extra else None
        self._window_resume = int(window) if state.get("kind") != "ais_wds.job" else 0

    def __iter__(self) -> Iterator[Any]:
        try:
            batching = _batching(self.pipeline[1:])
        except TypeError:
            batching = None
        self.shards.align = batching[0] if batching is not None else 1
        first = self.shards.iterate()  # begins the pass now: a worker's first snapshot is already the new pass
        resume, self._shuffle_resume = self._shuffle_resume, None
        window, self._window_resume = self._window_resume or 0, None
        self._window = window
        stages = self._stages(first, resume if self.shards.epochs.resumed else None)
        if self.nsamples <= 0 and self.repetitions <= 1:
            return stages  # no window to count: the last stage's own iterator, no extra frame
        return self._outputs(stages, window)

    def _stages(self, pieces: Iterator[Dict[str, Any]], resume: Optional[Dict[str, Any]] = None) -> Iterator[Any]:
        """The pipeline's stages over this pass's pieces, begun now (a shuffle buffer is refilled now)."""
        reader: ReaderStage = self.pipeline[1]
        plan, cursor = self.shards.epochs.plan, self.shards._cursor
        assert plan is not None and cursor is not None
        ctx = self._pass = PassContext(self.shards, plan, cursor, self.client, reader.tar_kw, resume)
        self.shards.owed = sum(len(ctx.handed(key)) for key in OWED_KEYS)  # before the first piece is asked for
        source: Any = reader.start(pieces, ctx)
        for i, step in enumerate(self.pipeline[2:], 2):
            if isinstance(step, BufferStage):
                source = step.start(source, ctx, functools.partial(self._between, upto=i))
            else:
                source = self.invoke(step, source)
        return iter(source)

    def _between(self, raw: Iterator[Any], upto: int) -> Iterator[Any]:
        """``raw`` samples through the stages after the reader and before stage ``upto``."""
        source: Any = raw
        for step in self.pipeline[2:upto]:
            source = self.invoke(step, source)
        return iter(source)

    def _outputs(self, first: Iterator[Any], window: int) -> Iterator[Any]:
        limit = self.nsamples if self.nsamples > 0 else None
        if limit is not None and window >= limit:
            return
        passes = itertools.chain([first], (self._stages(self.shards.iterate()) for _ in itertools.count())) \
            if self.repetitions > 1 else [first]
        for n_pass, stages in enumerate(passes):
            if n_pass >= self.repetitions:
                return
            produced = 0
            for item in stages:
                produced += 1
                window += 1
                self._window = window
                yield item
                if limit is not None and window >= limit:
                    return
            if produced == 0:
                return  # an empty pass: do not spin
