"""Which engine builds a pack job's shards: :func:`choose_engine`, and the cluster engine's eligibility
(:func:`cluster_unsupported`).

The ``auto`` default picks the cluster engine (:mod:`ais_wds.pack.engines.cluster`: AIS assembles the
shards) only where it measured faster and can build the plan, else the client engine
(:mod:`ais_wds.pack.engines.client`: members fetched into this process and written). See docs/pack.md.

Pure functions of the plan and the destination template; no I/O, no logging. Thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from ..errors import ConfigError
from ..tar import writer as tarwrite
from ..urls import parse_url
from .options import ENGINES
from .plan import PlannedShard

AUTO_CLUSTER_MAX_MEMBER = 128 << 10
"""``engine="auto"`` picks the cluster engine only when members average at most this many bytes: at
10 KiB it measured 3x the client engine's MB/s, at 100 KiB about the same, at 256 KiB and 1 MiB less
(docs/pack.md)."""


@dataclass(frozen=True)
class EngineChoice:
    """The engine that builds the shards (``"client"`` or ``"cluster"``), and why the cluster engine is
    not used (None when it is, or when the client engine was asked for)."""

    engine: str
    note: Optional[str] = None


def choose_engine(requested: str, shards: List[PlannedShard], dst_pattern: str) -> EngineChoice:
    """The engine for ``shards`` (this run's part of the plan) written to ``dst_pattern``.

    * ``"client"``: the client engine.
    * ``"cluster"``: the cluster engine when it can build the plan (:func:`cluster_unsupported` is None),
      else the client engine with the reason.
    * ``"auto"``: as ``"cluster"``, but also the client engine for sources that are not ``ais://`` (the
      cluster engine would have AIS prefetch them first) and when the first shard's members average more
      than :data:`AUTO_CLUSTER_MAX_MEMBER` bytes (there the client engine measured faster).

    Raises:
        ConfigError: ``requested`` is not one of :data:`~ais_wds.pack.options.ENGINES`.
    """
    if requested not in ENGINES:
        raise ConfigError(f"pack: engine must be one of {ENGINES}, got {requested!r}")
    if requested == "client":
        return EngineChoice("client")
    members = shards[0].members() if shards else []  # the first shard's
    mean = sum(m[2] for m in members) / max(1, len(members))
    scheme = members[0][1].split("://", 1)[0] if members else "ais"
    if requested == "auto" and scheme != "ais":
        note: Optional[str] = (f"{scheme}:// sources: auto uses the client engine (--engine cluster has AIS "
                               "prefetch the objects and assemble the shards)")
    elif requested == "auto" and mean > AUTO_CLUSTER_MAX_MEMBER:
        note = (f"members average {mean / 1024:.0f} KiB; above {AUTO_CLUSTER_MAX_MEMBER >> 10} KiB "
                "the client engine measured faster (--engine cluster forces the cluster engine)")
    else:
        note = cluster_unsupported(shards, dst_pattern)
    return EngineChoice("client", note) if note else EngineChoice("cluster")


def cluster_unsupported(shards: List[PlannedShard], dst_pattern: str) -> Optional[str]:
    """Why these shards cannot be built by the cluster engine (a sentence), or None when they can.

    It can build shards whose members are named exactly like their objects (no ``--strip-prefix``, the
    ``wds`` key rule), whose every header is one 512-byte ustar block (names up to 100 bytes), with one
    source bucket per shard (``ais://`` of this cluster, or a cloud bucket it reaches), into an ``ais://``
    destination of the same cluster.
    """
    dst = parse_url(dst_pattern)
    if dst.provider != "ais" or dst.has_namespace:
        return f"the destination {dst.scheme}://{dst.bucket} is not an ais:// bucket of this cluster"
    for shard in shards:
        members = shard.members()
        if not members:
            continue
        first = parse_url(members[0][1])
        if first.has_namespace:
            return f"{first} is in a remote cluster or namespace; the cluster engine reads local buckets"
        base = str(first)[:len(str(first)) - len(first.path)]
        cut = len(base)
        for name, source, _, header_size in members:
            if not source.startswith(base):
                return f"shard {shard.url} takes samples from two buckets; the cluster engine reads one per shard"
            if name != source[cut:]:
                return (f"member {name!r} is not named like its object {source[cut:]!r} (AIS names "
                        "archive members after their objects; --strip-prefix and --key stem/REGEX rename them)")
            if header_size != tarwrite.BLOCK:
                return f"member {name!r} needs more than one ustar header block (name over 100 bytes)"
    return None
