"""Options validation, URL rules and credentials (pure; Hypothesis where it pays)."""

from __future__ import annotations

import copy
import math
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metered_realtime import (
    NoopLogger,
    ReconnectOptions,
    SignallingClient,
    SignallingClientOptions,
    StdlibLogger,
)
from metered_realtime.signalling.credential import ResolvedCredential, make_credential_source
from metered_realtime.signalling.url import build_connect_url, validate_base_url

KEY = "pk_live_abcdefghijklmnopqrstuvwx"


def make(**kw: Any) -> SignallingClient:
    kw.setdefault("url", "ws://localhost:1")
    return SignallingClient(**kw)


def test_exactly_one_credential() -> None:
    with pytest.raises(ValueError):
        make()
    with pytest.raises(ValueError):
        make(api_key="")
    with pytest.raises(ValueError):
        make(api_key=KEY, token_provider=lambda: "t")
    with pytest.raises(TypeError):
        make(token_provider="not callable")
    make(api_key=KEY)
    make(token_provider=lambda: "t")


def test_options_object_wins_over_keywords() -> None:
    opts = SignallingClientOptions(api_key=KEY, url="wss://example.com")
    client = SignallingClient(opts, api_key="ignored", url="not a url")
    assert client._origin == "wss://example.com"
    assert KEY not in repr(opts)
    with pytest.raises(TypeError):
        pickle.dumps(opts)


@pytest.mark.parametrize("bad", [0, -1, math.nan, -math.inf, "10", True])
def test_bad_token_provider_timeout(bad: Any) -> None:
    with pytest.raises(ValueError):
        make(token_provider=lambda: "t", token_provider_timeout=bad)


def test_inactivity_timeout() -> None:
    with pytest.raises(ValueError):
        make(api_key=KEY, inactivity_timeout=math.nan)
    assert make(api_key=KEY, inactivity_timeout=0)._watchdog is False
    assert make(api_key=KEY, inactivity_timeout=-5)._watchdog is False
    assert make(api_key=KEY, inactivity_timeout=math.inf)._watchdog is False
    c = make(api_key=KEY, inactivity_timeout=60)
    assert c._watchdog and c._heartbeat == 20
    assert make(api_key=KEY, inactivity_timeout=1.5)._heartbeat == 1.0


def test_reconnect_and_logger_types() -> None:
    assert make(api_key=KEY, reconnect=False)._policy is None
    assert make(api_key=KEY)._policy == ReconnectOptions()
    with pytest.raises(TypeError):
        make(api_key=KEY, reconnect="yes")
    with pytest.raises(TypeError):
        make(api_key=KEY, logger=object())
    make(api_key=KEY, logger=NoopLogger())
    make(api_key=KEY, logger=StdlibLogger())
    with pytest.raises(TypeError):
        make(api_key=KEY, auto_resubscribe=1)


@pytest.mark.parametrize(
    "kw",
    [
        {"initial_delay": 0},
        {"initial_delay": -1},
        {"initial_delay": math.nan},
        {"multiplier": 0.5},
        {"max_delay": 0.1},
        {"jitter_ratio": -0.1},
        {"jitter_ratio": 1.5},
        {"max_attempts": -1},
        {"max_attempts": 2.5},
        {"max_attempts": math.nan},
        {"initial_delay": True},
    ],
)
def test_reconnect_options_rejects(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ReconnectOptions(**kw)


@given(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
    st.one_of(st.floats(allow_nan=True), st.integers(min_value=-5, max_value=10**6)),
)
def test_reconnect_options_valid_iff_rules(
    initial: float, mult: float, max_delay: float, jitter: float, attempts: float
) -> None:
    valid = (
        math.isfinite(initial)
        and initial > 0
        and math.isfinite(mult)
        and mult >= 1
        and math.isfinite(max_delay)
        and max_delay >= initial
        and 0 <= jitter <= 1
        and attempts >= 0
        and (attempts == math.inf or attempts == int(attempts))
    )
    try:
        ReconnectOptions(
            initial_delay=initial,
            multiplier=mult,
            max_delay=max_delay,
            jitter_ratio=jitter,
            max_attempts=attempts,
        )
    except ValueError:
        assert not valid
    else:
        assert valid


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("wss://rms.metered.ca", "wss://rms.metered.ca"),
        ("wss://rms.metered.ca/", "wss://rms.metered.ca"),
        ("wss://example.com:8443", "wss://example.com:8443"),
        ("WSS://Example.COM", "wss://example.com"),
        ("ws://localhost:8080", "ws://localhost:8080"),
        ("ws://127.0.0.1:9", "ws://127.0.0.1:9"),
        ("ws://[::1]:9000/", "ws://[::1]:9000"),
    ],
)
def test_url_accepted(url: str, origin: str) -> None:
    assert validate_base_url(url) == origin


