"""The state of a mix, as plain data, and the job state that resumes it at another shape (elastic resume).

A part state (one rank's DataLoader worker; what ``Mix.state_dict()`` returns and torchdata's
``StatefulDataLoader`` stores) holds, in the spirit of torchdata.nodes (each piece owns its state):

* ``positions``: the mix's own part state: which positions of the mix epoch this part reads and how many
  it has read (an ais_wds epoch plan; positions are what the seeded draws are keyed by);
* ``sources``: per source, the source's own state of the epoch this part is reading (``state``) and the
  later epochs left over from an earlier elastic resume (``queue``: job states);
* ``weights`` (in effect), ``latest`` and ``latest_version`` (last set by ``set_weights`` in this rank's
  process, and how many changes it made: not yet in effect when they differ from ``weights``),
  ``changes`` (``[mix epoch, position, weights]`` where each change took effect in this part) and
  ``exhausted`` (sources that left this part's draw).

:func:`merge` (what ``ais_wds.job_state`` calls for mix states) makes one job state from every part's:
the positions' job state, and per source one job state for every epoch some part was reading, the parts
past an epoch counted as done with it and those before it as not started, so the next job reads the
rest of each of those epochs exactly once. A source's owed samples (a shuffle's ``held`` / ``open``,
:data:`ais_wds.epochs.plan.OWED_KEYS`) count once, in the epoch of the part that holds them; a part that
has not begun a queued epoch still owes its share of that job state's. Pure logic; no I/O, no torch.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from ..epochs.plan import JOB_KIND, JOB_MERGERS, OWED_KEYS, PRIVATE_KEYS, check_identity, merge_job_state
from ..errors import ConfigError
from ..shuffle.buffer import shares

PART_KIND = "ais_wds.mix"
JOB_MIX_KIND = "ais_wds.mix_job"
VERSION = 1
DONE = 1 << 62
"""Progress of a part past an epoch: more than any share (an epoch plan reads nothing after it)."""
MAX_CHANGES = 64
"""Weight changes kept in a part state (the last ones)."""


def check(state: Any, identity: Dict[str, Any]) -> Dict[str, Any]:
    """``state`` if it is a mix part or job state for a mix of this ``identity``.

    Raises:
        ConfigError: anything else (says what to pass).
    """
    check_identity(state, identity, "Mix", kinds=(PART_KIND, JOB_MIX_KIND), version=VERSION)
    return dict(state)


def merge(parts: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """One job state from the part states of every rank and worker of a mix (elastic resume at any shape).

    Raises:
        ConfigError: parts of different mixes or epochs, or parts missing (from the positions' merge).
    """
    first = parts[0]
    identity = {k: first[k] for k in first if k not in _PART_KEYS}
    for part in parts:
        check(part, identity)
        if part["kind"] != PART_KIND:
            raise ConfigError("ais_wds.job_state got a mix job state among part states",
                              hint="gather the loader states of every rank, taken at the same step")
    positions = merge_job_state([p["positions"] for p in parts])
    epoch = int(first["positions"]["epoch"])
    if int(positions["epoch"]) != epoch:  # every part read its whole share: the next epoch starts fresh
        sources: List[Dict[str, Any]] = [{"queue": []} for _ in first["sources"]]
    else:
        sources = [_merge_source([p["sources"][i] for p in parts]) for i in range(len(first["sources"]))]
    newest = max(parts, key=lambda p: int(p.get("latest_version", 0)))  # what the last set_weights set
    return {**identity, "kind": JOB_MIX_KIND, "positions": positions, "sources": sources,
            "weights": list(newest["latest"]), "latest": list(newest["latest"]), "changes": [], "exhausted": []}


_PART_KEYS = ("kind", "positions", "sources", "weights", "latest", "latest_version", "changes", "exhausted")


def _merge_source(entries: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Per source: job states for each epoch from the oldest a part is reading to the newest any part
    reached, what was consumed taken out; ``epoch``: the first one the next job reads."""
    states = [e["state"] for e in entries]
    epochs = [int(s["epoch"]) for s in states]
    queued = [q for e in entries for q in e.get("queue", [])]
    low = min(epochs)
    high = max(epochs + [int(q["epoch"]) for q in queued])
    template = without_owed(states[0])  # (a part's held samples are that part's, of its own epoch)
    parts = int(template["world_size"]) * int(template["num_workers"])
    out: List[Dict[str, Any]] = []
    for epoch in range(low, high + 1):
        job_of_epoch = next((q for q in queued if int(q["epoch"]) == epoch), None)
        layers: Any = next((s["layers"] for s in states if int(s["epoch"]) == epoch),
                           job_of_epoch["layers"] if job_of_epoch is not None else [])
        per_part = []
        for state, at in zip(states, epochs):
            if at == epoch:
                per_part.append(state)
                continue
            made = dict(template)
            made.update(epoch=epoch, layers=layers, rank=state["rank"], worker=state["worker"],
                        progress=[DONE, 0] if at > epoch else [0, 0])
            if "window" in made:
                made["window"] = 0
            if at < epoch and job_of_epoch is not None:  # not begun: its share of the queued job's owed samples
                index = int(state["rank"]) * int(template["num_workers"]) + int(state["worker"])
                made.update({k: shares(list(job_of_epoch[k] or ()), index, parts)
                             for k in OWED_KEYS if k in job_of_epoch})
            per_part.append(made)
        job = merge_job_state(per_part)
        if job.get("kind") == JOB_KIND and int(job["epoch"]) == epoch:
            out.append(job)
    return {"queue": out, "epoch": int(out[0]["epoch"]) if out else high + 1}


def without_owed(state: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of a source's part state without what belongs to the pass it was taken in: the samples a
    shuffle holds or has open (:data:`~ais_wds.epochs.plan.OWED_KEYS`) and its generators
    (:data:`~ais_wds.epochs.plan.PRIVATE_KEYS`)."""
    return {k: v for k, v in state.items() if k not in OWED_KEYS + PRIVATE_KEYS}


JOB_MERGERS[PART_KIND] = merge
