"""No credential ever reaches logs, reprs or exception text."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from tests.support.faultproxy import FaultProxy
from tests.support.waiting import next_event

from metered_realtime import (
    Connected,
    Disconnected,
    ReconnectOptions,
    SignallingClient,
    SignallingConnectError,
    StdlibLogger,
    TokenProviderError,
)
from metered_realtime._logging import ScrubbingLogger
from metered_realtime._scrub import scrub, scrub_exception, scrub_value

pytestmark = pytest.mark.timeout(20)

SDP = "v=0\r\na=ice-ufrag:F7gI\r\na=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\n"


def test_scrub_patterns() -> None:
    assert scrub("wss://h/v1?token=abc.def.ghi&x=1") == "wss://h/v1?token=***&x=1"
    assert scrub("GET /v1?key=pk_live_0123%2F") == "GET /v1?key=***"
    out = scrub(SDP)
    assert "F7gI" not in out and "x9cml" not in out
    assert "a=ice-ufrag:***" in out and "a=ice-pwd:***" in out
    assert scrub('{"credential": "hunter2"}') == '{"credential": "***"}'
    assert scrub("{'credential': 'hunter2'}") == "{'credential': '***'}"
    assert scrub("credential=hunter2") == "credential=***"
    assert "eyJ" not in scrub("bearer eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.sig-_part")
    assert scrub("using sk_live_abcDEF123") == "using sk_live_***"
    assert scrub("secret-value here", ["secret-value"]) == "*** here"
    assert scrub("nothing to hide") == "nothing to hide"


def test_scrub_value_and_exception() -> None:
    ctx = scrub_value({"url": "ws://h/v1?token=zzz", "n": 1, "l": ["key=abc"], "o": None})
    assert ctx == {"url": "ws://h/v1?token=***", "n": 1, "l": ["key=***"], "o": None}
    try:
        try:
            raise OSError("inner key=abc")
        except OSError as inner:
            raise ValueError("outer token=abc") from inner
    except ValueError as exc:
        clean = scrub_exception(exc)
    assert type(clean) is ValueError and str(clean) == "outer token=***"
    assert clean.__cause__ is None and clean.__context__ is None and clean.__traceback__ is None

    class Picky(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"{a} {b} token=zz")

    fallback = scrub_exception(Picky(1, 2))
    assert type(fallback) is Exception and "token=***" in str(fallback)
    assert "Picky" in str(fallback)


def test_stdlib_logger_format(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="metered_realtime")
    log = StdlibLogger()
    log.info("hello", {"a": 1})
    log.warning("plain")
    log.error("url ws://h/v1?key=pk_live_zzz")
    assert caplog.messages == ["hello {'a': 1}", "plain", "url ws://h/v1?key=***"]
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.WARNING, logging.ERROR]


def test_scrubbing_logger_survives_broken_inner() -> None:
    class Broken:
        def debug(self, msg: str, ctx: Any = None) -> None:
            raise RuntimeError("x")

        info = warning = error = debug

    ScrubbingLogger(Broken()).error("fine")  # must not raise


async def test_no_credential_in_logs_reprs_or_errors(
    server: Any, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="metered_realtime")
    tokens: list[str] = []
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        token = server.mint(
            ttl=600,
            metadata={
                "iceServers": [{"urls": "turn:t:3478", "username": "u", "credential": "turnpass"}]
            },
        )
        tokens.append(token)
        if 2 <= calls <= 4:
            raise RuntimeError(f"refresh failed for ?token={tokens[0]} ({tokens[0]})")
        return token

    opts = ReconnectOptions(initial_delay=0.01, max_delay=0.02)
    client = SignallingClient(
        token_provider=provider, url=proxy.url, logger=StdlibLogger(), reconnect=opts
    )
    connected = client.events(Connected)
    failures = client.events(TokenProviderError)
    errors: list[BaseException] = []
    await client.connect()
    first = await next_event(connected)
    assert first.ice_servers is not None and first.ice_servers[0].credential == "turnpass"
    await client.subscribe("room")
    await client.publish("room", {"t": "hello"})
    proxy.cut()
    err_event = await next_event(failures)
    errors.append(err_event.err)
    await next_event(connected)
    reprs = [repr(client), repr(vars(client)), repr(first), repr(err_event)]
    bad = SignallingClient(api_key=server.api_key + "x", url=server.url, logger=StdlibLogger())
    with pytest.raises(SignallingConnectError) as info:
        await bad.connect()
    errors.append(info.value)
    await client.close()

    secrets = [*tokens, server.api_key, server.api_key + "x", "turnpass"]
    assert any("opening socket" in m and "token=***" in m for m in caplog.messages)
    text = "\n".join(caplog.messages) + "\n".join(reprs)
    text += "\n".join(f"{e!s} {e!r} {e.args!r}" for e in errors)
    for secret in secrets:
        assert secret not in text


async def test_closed_client_logs_disconnect_without_secret(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="metered_realtime")
    client = SignallingClient(api_key=server.api_key, url=server.url, logger=StdlibLogger())
    got: list[Disconnected] = []
    client.on(Disconnected, got.append)
    await client.connect()
    await client.close()
    assert got and server.api_key not in caplog.text
