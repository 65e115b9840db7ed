"""A griffe extension for the docs site, loaded by mkdocs.yml (mkdocstrings' python handler, ``extensions``);
not part of the package. Two rewrites of every docstring before it is parsed:

* Sphinx roles (":class:`~ais_wds.Client`", ":func:`read_bytes`") become Markdown code spans (`Client`,
  `read_bytes`), so the API pages do not show the role names;
* an argument line that documents several parameters at once ("rank, world_size: ...") becomes one entry per
  parameter with the same description, so the parameter table shows each one with its own type and default.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_GROUPED = re.compile(r"^(?P<indent>\s+)(?P<names>\w+(?:, \w+)+): (?P<rest>.*)$")
_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`~?([^`]+)`")


def _short(match: re.Match) -> str:
    target = match.group(1)
    whole = match.group(0)
    # "~a.b.C" shows "C"; "a.b.C" keeps the full path, as Sphinx does
    return f"`{target.rsplit('.', 1)[-1] if ':`~' in whole else target}`"


def _split_grouped(text: str) -> str:
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = _GROUPED.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent = len(m.group("indent"))
        j = i + 1  # the description's continuation lines are indented deeper
        while j < len(lines) and lines[j].strip() and len(lines[j]) - len(lines[j].lstrip()) > indent:
            j += 1
        for name in m.group("names").split(", "):
            out.append(f"{m.group('indent')}{name}: {m.group('rest')}")
            out.extend(lines[i + 1:j])
        i = j
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx cross-reference roles to Markdown code spans, and split grouped parameter entries."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _split_grouped(_ROLE.sub(_short, obj.docstring.value))
