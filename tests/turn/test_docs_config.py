"""docs/self-hosting.md quotes the coturn configuration the tests run with, word for word."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.coturn import TEMPLATE, render_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "self-hosting.md"


def quoted_config() -> str:
    text = DOC.read_text()
    section = text[text.index("### The coturn setup") :]
    match = re.search(r"```conf\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no ```conf block under '### The coturn setup'"
    return match.group(1)


def test_docs_quote_the_fixture_config() -> None:
    assert quoted_config() == TEMPLATE.read_text()


def test_every_placeholder_is_explained_in_the_docs() -> None:
    names = set(re.findall(r"\$\{(\w+)\}", TEMPLATE.read_text()))
    section = DOC.read_text().split("### The coturn setup", 1)[1].split("\n## ", 1)[0]
    assert names, "the template has no placeholders"
    for name in names:
        assert f"`{name}`" in section, f"docs do not explain ${{{name}}}"
    render_config(**dict.fromkeys(names, "x"))  # and nothing else is left to fill in
