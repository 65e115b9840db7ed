"""A stream whose constructor raises (a bad URL) is a half-built object that the garbage collector still
finalises (``io.IOBase.__del__`` calls ``close()``): it must close cleanly, and a bad URL on the command
line prints its one error line and nothing else ("Exception ignored ... AttributeError" was printed on
Python 3.13, and on every version in development mode).

No cluster: the URLs are refused before any request.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ais_wds import Client, URLError
from ais_wds.reader import ResumingObjectRaw
from ais_wds.writer import ObjectWriter

NOWHERE = "http://127.0.0.1:9"

BAD_URLS = [("ais://A/../B/x", "object name has a '..' segment"), ("foo://A/x", "unknown scheme 'foo'")]


@pytest.mark.parametrize("cls", [ResumingObjectRaw, ObjectWriter])
@pytest.mark.parametrize("url,cause", BAD_URLS, ids=["dotdot", "scheme"])
def test_a_stream_whose_constructor_raised_closes_cleanly(cls, url, cause):
    stream = cls.__new__(cls)  # the object the finaliser sees when __init__ raises
    with pytest.raises(URLError, match=cause):
        stream.__init__(Client(NOWHERE), url)
    stream.close()  # what io.IOBase's finaliser calls
    assert stream.closed
    stream.close()  # idempotent


@pytest.mark.parametrize("url,cause", BAD_URLS, ids=["dotdot", "scheme"])
def test_a_writer_whose_constructor_raised_is_finalised_without_committing(url, cause):
    writer = ObjectWriter.__new__(ObjectWriter)
    with pytest.raises(URLError, match=cause):
        writer.__init__(Client(NOWHERE), url)
    writer.__del__()  # a commit would raise (no URL, no endpoint); __del__ aborts, and there is nothing to abort
    assert writer.closed


@pytest.mark.parametrize("dev_mode", [False, True], ids=["default", "dev-mode"])
@pytest.mark.parametrize("url,cause", BAD_URLS, ids=["dotdot", "scheme"])
def test_cat_of_a_bad_url_prints_exactly_one_line(url, cause, dev_mode):
    # development mode (-X dev) reports what the finaliser raises on every version; 3.13 does by default
    flags = ["-X", "dev"] if dev_mode else []
    proc = subprocess.run([sys.executable, *flags, "-m", "ais_wds.cli", "cat", url], capture_output=True, text=True,
                          env={**os.environ, "AIS_ENDPOINT": NOWHERE}, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"ais-wds cat: error: {url}: ") and cause in lines[0]
