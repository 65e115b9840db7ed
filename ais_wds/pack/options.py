"""Every setting of a pack job in one value, :class:`PackOptions` (the CLI's flags map onto it one to one),
and the formats its planning fields are given in: sizes (:func:`parse_size`) and sample key rules
(:class:`KeyRule`).

Planning fields decide the plan (:func:`ais_wds.pack.plan.make_plan`); execution fields decide how one
run writes it. Each concept has one name; the keyword names ``pack()`` took before (``key``,
``shuffle``, ``settings``) are accepted by :func:`resolve` with a DeprecationWarning.

Pure values; no I/O. Thread- and process-safe (frozen).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from ..errors import ConfigError
from ..tar.names import base_plus_ext

MISSING_EXTENSION_ACTIONS = ("ignore", "warn", "abort", "exclude")
DEFAULT_SHARD_SIZE = 256 << 20
ENGINES = ("auto", "client", "cluster")
"""``PackOptions.engine`` values (see :func:`ais_wds.pack.engine_choice.choose_engine`)."""


# --------------------------------------------------------------------------------------------
# sizes and key rules


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
               "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
               "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def parse_size(text: str | int) -> int:
    """Bytes from ``"256MiB"``, ``"1.5GB"``, ``"64M"`` or ``"1000"``.

    KiB/MiB/GiB/TiB and the single letters K/M/G/T are powers of 1024; KB/MB/GB/TB powers of 1000.

    Raises:
        ConfigError: not a size, or not positive.
    """
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _SIZE_UNITS:
            raise ConfigError(f"not a size: {text!r}", hint="e.g. 256MiB, 1GB, 64M or a number of bytes")
        value = int(float(m.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise ConfigError(f"size must be positive, got {text!r}")
    return value


def _wds_safe(key: str) -> Optional[str]:
    """``key`` with dots in its last path component replaced by ``_`` (None if that component is empty)."""
    head, slash, tail = key.rpartition("/")
    if not tail:
        return None
    return head + slash + tail.replace(".", "_")


def _wds_ext(name: str) -> Optional[str]:
    """webdataset's extension of ``name``: what follows the first dot of its file name."""
    _, ext = base_plus_ext(name)
    return ext or None


@dataclass(frozen=True)
class KeyRule:
    """How an object name maps to ``(raw key, written key, extension)``.

    ``KeyRule.parse(spec)`` accepts:

    * ``"wds"`` (default): webdataset's rule, key = directory + file name up to its first dot,
      extension = the rest. Tar member names are the object names themselves.
    * ``"stem"``: key = the full name minus its last extension (``a/b.v2.jpg`` -> ``a/b.v2``,
      extension ``jpg``); written key ``a/b_v2``.
    * any other string: a regular expression with exactly one group, searched in the name; the
      group is the key, the extension is webdataset's (after the first dot of the file name).
    """

    spec: str = "wds"
    pattern: Optional[re.Pattern[str]] = None

    @classmethod
    def parse(cls, spec: Optional[str]) -> KeyRule:
        """Raises: ConfigError: an invalid regex, or one without exactly one group."""
        spec = spec or "wds"
        if spec in ("wds", "stem"):
            return cls(spec)
        try:
            pattern = re.compile(spec)
        except re.error as e:
            raise ConfigError(f"invalid sample key regex {spec!r}: {e}") from None
        if pattern.groups != 1:
            raise ConfigError(f"sample key regex {spec!r} must have exactly one group, it has {pattern.groups}",
                              hint=r"e.g. '(.*)\.[^/]+$' for the name minus its last extension")
        return cls(spec, pattern)

    def split(self, name: str) -> Optional[Tuple[str, str, str]]:
        """``(raw_key, written_key, ext)`` for ``name``, or None when it has no key or no extension."""
        if self.spec == "wds":
            key, ext = base_plus_ext(name)
            if not key or not ext:
                return None
            return key, key, ext
        if self.spec == "stem":
            slash = name.rfind("/")
            dot = name.rfind(".")
            if dot <= slash + 1 or dot == len(name) - 1:
                return None
            key, ext = name[:dot], name[dot + 1:]
        else:
            m = self.pattern.search(name)  # type: ignore[union-attr]
            ext = _wds_ext(name)
            if m is None or not m.group(1) or ext is None:
                return None
            key = m.group(1)
        written = _wds_safe(key)
        return (key, written, ext) if written else None


# --------------------------------------------------------------------------------------------
# the settings


PLAN_FIELDS = ("shard_size", "samples_per_shard", "key_rule", "exts", "missing_extension", "shuffle_seed", "mtime")
"""The fields a given ``plan=`` must have been made with (:meth:`PackOptions.plan_fields`)."""

RENAMED = {"key": "key_rule", "shuffle": "shuffle_seed"}
"""Keyword names ``pack()`` took before 0.2 -> the field each names (accepted with a DeprecationWarning)."""


