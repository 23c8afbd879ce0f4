"""Credential resolution without a socket: channel patterns, JWT claims and clock leeway."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.server.wire import Wire

from metered_realtime.server.auth import ChannelScope, glob_match

# --- channel patterns ---------------------------------------------------------


def reference_match(pattern: str, name: str) -> bool:
    """The specification as a (backtracking) regex: ``*`` is ``.*``, all else literal."""
    regex = "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern))
    return re.fullmatch(regex, name, re.DOTALL) is not None


# A small alphabet makes matches (and near misses) common; regex metacharacters, a newline
# and a non-ASCII letter check that nothing but ``*`` is special.
ALPHABET = "ab*.?[]\\\né"
patterns = st.text(alphabet=ALPHABET, max_size=10)
names = st.text(alphabet=ALPHABET, max_size=14)


@given(patterns, names)
def test_glob_agrees_with_the_reference(pattern: str, name: str) -> None:
    assert glob_match(pattern, name) is reference_match(pattern, name)


@given(patterns, names)
def test_glob_matches_what_the_pattern_generates(pattern: str, name: str) -> None:
    # Replacing every * of a pattern with any text gives a name the pattern must match.
    fill = name[:3]
    assert glob_match(pattern, pattern.replace("*", fill))


@given(st.lists(patterns, max_size=4), names)
def test_scope_is_any_of_its_patterns(pats: list[str], name: str) -> None:
    scope = ChannelScope(pats)
    assert scope.allows(name) is any(reference_match(p, name) for p in pats)
    assert scope.empty is (not pats)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "", True),
        ("room-*", "room-", True),
        ("room-*", "room", False),
        ("tenant/42/*", "tenant/42/a/b", True),
        ("a*a", "a", False),  # prefix and suffix may not overlap
        ("a*a", "aa", True),
        ("*ab*ab*", "abab", True),
        ("*ab*ab*", "aba", False),
        ("room.1", "roomx1", False),  # '.' is literal
        ("r?", "ra", False),  # '?' is literal
        ("r?", "r?", True),
        ("a**b", "ab", True),
    ],
)
def test_glob_examples(pattern: str, name: str, expected: bool) -> None:
    assert glob_match(pattern, name) is expected


@pytest.mark.timeout(5)
def test_pathological_pattern_is_fast() -> None:
    # With a backtracking regex this one name took about ten seconds.
    name = "a" * 256
    assert not ChannelScope(["*a*a*a*a*b"]).allows(name)
    assert not ChannelScope(["*a" * 40 + "*b"]).allows(name)
    assert ChannelScope(["*a*a*a*a*"]).allows(name)
    long_name = "a" * 100_000
    for _ in range(100):
        assert not glob_match("*a*a*a*a*a*a*a*a*b", long_name)


@pytest.mark.timeout(5)
async def test_live_pathological_pattern_is_refused_quickly(server) -> None:
    key = server.new_key(channel_patterns=["*a*a*a*a*b"])
    wire = await Wire.open(server.key_url(key))
    reply = await wire.request({"type": "subscribe", "channel": "a" * 256, "requestId": "s"})
    assert reply["code"] == "channel_not_authorized" and reply["requestId"] == "s"
    assert await wire.subscribe("a" * 255 + "b") == []
    await wire.close()
