"""What one :func:`ais_wds.pack.pack` run planned and did: :class:`PackReport`.

Engines fill it as shards complete (:meth:`PackReport.count`, from one thread at a time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from .plan import Plan, PlannedShard


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

    def count(self, shard: PlannedShard) -> None:
        """Record ``shard`` as written by this run (call from one thread at a time)."""
        self.written.append(shard.url)
        self.samples += shard.num_samples
        self.bytes += shard.size
