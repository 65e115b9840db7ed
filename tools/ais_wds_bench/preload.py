"""Imported once by section 1's fork server: loads every library a contender uses, so that each
measurement runs in a fresh process (forked from the server) without paying seconds of imports.
"""

from __future__ import annotations

import aistore.pytorch  # noqa: F401
import torch  # noqa: F401
import urllib3  # noqa: F401
import webdataset  # noqa: F401

import ais_wds  # noqa: F401  (registers the ais:// gopen handlers)
