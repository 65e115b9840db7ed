"""Naming rules of WebDataset shards, in one place: sample keys, skipped metadata members, shard stems.

Pure functions over strings; no I/O, no webdataset or torch import. The rules match webdataset 1.0.2:

* :func:`base_plus_ext`: a member name splits into ``(key, extension)`` at the first dot of its file
  name (``a/b.c.jpg`` -> ``("a/b", "c.jpg")``); names without such a dot give ``(None, None)``.
* :func:`is_meta_member`: ``__meta__``-style members (``__x__`` at top level, or any name matching
  webdataset's ``skip_meta`` pattern) are not sample members.
* :func:`shard_stem`: the common name of a set of shards, for job-level objects beside them
  (``train-{000..099}.tar`` and ``train-%06d.tar`` -> ``train``).
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

__all__ = ["base_plus_ext", "is_meta_member", "shard_stem"]

_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset.tariterators.base_plus_ext's pattern
_SKIP_META = re.compile(r"__[^/]*__($|/)")  # webdataset's skip_meta default


def base_plus_ext(name: str) -> Tuple[Optional[str], Optional[str]]:
    """``(key, extension)`` of a member name, split at the first dot of its file name, or ``(None, None)``."""
    match = _KEY_EXT.match(name)
    if match is None:
        return None, None
    return match.group(1), match.group(2)


def is_meta_member(name: str) -> bool:
    """True for members webdataset skips: ``__name__`` at top level or a ``__...__`` path component first."""
    if name[:2] != "__":
        return False
    return ("/" not in name and name.endswith("__")) or _SKIP_META.match(name) is not None


def shard_stem(file_name: str) -> str:
    """The stem of a shard file name or name template: cut at its first ``%`` or ``{``, then trailing
    ``-``, ``_`` and ``.`` removed (``train-%06d.tar`` -> ``train``, ``train-`` -> ``train``); ``shards``
    when nothing is left."""
    cut = min((i for i in (file_name.find("%"), file_name.find("{")) if i >= 0), default=len(file_name))
    return file_name[:cut].rstrip("-_.") or "shards"
