"""A griffe extension for the docs site: the docstrings' Sphinx roles (":class:`~ais_wds.Client`",
":func:`read_bytes`") become Markdown code spans (`Client`, `read_bytes`), so the API pages do not show the
role names. Loaded by mkdocs.yml (mkdocstrings' python handler, ``extensions``); not part of the package.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`~?([^`]+)`")


def _short(match: re.Match) -> str:
    target = match.group(1)
    whole = match.group(0)
    # "~a.b.C" shows "C"; "a.b.C" keeps the full path, as Sphinx does
    return f"`{target.rsplit('.', 1)[-1] if ':`~' in whole else target}`"


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx cross-reference roles in every docstring to Markdown code spans."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_short, obj.docstring.value)
