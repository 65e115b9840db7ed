"""Epoch plans: which slots of an epoch each (rank, worker) part reads, what it has consumed, and how a
job resumes at the same shape or at another one (elastic resume). Pure logic; no I/O, no torch.

An epoch is a sequence of ``n`` *slots* (objects, samples, or shards when sample counts are unknown),
in the epoch's order. The slots still to read are a list of *runs* ``(first, end, skip)``: slots
``first..end-1`` of the epoch order, the first of which has its first ``skip`` samples already consumed
(only shards-as-slots use ``skip``). A *shape* (world size W, workers per rank N) splits the runs
contiguously and evenly: rank r gets positions ``[r*L//W, (r+1)*L//W)`` of the runs' total length L,
then its worker w a contiguous share of that (in whole batches of ``align`` slots when the front end
batches inside the worker, so a rank yields ``ceil(L/align)`` batches whatever N). ``even="drop"`` /
``"repeat"`` first trims or pads the runs to a multiple of W, so every rank gets exactly the same count.

``even`` over an interruption (elastic resume at W'): the slots ``"drop"`` left out of a layer are not
lost but carried to the next one, which leaves out again only what it must (fewer than W'): an epoch
resumed any number of times leaves out fewer than W_last slots in all, reads none twice, and every
rank of every run reads the same count. Under ``"repeat"`` the padding a layer did not read yet is
forgotten and the next layer pads for its own shape: every slot is read at least once, and the resumed
run reads fewer than W' twice.

A part's progress is ``(done, partial)``: slots fully consumed, then samples consumed inside the next
slot. A *layer* is one shape run with every part's progress: after an interruption, the slots left are
those of the layers before minus what each part consumed, so a job resumes on any new shape from the
layers alone (small: W x N pairs per interruption, independent of the dataset size). Same-shape resume
needs only the part's own progress (what torchdata's ``StatefulDataLoader`` stores per worker).

:class:`SharedEpoch` makes epochs advance on their own: in the process that built the dataset and in
its DataLoader workers, persistent or not, started by fork, spawn or forkserver.

Thread safety: the functions are pure. Process safety: :class:`SharedEpoch` is shared with the workers
started from this process; pickled otherwise (torch.save), it becomes a private copy.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass, field
from multiprocessing.context import get_spawning_popen
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .._core.process_local import ProcessLocal
from ..errors import ConfigError

Run = Tuple[int, int, int]
"""``(first slot, end slot, samples already consumed in the first slot)``."""

Progress = Tuple[int, int]
"""``(slots done, samples consumed in the next slot)``."""

EVEN_MODES = (None, "drop", "repeat")
STATE_KIND = "ais_wds.part"
JOB_KIND = "ais_wds.job"
STATE_VERSION = 2
OWED_KEYS = ("held", "open")
"""Keys of a part state listing samples its plan counts as consumed but that were not delivered yet (a
shuffle buffer's references, the rest of the shards a k-shard shuffle has open): a job state concatenates
them over the parts (rank-major) and the parts of the next shape share them out."""
PRIVATE_KEYS = ("draws", "picks")
"""Keys of a part state that only that part can resume (a shuffle's generator): a job state drops them."""
_CONTEXT = multiprocessing.get_context("spawn")
"""Shared counters are made in the spawn context: its locks may go to fork, spawn and forkserver workers
alike (a fork-context lock refuses to be sent to a spawned process)."""


def check_even(even: Optional[str]) -> None:
    """Raises: ConfigError: ``even`` is not None, ``"drop"`` or ``"repeat"``."""
    if even not in EVEN_MODES:
        raise ConfigError(f"even must be one of {EVEN_MODES}, got {even!r}")


def total(runs: Sequence[Run]) -> int:
    """The number of slots in ``runs``."""
    return sum(end - first for first, end, _ in runs)


def slots(runs: Sequence[Run]) -> Iterator[int]:
    """Every slot of ``runs``, in order."""
    for first, end, _ in runs:
        yield from range(first, end)


def slice_runs(runs: Sequence[Run], start: int, stop: int) -> List[Run]:
    """Positions ``start..stop-1`` of the concatenated ``runs`` (a run cut in its middle loses its skip)."""
    out: List[Run] = []
    pos = 0
    for first, end, skip in runs:
        length = end - first
        lo, hi = max(start - pos, 0), min(stop - pos, length)
        if lo < hi:
            out.append((first + lo, first + hi, skip if lo == 0 else 0))
        pos += length
        if pos >= stop:
            break
    return out


def even_runs(runs: Sequence[Run], world_size: int, even: Optional[str]) -> List[Run]:
    """``runs`` trimmed (``"drop"``) or padded from their start (``"repeat"``) to a multiple of ``world_size``."""
    length = total(runs)
    if even is None or length % world_size == 0 or length == 0:
        return list(runs)
    if even == "drop":
        return slice_runs(runs, 0, length - length % world_size)
    out = list(runs)
    pad = world_size - length % world_size
    while pad > 0:  # repeated slots are read whole
        take = [(first, end, 0) for first, end, _ in slice_runs(runs, 0, min(pad, length))]
        out.extend(take)
        pad -= total(take)
    return out


def bounds(length: int, index: int, count: int, align: int = 1) -> Tuple[int, int]:
    """Positions ``[lo, hi)`` of share ``index`` of ``count`` contiguous, balanced shares of ``length``
    slots: sizes differ by at most one slot, or with ``align > 1`` by at most one batch of ``align``
    slots, every share but the last nonempty one being whole batches."""
    if align <= 1:
        return index * length // count, (index + 1) * length // count
    batches = -(-length // align)
    return min(length, index * batches // count * align), min(length, (index + 1) * batches // count * align)


def share(runs: Sequence[Run], index: int, count: int, align: int = 1) -> List[Run]:
    """Share ``index`` of ``count`` contiguous, balanced shares of ``runs`` (see :func:`bounds`)."""
    return slice_runs(runs, *bounds(total(runs), index, count, align))


def part_bounds(length: int, world_size: int, num_workers: int, rank: int, worker: int,
                align: int = 1) -> Tuple[int, int]:
    """Positions ``[lo, hi)`` of part (``rank``, ``worker``) in ``length`` slots already evened."""
    rank_lo, rank_hi = bounds(length, rank, world_size)
    lo, hi = bounds(rank_hi - rank_lo, worker, num_workers, align)
    return rank_lo + lo, rank_lo + hi


def part_runs(runs: Sequence[Run], world_size: int, num_workers: int, rank: int, worker: int,
              even: Optional[str], align: int = 1) -> List[Run]:
    """The runs of part (``rank``, ``worker``) of the shape (``world_size``, ``num_workers``)."""
    shaped = even_runs(runs, world_size, even)
    return slice_runs(shaped, *part_bounds(total(shaped), world_size, num_workers, rank, worker, align))


def rank_runs(runs: Sequence[Run], world_size: int, rank: int, even: Optional[str]) -> List[Run]:
    """The runs of ``rank`` (all its workers together)."""
    return share(even_runs(runs, world_size, even), rank, world_size)


def rank_length(n: int, world_size: int, rank: int, even: Optional[str]) -> int:
    """Slots ``rank`` reads in a whole ``n``-slot epoch, over all its workers (its ``len()``)."""
    return total(rank_runs(universe(n, even, []), world_size, rank, even))


def rest(runs: Sequence[Run], progress: Progress) -> List[Run]:
    """What is left of a part's ``runs`` after ``progress``."""
    done, partial = progress
    left = slice_runs(runs, done, total(runs))
    if left and partial > 0:
        first, end, skip = left[0]
        left[0] = (first, end, max(skip, partial))
    return left


@dataclass(frozen=True)
class Layer:
    """One shape a job ran at (its worker shares in batches of ``align``), and every part's progress
    when it stopped (rank-major part order)."""

    world_size: int
    num_workers: int
    progress: Tuple[Progress, ...]
    align: int = 1

    def to_list(self) -> List[Any]:
        return [self.world_size, self.num_workers, [list(p) for p in self.progress], self.align]

    @classmethod
    def from_list(cls, value: Sequence[Any]) -> Layer:
        world, workers, progress = value[:3]
        align = int(value[3]) if len(value) > 3 else 1
        layer = cls(int(world), int(workers), tuple((int(d), int(p)) for d, p in progress), align)
        if len(layer.progress) != layer.world_size * layer.num_workers:
            raise ConfigError(f"a resume layer of shape {world}x{workers} has {len(layer.progress)} parts")
        return layer


def layer_left(runs: Sequence[Run], layer: Layer, even: Optional[str]) -> Tuple[List[Run], List[Run]]:
    """What a layer run over ``runs`` left: (the slots its parts did not consume, in order; the slots
    ``even="drop"`` kept out of it). Padding ``"repeat"`` added but no part consumed is not returned."""
    length = total(runs)
    shaped = even_runs(runs, layer.world_size, even)
    kept = total(shaped)
    left: List[Run] = []
    for rank in range(layer.world_size):
        for worker in range(layer.num_workers):
            lo, hi = part_bounds(kept, layer.world_size, layer.num_workers, rank, worker, layer.align)
            progress = layer.progress[rank * layer.num_workers + worker]
            left.extend(rest(slice_runs(shaped, lo, max(lo, min(hi, length))), progress))
    dropped = slice_runs(runs, kept, length) if kept < length else []
    return left, dropped


def universe(n: int, even: Optional[str], layers: Sequence[Layer]) -> List[Run]:
    """The runs of an ``n``-slot epoch still to read after ``layers`` (all of it when there is none):
    what their parts did not consume, and what ``even="drop"`` kept out of them."""
    runs: List[Run] = [(0, n, 0)] if n > 0 else []
    for layer in layers:
        left, dropped = layer_left(runs, layer, even)
        runs = _merged(left + dropped)
    return runs


def _merged(runs: Sequence[Run]) -> List[Run]:
    out: List[Run] = []
    for run in runs:
        if out and out[-1][1] == run[0] and run[2] == 0:
            out[-1] = (out[-1][0], run[1], out[-1][2])
        else:
            out.append(run)
    return out


@dataclass
class PartPlan:
    """The plan of one part for one epoch: the epoch, the layers before, the shape and the part's runs.

    ``progress`` is updated by the iterator that reads the runs; :meth:`state` reports it.
    """

    epoch: int
    n: int
    even: Optional[str]
    layers: Tuple[Layer, ...]
    world_size: int
    num_workers: int
    rank: int
    worker: int
    runs: List[Run] = field(default_factory=list)
    progress: Progress = (0, 0)
    identity: Dict[str, Any] = field(default_factory=dict)
    align: int = 1

    @classmethod
    def make(cls, epoch: int, n: int, even: Optional[str], layers: Sequence[Layer], world_size: int,
             num_workers: int, rank: int, worker: int, progress: Progress = (0, 0),
             identity: Optional[Dict[str, Any]] = None, align: int = 1) -> PartPlan:
        runs = part_runs(universe(n, even, layers), world_size, num_workers, rank, worker, even, align)
        return cls(epoch, n, even, tuple(layers), world_size, num_workers, rank, worker, runs, progress,
                   dict(identity or {}), align)

    @property
    def length(self) -> int:
        """Slots of this part in the epoch (consumed ones included)."""
        return total(self.runs)

    def left(self) -> List[Run]:
        """The runs not consumed yet."""
        return rest(self.runs, self.progress)

    def state(self) -> Dict[str, Any]:
        """Plain data: the part, its epoch, the layers before and its progress."""
        return {"kind": STATE_KIND, "version": STATE_VERSION, **self.identity, "epoch": self.epoch, "n": self.n,
                "even": self.even, "layers": [layer.to_list() for layer in self.layers],
                "world_size": self.world_size, "num_workers": self.num_workers, "align": self.align,
                "rank": self.rank, "worker": self.worker, "progress": list(self.progress)}

    def walk(self) -> Iterator[int]:
        """The slots not consumed yet, in order, each counted consumed as it is handed out (for a
        consumer that takes one item per slot and reads nothing ahead). Slots only: ``skip`` is ignored."""
        done = self.progress[0]
        for slot in slots(self.left()):
            done += 1
            self.progress = (done, 0)
            yield slot


def check_identity(state: Dict[str, Any], identity: Dict[str, Any], what: str,
                   kinds: Tuple[str, ...] = (STATE_KIND, JOB_KIND), version: int = STATE_VERSION) -> None:
    """Raises: ConfigError: ``state`` is not an ais_wds state (of one of ``kinds``, at ``version``), or is
    for another dataset (``identity`` differs)."""
    if not isinstance(state, dict) or state.get("kind") not in kinds:
        raise ConfigError(f"not an ais_wds {what} state: {type(state).__name__}",
                          hint="pass what state_dict() or ais_wds.job_state() returned")
    if state.get("version") != version:
        raise ConfigError(f"{what} state version {state.get('version')!r} is not {version}")
    for name, value in identity.items():
        if state.get(name) != value:
            raise ConfigError(f"cannot resume {what}: the state has {name}={state.get(name)!r}, this dataset "
                              f"{value!r}", hint="resume with the same listing (or index), seed and settings")


def plan_from_state(state: Dict[str, Any], identity: Dict[str, Any], what: str, world_size: int, num_workers: int,
                    rank: int, worker: int, align: int = 1) -> PartPlan:
    """This part's plan from a part state (same shape: exact position) or a job state (any shape; the
    new worker shares in batches of ``align``).

    Raises:
        ConfigError: a part state of another shape or part (gather a job state for elastic resume), or
            a state of another dataset.
    """
    check_identity(state, identity, what)
    layers = [Layer.from_list(x) for x in state["layers"]]
    epoch, n, even = int(state["epoch"]), int(state["n"]), state["even"]
    if state["kind"] == JOB_KIND:
        return PartPlan.make(epoch, n, even, layers, world_size, num_workers, rank, worker, identity=identity,
                             align=align)
    shape = (int(state["world_size"]), int(state["num_workers"]), int(state["rank"]), int(state["worker"]))
    if shape != (world_size, num_workers, rank, worker):
        raise ConfigError(f"this {what} state is for rank {shape[2]}/{shape[0]}, worker {shape[3]}/{shape[1]}, not "
                          f"rank {rank}/{world_size}, worker {worker}/{num_workers}",
                          hint="to resume at another world size or worker count, load ais_wds.job_state(...)")
    progress = state["progress"]
    return PartPlan.make(epoch, n, even, layers, world_size, num_workers, rank, worker,
                         (int(progress[0]), int(progress[1])), identity, int(state.get("align", 1)))


JOB_MERGERS: Dict[str, Callable[[Sequence[Dict[str, Any]]], Dict[str, Any]]] = {}
"""Front ends whose part states nest others (a mix holds its sources'): their state kind -> the function
that merges every part's state into one job state (registered by the front end when it is imported)."""


def find_part_states(tree: Any) -> List[Dict[str, Any]]:
    """Every ais_wds part state nested anywhere in ``tree`` (a StatefulDataLoader state, a list of them...)."""
    found: List[Dict[str, Any]] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("kind") == STATE_KIND or node.get("kind") in JOB_MERGERS:
                found.append(node)
                continue
            if node.get("_steps_since_snapshot"):
                raise ConfigError("this loader state was taken between snapshots "
                                  f"({node['_steps_since_snapshot']} steps after the last one)",
                                  hint="use StatefulDataLoader(snapshot_every_n_steps=1) (its default)")
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return found


def merge_job_state(part_states: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """One job state from the part states of every rank and worker (elastic resume at any shape).

    Raises:
        ConfigError: parts missing, or parts of different epochs, datasets or shapes.
    """
    if not part_states:
        raise ConfigError("no ais_wds dataset state found in the loader states",
                          hint="gather the state_dict() of every rank's StatefulDataLoader over an ais_wds dataset")
    first = part_states[0]
    merger = JOB_MERGERS.get(str(first.get("kind")))
    if merger is not None:
        return merger(part_states)
    keys = [k for k in first if k not in ("rank", "worker", "progress", "window") + OWED_KEYS + PRIVATE_KEYS]
    world, workers = int(first["world_size"]), int(first["num_workers"])
    progress: Dict[int, Progress] = {}
    for state in part_states:
        for k in keys:
            if state.get(k) != first[k]:
                raise ConfigError(f"the parts' states differ in {k!r} ({state.get(k)!r} vs {first[k]!r})",
                                  hint="gather states taken at the same step of one job (every rank, same epoch)")
        index = int(state["rank"]) * workers + int(state["worker"])
        progress[index] = (int(state["progress"][0]), int(state["progress"][1]))
    missing = [i for i in range(world * workers) if i not in progress]
    if missing:
        raise ConfigError(f"the states of {len(missing)} of {world * workers} parts are missing "
                          f"(rank, worker) = {[divmod(i, workers) for i in missing[:8]]}",
                          hint="gather every rank's loader state (ais_wds.job_state does it over torch.distributed)")
    layer = Layer(world, workers, tuple(progress[i] for i in range(world * workers)), int(first.get("align", 1)))
    job = {k: first[k] for k in keys if k not in ("world_size", "num_workers", "align")}
    job["kind"] = JOB_KIND
    job["layers"] = list(first["layers"]) + [layer.to_list()]
    by_part = sorted(part_states, key=lambda s: int(s["rank"]) * workers + int(s["worker"]))
    owed = {key: [x for s in by_part for x in s.get(key) or ()] for key in OWED_KEYS
            if any(key in s for s in part_states)}
    job.update(owed)
    before = universe(int(job["n"]), job["even"], [Layer.from_list(x) for x in first["layers"]])
    if not layer_left(before, layer, job["even"])[0] and not any(owed.values()):
        # every part read its whole share (what even="drop" kept out stays out): the next epoch
        job["epoch"] = int(job["epoch"]) + 1
        job["layers"] = []
    return job


class SharedEpoch:
    """The epoch counter of one dataset, shared with the DataLoader workers started from this process.

    ``begin()`` returns the epoch of a new pass. In the process that owns the dataset each pass is the
    next epoch; the workers of one DataLoader iteration (recognised by their shared ``generation``, the
    DataLoader's base seed) agree on one epoch, the next DataLoader iteration's workers take the next,
    and a persistent worker's later passes advance by one each. :meth:`set` fixes the next epoch, for
    persistent workers too.
    """

    _NEXT, _GENERATION, _CHOSEN, _VERSION = range(4)

    def __init__(self, epoch: int = 0) -> None:
        self._cell: Any = _CONTEXT.Array("q", [int(epoch), 0, -1, 0])
        # [last epoch of this copy in this process, version of set() it saw] (persistent workers)
        self._local: ProcessLocal[List[int]] = ProcessLocal(_box)

    def __getstate__(self) -> Dict[str, Any]:
        if get_spawning_popen() is not None:
            return {"cell": self._cell}
        return {"cell": None, "next": self.next}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._cell = state["cell"]
        self._local = ProcessLocal(_box)
        if self._cell is None:
            self._cell = _CONTEXT.Array("q", [int(state["next"]), 0, -1, 0])

    @property
    def next(self) -> int:
        """The epoch the next DataLoader iteration (or pass in this process) starts."""
        return int(self._cell[self._NEXT])

    def set(self, epoch: int) -> None:
        """Make ``epoch`` the next epoch (the next pass of every copy, persistent workers included)."""
        cell = self._cell
        with cell.get_lock():
            cell[self._NEXT] = int(epoch)
            cell[self._CHOSEN] = -1
            cell[self._VERSION] += 1

    def begin(self, generation: Optional[int]) -> int:
        """The epoch of a pass starting now; ``generation`` is None outside DataLoader workers."""
        cell, last = self._cell, self._local.get()
        with cell.get_lock():
            version = int(cell[self._VERSION])
            if generation is None:
                epoch = int(cell[self._NEXT])
            elif last[0] >= 0 and last[1] == version:
                epoch = last[0] + 1  # a persistent worker's next pass
            elif cell[self._CHOSEN] >= 0 and cell[self._GENERATION] == generation:
                epoch = int(cell[self._CHOSEN])  # a sibling worker of the same DataLoader iteration chose it
            else:
                epoch = int(cell[self._NEXT])
            self._record(epoch, generation, version, last)
        return epoch

    def claims(self, version: Optional[int], generation: Optional[int]) -> bool:
        """Whether a state loaded when :attr:`version` was ``version`` is still this pass's to resume:
        no pass began since, except by sibling workers of the same DataLoader iteration. ``version``
        None (a state loaded inside this worker): always."""
        if version is None:
            return True
        cell = self._cell
        with cell.get_lock():
            if cell[self._VERSION] != version:
                return False
            return bool(cell[self._CHOSEN] < 0 or (generation is not None and cell[self._GENERATION] == generation))

    @property
    def version(self) -> int:
        """Bumped by every :meth:`set`."""
        return int(self._cell[self._VERSION])

    def resumed(self, epoch: int, generation: Optional[int]) -> None:
        """Record that a pass resumed ``epoch`` (the next pass takes the one after)."""
        cell, last = self._cell, self._local.get()
        with cell.get_lock():
            self._record(epoch, generation, int(cell[self._VERSION]), last)

    def _record(self, epoch: int, generation: Optional[int], version: int, last: List[int]) -> None:
        cell = self._cell
        cell[self._NEXT] = max(int(cell[self._NEXT]), epoch + 1) if generation is not None else epoch + 1
        cell[self._GENERATION] = -1 if generation is None else generation
        cell[self._CHOSEN] = epoch
        last[0], last[1] = epoch, version


def _box() -> List[int]:
    return [-1, -1]


class Epochs:
    """The epoch bookkeeping of one dataset: the rank it was built on, the shared epoch counter, a loaded
    state waiting for the next pass, and the plan of the pass in progress (in this process).

    Args:
        rank: this rank, captured where the dataset is built (never detected inside a worker).
        world_size: the number of ranks, captured with ``rank``.
        even: None, ``"drop"`` or ``"repeat"``.
        what: the dataset's name, for error messages.

    The owner calls :meth:`begin` eagerly in ``__iter__`` (so a DataLoader worker's first snapshot is
    already the new pass) and updates ``plan.progress`` as the training loop consumes slots.
    """

    def __init__(self, rank: int, world_size: int, even: Optional[str], what: str,
                 worker: Optional[Tuple[int, int]] = None):
        check_even(even)
        self.fixed_worker = worker  # (worker, num_workers) instead of detecting the DataLoader worker
        self.rank = rank
        self.world_size = world_size
        self.even = even
        self.what = what
        self.shared = SharedEpoch()
        self.plan: Optional[PartPlan] = None  # the pass in progress in this process (never pickled)
        self._resume: Optional[Dict[str, Any]] = None
        self._resume_version: Optional[int] = None
        self.resumed = False  # whether the last begin() resumed a loaded state

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["plan"] = None
        return state

    @property
    def epoch(self) -> int:
        """The epoch in progress in this process, else the next one."""
        return self.plan.epoch if self.plan is not None else self.shared.next

    def set_epoch(self, epoch: int) -> None:
        """The next pass starts ``epoch`` (a loaded state for another epoch is dropped)."""
        if self._resume is not None and int(self._resume["epoch"]) != int(epoch):
            self._resume = None
        self.shared.set(epoch)
        if self._resume is not None:
            self._resume_version = self.shared.version

    def load(self, state: Dict[str, Any], identity: Dict[str, Any]) -> None:
        """Resume from a part state (same shape) or a job state (any shape) at the next pass.

        Raises:
            ConfigError: not an ais_wds state, or one of another dataset.
        """
        check_identity(state, identity, self.what)
        self._resume = dict(state)
        from .._core.dist import torch_worker

        if torch_worker() is None:  # in the owning process: every worker of the next iteration resumes
            self.shared.set(int(state["epoch"]))
            self._resume_version = self.shared.version
        else:  # StatefulDataLoader restoring this worker: its next pass resumes
            self._resume_version = None

    def _worker(self, per_rank: bool) -> Tuple[int, int]:
        from .._core.dist import torch_worker

        if per_rank:
            return 0, 1
        return self.fixed_worker or torch_worker() or (0, 1)

    def begin(self, n: int, identity: Dict[str, Any], per_rank: bool = False, align: int = 1) -> PartPlan:
        """The plan of a pass starting now in this process: the loaded state's, else the next epoch's.

        Args:
            n: slots in a full epoch.
            identity: what the dataset's states must match (seed, shuffle, sizes ...).
            per_rank: plan for the whole rank (a sampler in the rank's main process), not for a worker.
            align: split the rank's share between workers in whole batches of ``align`` slots (the
                front end batches inside the worker).
        """
        from .._core.dist import worker_generation

        worker, num_workers = self._worker(per_rank)
        generation = None if per_rank else worker_generation()
        resume, self._resume = self._resume, None
        self.resumed = resume is not None and self.shared.claims(self._resume_version, generation)
        if resume is not None and self.resumed:
            plan = plan_from_state(resume, identity, self.what, self.world_size, num_workers, self.rank, worker,
                                   align)
            self.shared.resumed(plan.epoch, generation)
        else:
            epoch = self.shared.begin(generation)
            plan = PartPlan.make(epoch, n, self.even, (), self.world_size, num_workers, self.rank, worker,
                                 identity=identity, align=align)
        self.plan = plan
        return plan

    def state(self, n: int, identity: Dict[str, Any], per_rank: bool = False, fresh: bool = False,
              align: int = 1) -> Dict[str, Any]:
        """The state of the pass in progress, or (before any, or with ``fresh``: a pass was asked for but
        has not begun) of the next pass with nothing consumed."""
        plan = self.plan
        if plan is not None and not fresh:
            return plan.state()
        if self._resume is not None:
            return dict(self._resume)
        worker, num_workers = self._worker(per_rank)
        return PartPlan.make(self.shared.next, n, self.even, (), self.world_size, num_workers, self.rank, worker,
                             identity=identity, align=align).state()
