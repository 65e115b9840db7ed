"""Every ```python block of docs/datasets.md runs as written, against the bucket the docs describe:
``ais://readme`` with ``images/img-0000.jpg`` .. ``images/img-0099.jpg`` of 10 KiB each.

The bucket is shared with other docs tests, so it is created if missing and never destroyed; its
``images/`` objects are (re)written to the documented content before the blocks run.
"""

import re
from pathlib import Path

import pytest

from ais_wds import write_bytes

DOC = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.M | re.S)


def _image(i: int) -> bytes:
    head = b"\xff\xd8\xff\xe0" + f"img-{i:04d}".encode()
    return (head * (10240 // len(head) + 1))[:10240]


@pytest.fixture(scope="module")
def readme_bucket(client, ais_endpoint):
    client.sdk.bucket("readme").create(exist_ok=True)
    for i in range(100):
        write_bytes(f"ais://readme/images/img-{i:04d}.jpg", _image(i), client)
    return "readme"


EXAMPLES = [(DOC.name, i, block) for i, block in enumerate(BLOCKS)]


def test_the_docs_have_python_examples():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("source,index,code", EXAMPLES, ids=[f"{s}-block{i}" for s, i, _ in EXAMPLES])
def test_docs_example_runs(source, index, code, readme_bucket, ais_endpoint, monkeypatch):
    monkeypatch.setenv("AIS_ENDPOINT", ais_endpoint)
    exec(compile(code, f"{source}[python block {index}]", "exec"), {"__name__": f"docs_example_{index}"})
