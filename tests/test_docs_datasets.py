"""Every ```python block of docs/datasets.md runs as written, against the bucket the docs describe:
``ais://readme`` with ``images/img-0000.jpg`` .. ``images/img-0099.jpg`` of 10 KiB each.

The bucket is shared with other docs tests, so it is created if missing and never destroyed; its
``images/`` objects are (re)written to the documented content before the blocks run.
"""

import re
from pathlib import Path

import pytest

from ais_wds import write_bytes

DOC = Path(__file__).resolve().parents[1] / "docs" / "datasets.md"
README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.M | re.S)
README_BLOCKS = re.findall(r"^<!-- runs as a test.*?-->\n```python\n(.*?)^```", README.read_text(encoding="utf-8"),
                           flags=re.M | re.S)


def _image(i: int) -> bytes:
    head = b"\xff\xd8\xff\xe0" + f"img-{i:04d}".encode()
    return (head * (10240 // len(head) + 1))[:10240]


@pytest.fixture(scope="module")
def readme_bucket(client, ais_endpoint):
    client.sdk.bucket("readme").create(exist_ok=True)
    for i in range(100):
        write_bytes(f"ais://readme/images/img-{i:04d}.jpg", _image(i), client)
    return "readme"


def test_the_doc_has_python_examples():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_docs_example_runs(index, readme_bucket, ais_endpoint, monkeypatch):
    monkeypatch.setenv("AIS_ENDPOINT", ais_endpoint)
    code = compile(BLOCKS[index], f"{DOC.name}[python block {index}]", "exec")
    exec(code, {"__name__": f"docs_datasets_block{index}"})


def test_the_readme_has_runnable_dataset_examples():
    assert len(README_BLOCKS) >= 1


@pytest.mark.parametrize("index", range(len(README_BLOCKS)), ids=[f"readme{i}" for i in range(len(README_BLOCKS))])
def test_readme_example_runs(index, readme_bucket, ais_endpoint, monkeypatch):
    monkeypatch.setenv("AIS_ENDPOINT", ais_endpoint)
    code = compile(README_BLOCKS[index], f"README.md[marked python block {index}]", "exec")
    exec(code, {"__name__": f"readme_block{index}"})
