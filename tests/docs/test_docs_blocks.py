"""Every code block marked runnable in README.md and docs/**/*.md runs as written against the live cluster.

The convention: an HTML comment on the line right before a ```python fence (invisible on GitHub and on the
docs site)::

    <!-- runnable -->           runs in the page's namespace, after the page's earlier runnable blocks
    <!-- runnable: script -->   a whole script: written to a file and run as `python FILE` in a fresh process
                                (what torch.multiprocessing.spawn needs: its children re-import the script)

One test per page; its blocks run in order, so a block may use what an earlier one defined or wrote.
Tracebacks name the page and its line. Blocks make the buckets and objects they read themselves, except
the ``ais://readme`` bucket of docs/datasets.md and docs/pipes.md (``images/img-0000.jpg`` ..
``images/img-0099.jpg``, 10 KiB each), which the fixture below (re)writes. Buckets are kept between runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple

import pytest

from ais_wds import write_bytes

REPO = Path(__file__).resolve().parents[2]
MARK = re.compile(r"^<!-- runnable(?::\s*(?P<mode>script))?\s*-->\n```python\n(?P<code>.*?)^```", re.M | re.S)


class Block(NamedTuple):
    line: int  # of the first code line in the page
    script: bool
    code: str


def blocks(page: Path) -> List[Block]:
    text = page.read_text(encoding="utf-8")
    return [Block(text.count("\n", 0, m.start("code")) + 1, m.group("mode") == "script", m.group("code"))
            for m in MARK.finditer(text)]


PAGES = [p for p in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))] if blocks(p)]


def _image(i: int) -> bytes:
    head = b"\xff\xd8\xff\xe0" + f"img-{i:04d}".encode()
    return (head * (10240 // len(head) + 1))[:10240]


@pytest.fixture(scope="module")
def readme_bucket(client):
    client.sdk.bucket("readme").create(exist_ok=True)
    for i in range(100):
        write_bytes(f"ais://readme/images/img-{i:04d}.jpg", _image(i), client)
    return "readme"


def test_the_readme_has_its_four_runnable_quick_starts_a_mix_and_every_datasets_example_runs():
    readme = blocks(REPO / "README.md")
    assert [b.script for b in readme] == [False, False, False, True, False]  # 4 quick starts, then Mix
    assert "Mix(" in readme[4].code
    datasets = (REPO / "docs" / "datasets.md").read_text(encoding="utf-8")
    assert len(blocks(REPO / "docs" / "datasets.md")) == datasets.count("```python") >= 5


def test_a_marked_block_is_found_with_its_line_and_mode(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# t\n\n```python\nnot marked\n```\n<!-- runnable -->\n```python\na = 1\n```\n"
                    "<!-- runnable: script -->\n```python\nprint(2)\n```\n")
    assert blocks(page) == [Block(8, False, "a = 1\n"), Block(12, True, "print(2)\n")]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_runnable_blocks_of_the_page_run(page, request, ais_endpoint, tmp_path, monkeypatch):
    text = page.read_text(encoding="utf-8")
    if "ais://readme/" in text:
        request.getfixturevalue("readme_bucket")
    monkeypatch.setenv("AIS_ENDPOINT", ais_endpoint)
    monkeypatch.chdir(tmp_path)
    name = str(page.relative_to(REPO))
    namespace = {"__name__": "docs_" + re.sub(r"\W", "_", name)}
    for block in blocks(page):
        source = "\n" * (block.line - 1) + block.code  # tracebacks show the page's own line numbers
        if not block.script:
            exec(compile(source, name, "exec"), namespace)
            continue
        script = tmp_path / f"block_{block.line}.py"
        script.write_text(source)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0, f"{name}, script block at line {block.line}:\n{proc.stdout[-3000:]}" \
                                     f"\n{proc.stderr[-6000:]}"
