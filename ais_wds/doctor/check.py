"""One line of ``ais-wds doctor``'s report: a :class:`Check` (name, status, what was seen, what to do)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
STATUSES = (OK, WARN, FAIL, SKIP)


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    Attributes:
        name: what was checked (``endpoint``, ``auth``, ``shards ais://b/train-``...).
        status: ``OK``, ``WARN``, ``FAIL`` or ``SKIP`` (not run: an earlier check failed).
        detail: what was seen, with figures; never a token.
        action: what to do about it (every FAIL and WARN has one).
    """

    name: str
    status: str
    detail: str
    action: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")
        if self.status in (FAIL, WARN) and not self.action:
            raise ValueError(f"a {self.status} check needs an action: {self.name}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)
