"""``ais-wds doctor``: check a setup in one command and say what to fix.

:func:`diagnose` runs the cluster checks (:mod:`~ais_wds.doctor.cluster`: TLS, endpoint, auth, AIS
version, health, direct reads) and, for each prefix URL given, the data checks
(:mod:`~ais_wds.doctor.data`: listing rate, GET throughput against a raw read, a look at a few shards,
the shard index). Each result is a :class:`~ais_wds.doctor.check.Check` line: OK, WARN, FAIL (with the
action to take) or SKIP. Nothing here shows a token. Imports neither torch nor webdataset.
"""

from __future__ import annotations

from typing import List, Sequence

from ..client import Client
from .check import FAIL, OK, SKIP, WARN, Check
from .cluster import check_cluster
from .data import check_data

__all__ = ["FAIL", "OK", "SKIP", "WARN", "Check", "diagnose", "failed"]


def diagnose(client: Client, urls: Sequence[str] = ()) -> List[Check]:
    """Every check, in order: the cluster's, then each URL's (skipped when the cluster is not usable)."""
    checks, facts = check_cluster(client)
    for url in urls:
        if facts.usable:
            checks += check_data(url, client)
        else:
            checks.append(Check(f"data {url}", SKIP, "the cluster checks failed"))
    return checks


def failed(checks: Sequence[Check]) -> bool:
    """True when any check failed."""
    return any(c.status == FAIL for c in checks)
