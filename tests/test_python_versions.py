"""The Pythons the package claims are the ones its test matrix runs: pyproject.toml's classifiers list
exactly noxfile.py's ``PYTHONS``, and ``requires-python`` starts at the oldest of them.

Read as text and with ``ast`` (tomllib is 3.11+, nox need not be importable here).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _matrix_pythons() -> list[str]:
    tree = ast.parse((REPO / "noxfile.py").read_text())
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "PYTHONS" for t in targets):
                return list(ast.literal_eval(node.value))
    raise AssertionError("noxfile.py has no PYTHONS list")


def test_the_classifiers_list_exactly_the_pythons_the_matrix_tests():
    pyproject = (REPO / "pyproject.toml").read_text()
    claimed = re.findall(r'"Programming Language :: Python :: (\d+\.\d+)"', pyproject)
    assert claimed == _matrix_pythons()


def test_requires_python_starts_at_the_oldest_tested_python():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^requires-python = "(.*)"$', pyproject, re.M).group(1) == f">={_matrix_pythons()[0]}"
