"""ais_wds_bench: ais_wds against the raw-GET limit and its peers, section by section, in one run.

Run it as ``scripts/bench ...`` or ``python -m ais_wds_bench ...`` (the repo's .venv, with the tools
installed editable by ``make install``); ``README.md`` next to this file says what each part does and how
to add a section. It runs from a checkout: results go to ``<repo>/bench-results`` and pictures to
``<repo>/docs`` (full runs).
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The checkout this package lives in (tools/ais_wds_bench/ -> the repository root)."""
