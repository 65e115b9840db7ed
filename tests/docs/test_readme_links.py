"""The README's links into the repository resolve: every linked file exists, and every #anchor is a heading
of the linked page (GitHub's anchors, which the docs site uses too: mkdocs.yml's toc slugify gives the same
for every heading of docs/). The docs site's own links are checked by `make docs` (mkdocs build --strict);
the README is not part of the site.
"""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
LINKS = re.findall(r"\]\((?!https?:)([^)#\s]+)(?:#([\w-]+))?\)", README)


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces -> ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)  # no code blocks
    return {github_anchor(re.sub(r"^#+\s*", "", h)) for h in re.findall(r"^#{1,6} .*$", text, flags=re.M)}


def test_a_heading_s_anchor_is_github_s():
    assert github_anchor("Section 9: the loader end to end (`sections/loader.py`)") == \
        "section-9-the-loader-end-to-end-sectionsloaderpy"


def test_the_readme_links_to_the_docs_pages():
    assert len({path for path, _ in LINKS if path.startswith("docs/")}) >= 15


def test_every_readme_link_and_anchor_resolves():
    broken = [f"{path}#{anchor}" if anchor else path for path, anchor in LINKS
              if not (REPO / path).exists() or (anchor and anchor not in anchors(REPO / path))]
    assert broken == []
