"""Links in README.md and docs/*.md: every relative target exists on disk, and every anchor into a
Markdown file names one of its headings (GitHub's slugs). Pure file reading, no cemasim import."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, spaces to '-', only alphanumerics, '-', '_'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays, its target goes
    text = text.strip().lower().replace(" ", "-")
    return "".join(c for c in text if c.isalnum() or c in "-_")


def anchors(path: Path) -> set[str]:
    """Every heading's slug in a Markdown file; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every inline and reference-style link outside code."""
    out = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        text = INLINE_CODE.sub("", line)
        out += [(number, m.group(1)) for m in LINK.finditer(text)]
        m = REFERENCE.match(text)
        if m:
            out.append((number, m.group(1)))
    return out


def broken(path: Path) -> list[str]:
    problems = []
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        where = f"{path.relative_to(REPO)}:{number}: ({target})"
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{where} does not exist")
        elif anchor and dest.suffix == ".md" and dest.is_file() and unquote(anchor).lower() not in anchors(dest):
            problems.append(f"{where}: no heading of {dest.name} has the anchor #{anchor}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_resolve(page: Path):
    assert broken(page) == []


def test_every_docs_page_is_listed_in_readme():
    readme = {target.partition("#")[0] for _, target in links(REPO / "README.md")}
    missing = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme]
    assert missing == [], f"README.md's Documentation list lacks {missing}"


def test_slugs():
    assert slug("Sweep folders under faults") == "sweep-folders-under-faults"
    assert slug("`summary.json`") == "summaryjson"
    assert slug("Results on the embedded default (measured)") == "results-on-the-embedded-default-measured"
    assert slug("Set up and run (fresh machine, offline after install)") == \
        "set-up-and-run-fresh-machine-offline-after-install"
    assert slug("Links to [the zoo](x.md) and more") == "links-to-the-zoo-and-more"
