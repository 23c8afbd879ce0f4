"""Credential resolution without a socket: channel patterns, JWT claims and clock leeway."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.server.wire import Wire, raw_token

from metered_realtime.server.auth import (
    DEFAULT_LEEWAY,
    ChannelScope,
    Principal,
    Refusal,
    authenticate,
    glob_match,
)
from metered_realtime.server.store import Store

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


# --- JWT claims and clock leeway ----------------------------------------------


@pytest.fixture
def keyed(tmp_path):
    store = Store(str(tmp_path / "auth.db"))
    app = store.create_app("auth")
    sk = store.create_secret_key(app.id)
    yield store, sk.id, sk.secret
    store.close()


def resolve(keyed, claims: str, *, now: float, leeway: float = DEFAULT_LEEWAY, header=None):
    store, kid, secret = keyed
    token = raw_token(kid, secret, claims, header)
    return authenticate(store, key=None, token=token, origin=None, now=now, leeway=leeway)


def test_default_leeway_is_sixty_seconds() -> None:
    assert DEFAULT_LEEWAY == 60.0


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_not_before_claims_allow_the_leeway(keyed, claim) -> None:
    now = 1_700_000_000
    ok = resolve(keyed, f'{{"{claim}":{now + 1},"exp":{now + 60}}}', now=now)
    assert isinstance(ok, Principal) and ok.expires_at == now + 60
    edge = resolve(keyed, f'{{"{claim}":{now + 10},"exp":{now + 60}}}', now=now, leeway=10)
    assert isinstance(edge, Principal)
    late = resolve(keyed, f'{{"{claim}":{now + 11},"exp":{now + 60}}}', now=now, leeway=10)
    assert isinstance(late, Refusal) and late.code == 4001
    strict = resolve(keyed, f'{{"{claim}":{now + 1},"exp":{now + 60}}}', now=now, leeway=0)
    assert isinstance(strict, Refusal) and strict.code == 4001


def test_exp_allows_the_leeway_and_closes_after_it(keyed) -> None:
    now = 1_700_000_000.25
    ok = resolve(keyed, f'{{"exp":{int(now) - 30}}}', now=now)
    assert isinstance(ok, Principal)
    assert ok.expires_at == int(now) - 30  # what the welcome reports
    assert ok.closes_at == int(now) + 30  # exp + leeway: when the server closes 4002
    fractional = resolve(keyed, f'{{"exp":{now + 10}}}', now=now, leeway=0.5)
    assert isinstance(fractional, Principal)
    assert fractional.expires_at == int(now) + 10 and fractional.closes_at == int(now) + 11
    gone = resolve(keyed, f'{{"exp":{int(now) - 61}}}', now=now)
    assert isinstance(gone, Refusal) and gone.code == 4002
    strict = resolve(keyed, f'{{"exp":{int(now)}}}', now=now, leeway=0)
    assert isinstance(strict, Refusal) and strict.code == 4002


def test_a_principal_without_leeway_closes_at_its_expiry() -> None:
    principal = Principal("app", frozenset(), ChannelScope(["*"]), expires_at=100)
    assert principal.closes_at == 100
    assert Principal("app", frozenset(), ChannelScope(["*"])).closes_at is None


HOSTILE_CLAIMS = [
    "{}",
    '{"exp":1e400}',
    '{"exp":-1e400}',
    '{"exp":NaN}',
    '{"exp":Infinity}',
    '{"exp":1e300}',
    '{"exp":' + "9" * 400 + "}",
    '{"exp":' + "9" * 5000 + "}",
    '{"exp":true}',
    '{"exp":null}',
    '{"exp":"1900000000"}',
    '{"exp":1900000000,"iat":1e400}',
    '{"exp":1900000000,"iat":NaN}',
    '{"exp":1900000000,"iat":"now"}',
    '{"exp":1900000000,"nbf":{}}',
    '{"exp":1900000000,"permissions":[{}]}',
    '{"exp":1900000000,"permissions":[["send"]]}',
    '{"exp":1900000000,"permissions":"send"}',
    '{"exp":1900000000,"channels":[{}]}',
    '{"exp":1900000000,"channels":[""]}',
    '{"exp":1900000000,"metadata":{"x":NaN}}',
    '{"exp":1900000000,"metadata":[1]}',
    '{"exp":1900000000,"metadata":' + '{"a":' * 100 + "1" + "}" * 100 + "}",
    '{"exp":1900000000,"peerMetadata":{"x":1e999}}',
    '{"exp":1900000000,"peerMetadata":' + "[" * 100_000 + "]" * 100_000 + "}",
    "[1900000000]",
    '"exp"',
    "",
    "\xff",
]


@pytest.mark.parametrize("claims", HOSTILE_CLAIMS)
def test_hostile_claims_are_refused_with_4001(keyed, claims) -> None:
    refusal = resolve(keyed, claims, now=1_800_000_000)
    assert isinstance(refusal, Refusal) and refusal.code == 4001, refusal


@pytest.mark.parametrize(
    "header",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"alg":"HS256","kid":' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"alg":"HS256","kid":1e400}',
        '{"alg":NaN,"kid":"x"}',
        "null",
        "",
    ],
)
def test_hostile_headers_are_refused_with_4001(keyed, header) -> None:
    refusal = resolve(keyed, '{"exp":1900000000}', now=1_800_000_000, header=header)
    assert isinstance(refusal, Refusal) and refusal.code == 4001, refusal


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)
CLAIMS = ["exp", "iat", "nbf", "permissions", "channels", "metadata", "peerMetadata"]


def test_any_claim_value_resolves_without_raising(keyed) -> None:
    store, kid, secret = keyed

    @given(JSON_VALUES, st.sampled_from(CLAIMS))
    def check(value: object, claim: str) -> None:
        claims = json.dumps({"exp": 1_900_000_000, claim: value})  # NaN/Infinity as text
        token = raw_token(kid, secret, claims)
        result = authenticate(store, key=None, token=token, origin=None, now=1_800_000_000)
        assert isinstance(result, (Principal, Refusal))

    check()
