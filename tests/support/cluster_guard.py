"""The guard behind `make unit`: with ``AIS_WDS_UNIT_ONLY=1`` no fixture may start or contact an AIS cluster.

`make unit` runs ``pytest -m "not cluster and not unit_suite"`` with ``AIS_WDS_UNIT_ONLY=1``. The ``cluster``
marker is added by ``tests/conftest.py`` to every test whose fixture closure holds one of
:data:`CLUSTER_FIXTURES`; every path in the fixtures that starts or contacts a cluster calls
:func:`refuse_in_unit_run` first, so a cluster fixture that escaped the marker fails loudly instead of
starting a cluster (minutes) in a unit run.
"""

from __future__ import annotations

import os

import pytest

UNIT_ONLY = "AIS_WDS_UNIT_ONLY"
"""Set to 1 by `make unit`."""

CLUSTER_FIXTURES = frozenset({
    "ais_endpoint",  # the session cluster (scripts/ais-local start when AIS_ENDPOINT is unset)
    "client", "bucket", "module_bucket",  # on the session cluster
    "local_cluster",  # kills and restarts the session cluster's targets
    "clouds_cluster", "secure_cluster",  # private clusters (tests/conftest.py)
    "private_cluster",  # tests/system/test_faults.py: a private cluster for kills and gateway restarts
})
"""Fixtures that start or contact an AIS cluster: a test that uses one, directly or through other fixtures
(pytest's fixture closure), is marked ``cluster``."""


def refuse_in_unit_run(what: str) -> None:
    """Fail the test at once if this is a unit run (``AIS_WDS_UNIT_ONLY=1``); ``what`` names the fixture."""
    if os.environ.get(UNIT_ONLY) == "1":
        pytest.fail(f"a unit run started a cluster fixture: {what} ({UNIT_ONLY}=1, set by `make unit`); "
                    "mark it: add the fixture to CLUSTER_FIXTURES in tests/support/cluster_guard.py, or mark "
                    "the test `@pytest.mark.cluster`", pytrace=False)
