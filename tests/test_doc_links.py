"""The docs stand alone: every relative link and anchor in README.md and docs/*.md resolves,
and nothing in the repository points at specification files outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and [text]: target; images too. Code spans and fenced blocks are skipped.
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|^\[[^\]]+\]:\s*(\S+)", re.M)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
# Built in two parts so that this file does not mention them itself.
OUTSIDE = ("../" + "shared", "/work/" + "shared")
# The specification's pages by name: a reader of the repository has none of them.
SPEC_PAGES = re.compile(r"\b(?:SDK|PROTOCOL|SERVER|ARCHITECTURE)" + r"\.md\b")


def prose(text: str) -> str:
    """Markdown without its fenced blocks and code spans."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file (duplicates get -1, -2, ...)."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", path.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        unique, n = slug, 0
        while unique in found:
            n += 1
            unique = f"{slug}-{n}"
        found.add(unique)
    return found


def links(path: Path) -> list[str]:
    """Relative link targets of a Markdown file (external URLs and mail links left out)."""
    targets = [a or b for a, b in LINK.findall(prose(path.read_text()))]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(doc: Path) -> None:
    broken = []
    for target in links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists() or ROOT not in (dest, *dest.parents):
            broken.append(f"{target}: no such file in the repository")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, broken


def test_the_guides_are_linked_from_the_readme() -> None:
    readme = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    assert set(DOCS[1:]) <= readme, sorted(p.name for p in set(DOCS[1:]) - readme)


def test_nothing_points_outside_the_repository() -> None:
    """Files git tracks, and new ones it does not ignore (so no .venv, node_modules, build
    output or caches)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    offenders = []
    for name in filter(None, listed.split("\0")):
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files (images) hold no references; a deleted file is gone
        offenders += [f"{name}: {o}" for o in OUTSIDE if o in text]
        offenders += [f"{name}: {m.group()}" for m in SPEC_PAGES.finditer(text)]
    assert not offenders, offenders