@dataclass(frozen=True)
class PackOptions:
    """Every setting of a pack job. See :func:`ais_wds.pack.pack` and :func:`ais_wds.pack.plan.make_plan`.

    Planning (they decide the plan):
        shard_size: target shard size, bytes or a size such as ``"256MiB"`` (:func:`parse_size`); a shard
            exceeds it only when it holds one sample larger than the target.
        samples_per_shard: fixed number of samples per shard instead of a size.
        key_rule: sample key rule, a :class:`KeyRule` or its spec: ``"wds"`` (webdataset's), ``"stem"`` or
            a regex with one group (``--key``).
        exts: extensions every sample should have; ``missing_extension`` says what to do when one is
            missing (``ignore``, ``warn``, ``abort``, ``exclude``; the same policy covers objects
            whose names yield no key or extension: they are skipped, or abort the job).
        shuffle_seed: seed for a deterministic shuffle of the sample order (None keeps key order;
            ``--shuffle``).
        mtime: integer mtime of every member (0 makes shards byte-reproducible).
        strip_prefix: member names without the directory part of the source prefix (applied when the
            listing becomes :class:`~ais_wds.pack.plan.SourceObject` s, :func:`ais_wds.pack.plan_pack`).

    Execution:
        dry_run: plan and report only; write nothing.
        workers: parallel GET requests.
        parallel_shards: shards written (PUT) at once; default ``max(1, workers // 4)`` (client engine),
            ``max(2, workers // 2)`` (cluster engine).
        resume: skip shards that already exist complete (same plan); write the others.
        overwrite: replace existing shards. Without ``resume`` or ``overwrite``, an existing shard of
            the plan is an error.
        part: ``(I, N)``: write only shards whose number is I modulo N (N machines, same arguments).
        index: where to write the shard index (default ``<stem>.index.msgpack`` beside the shards).
        engine: ``"auto"`` (default), ``"client"`` (GET every member into this process, PUT the shards)
            or ``"cluster"`` (AIS assembles each shard in plan order); see
            :func:`ais_wds.pack.engine_choice.choose_engine` for what ``auto`` picks and when a plan is
            left to the client engine (``PackReport.engine_note`` says why). The cluster engine writes
            the objects' mtimes, not ``mtime``.

    Raises (constructor):
        ConfigError: an invalid value (size, key rule, ``missing_extension``, ``engine``).
    """

    shard_size: int = DEFAULT_SHARD_SIZE
    samples_per_shard: Optional[int] = None
    key_rule: KeyRule = field(default_factory=KeyRule)
    exts: Tuple[str, ...] = ()
    missing_extension: str = "warn"
    shuffle_seed: Optional[int] = None
    mtime: int = 0
    strip_prefix: bool = False
    dry_run: bool = False
    workers: int = 16
    parallel_shards: Optional[int] = None
    resume: bool = False
    overwrite: bool = False
    part: Tuple[int, int] = (0, 1)
    index: Optional[str] = None
    engine: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.shard_size, str):
            object.__setattr__(self, "shard_size", parse_size(self.shard_size))
        if not isinstance(self.key_rule, KeyRule):
            object.__setattr__(self, "key_rule", KeyRule.parse(self.key_rule))
        if self.missing_extension not in MISSING_EXTENSION_ACTIONS:
            raise ConfigError(f"missing_extension must be one of {MISSING_EXTENSION_ACTIONS}, "
                              f"got {self.missing_extension!r}")
        if self.shard_size <= 0 or (self.samples_per_shard is not None and self.samples_per_shard <= 0):
            raise ConfigError("shard_size and samples_per_shard must be positive")
        if self.engine not in ENGINES:
            raise ConfigError(f"pack: engine must be one of {ENGINES}, got {self.engine!r}")
        object.__setattr__(self, "exts", tuple(e.lower().lstrip(".") for e in self.exts if e.strip(". ")))
        object.__setattr__(self, "part", tuple(self.part))

    def plan_fields(self) -> Tuple[Any, ...]:
        """The values of :data:`PLAN_FIELDS`: two options plan alike when these are equal."""
        return tuple(getattr(self, name) for name in PLAN_FIELDS)


def resolve(options: Optional[PackOptions], overrides: Dict[str, Any]) -> PackOptions:
    """``options`` (default: all defaults) with ``overrides`` (field name -> value) applied.

    The names ``pack()`` took before (:data:`RENAMED`, and ``settings`` for ``options``) are accepted with
    a DeprecationWarning.

    Raises:
        ConfigError: an unknown name, a setting given under both its names, or an invalid value.
    """
    overrides = dict(overrides)
    if "settings" in overrides:
        _deprecated("settings", "options")
        if options is not None:
            raise ConfigError("pack: options and settings name the same argument; pass options only")
        options = overrides.pop("settings")
    for old, new in RENAMED.items():
        if old in overrides:
            _deprecated(old, new)
            if new in overrides:
                raise ConfigError(f"pack: {old} and {new} name the same setting; pass {new} only")
            overrides[new] = overrides.pop(old)
    try:
        return dataclasses.replace(options or PackOptions(), **overrides)
    except TypeError as e:
        raise ConfigError(f"pack: {e}", hint="settings are the fields of PackOptions") from None


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"pack({old}=...) is deprecated; use {new}=... (the PackOptions field)", DeprecationWarning,
                  stacklevel=4)