@pytest.mark.parametrize(
    "url",
    [
        "",
        "rms.metered.ca",
        "https://rms.metered.ca",
        "ws://example.com",
        "wss://example.com/v1",
        "wss://example.com/?a=1",
        "wss://example.com?",
        "wss://example.com/#x",
        "wss://example.com:99999",
        "wss://example.com:abc",
        "wss://example.com:0",
        "wss://user:pw@example.com",
        "wss://",
        "wss://exa mple.com",
    ],
)
def test_url_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        make(api_key=KEY, url=url)


@given(st.text(min_size=1, max_size=50))
def test_connect_url_escapes_everything(value: str) -> None:
    from urllib.parse import parse_qs, urlsplit

    url = build_connect_url("wss://h", "token", value)
    query = urlsplit(url).query
    assert query.startswith("token=")
    assert all(c.isalnum() or c in "%_.-~=" for c in query)
    assert parse_qs(query, keep_blank_values=True)["token"] == [value]


def test_resolved_credential_hides_itself() -> None:
    cred = ResolvedCredential("token", "s3cret-value")
    assert "s3cret" not in repr(cred) and "s3cret" not in str(cred)
    with pytest.raises(TypeError):
        pickle.dumps(cred)
    assert copy.deepcopy(cred) is cred
    with pytest.raises(AttributeError):
        cred.kind = "key"  # type: ignore[misc]
    assert cred.reveal() == "s3cret-value"


async def test_credential_source_kinds() -> None:
    key = await make_credential_source(KEY, None, 1.0)()
    assert (key.kind, key.reveal()) == ("key", KEY)
    sync = await make_credential_source(None, lambda: "tok", 1.0)()
    assert (sync.kind, sync.reveal()) == ("token", "tok")

    async def async_tok() -> str:
        return "atok"

    assert (await make_credential_source(None, async_tok, 1.0)()).reveal() == "atok"
    with pytest.raises(TypeError):
        await make_credential_source(None, lambda: 42, 1.0)()  # type: ignore[arg-type,return-value]


def test_client_repr_and_vars_hold_no_secret() -> None:
    secret = "pk_live_SECRETSECRETSECRET0000"
    client = make(api_key=secret)
    assert secret not in repr(client)
    assert secret not in repr(vars(client))
    with pytest.raises(TypeError):
        pickle.dumps(client)


@given(st.text(max_size=80))
def test_url_validation_never_crashes_and_is_idempotent(url: str) -> None:
    try:
        origin = validate_base_url(url)
    except ValueError:
        return
    assert origin.startswith(("ws://", "wss://"))
    assert validate_base_url(origin) == origin


@given(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-100, 100)),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-100, 100)),
)
def test_timeouts_validation(token_timeout: float, inactivity: float) -> None:
    ok = (not math.isnan(token_timeout) and token_timeout > 0) and not math.isnan(inactivity)
    try:
        client = make(
            token_provider=lambda: "t",
            token_provider_timeout=token_timeout,
            inactivity_timeout=inactivity,
        )
    except ValueError:
        assert not ok
    else:
        assert ok
        assert client._watchdog == (0 < inactivity < math.inf)


def test_options_copy_but_never_pickle() -> None:
    opts = SignallingClientOptions(api_key=KEY, inactivity_timeout=5)
    assert copy.copy(opts) == opts and copy.copy(opts) is not opts
    assert copy.deepcopy(opts) == opts
    with pytest.raises(TypeError):
        pickle.dumps(opts, protocol=2)
