"""The API reference (docs/api/*.md, docs/errors.md) covers every public name of the top-level package.

Each ``::: ais_wds.<module>.<Name>`` line of the docs is one entry that mkdocstrings renders from the
docstrings; `make docs` (strict) fails when an entry names something that does not exist. This test
fails the other way round: a name in ``ais_wds.__all__`` that no page documents.
"""

import re
from pathlib import Path

import ais_wds
import ais_wds.errors

DOCS = Path(__file__).resolve().parents[2] / "docs"
ALIASES = {"AISFileListerIterDataPipe", "AISFileLoaderIterDataPipe"}  # the 0.1 names of AISFileLister / Loader


def documented() -> set:
    entries = set()
    for page in DOCS.rglob("*.md"):
        entries |= set(re.findall(r"^::: (ais_wds[\w.]*)", page.read_text(encoding="utf-8"), flags=re.M))
    return entries


def test_every_public_name_has_an_entry_in_the_api_reference():
    entries = documented()
    names = {e.rsplit(".", 1)[-1] for e in entries}
    errors_whole = "ais_wds.errors" in entries
    missing = sorted(n for n in ais_wds.__all__ if n not in names and n not in ALIASES
                     and not (errors_whole and hasattr(ais_wds.errors, n)))
    assert missing == [], f"add `::: <defining module>.<name>` to a page of docs/api/ for {missing}"


def test_the_errors_page_documents_the_whole_errors_module():
    assert "ais_wds.errors" in documented()
