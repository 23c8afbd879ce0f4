"""Resource limits at the front door: connection cap, per-address connect rate, the admin
token checked before any body is read, the handshake timeout, and the token length."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from tests.server.test_admin import TOKEN, call
from tests.server.wire import Wire
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from metered_realtime.server.front import ConnectRateLimiter


async def refused_status(url: str) -> int:
    """The HTTP status of an upgrade the server refuses (fails if it is accepted)."""
    with pytest.raises(InvalidStatus) as caught:
        ws = await connect(url, open_timeout=5)
        await ws.close()
    return caught.value.response.status_code


def node_url(srv, key: str | None = None) -> str:
    """A connect URL on the first node only (limits here are per node)."""
    return f"ws://127.0.0.1:{srv.server.port}/v1?key={key or srv.api_key}"


# --- max_connections ------------------------------------------------------------------


async def test_connection_cap_refuses_upgrades_with_503(server_factory):
    async with server_factory(max_connections=2) as srv:
        a = await Wire.open(node_url(srv))
        b = await Wire.open(node_url(srv))
        assert await refused_status(node_url(srv)) == 503
        # Refused at the HTTP layer: it never counted as a connection, nor got a close code.
        assert srv.server.hub.stats.refusals.get(503) == 1
        # Plain HTTP is not a WebSocket connection and is not capped.
        assert (await call(srv.server.port, "GET", "/healthz", token=None))[0] == 200
        await a.close()
        deadline = time.monotonic() + 5
        while True:  # the slot is free once the server has seen the close
            try:
                c = await Wire.open(node_url(srv))
                break
            except InvalidStatus:
                assert time.monotonic() < deadline, "the closed connection's slot was not freed"
                await asyncio.sleep(0.05)
        await b.close()
        await c.close()


async def test_refused_credentials_count_towards_the_cap_only_while_open(server_factory):
    async with server_factory(max_connections=1) as srv:
        for _ in range(5):  # each refusal (4001) frees its slot when it closes
            refused = await Wire.open(node_url(srv, "pk_live_wrong"), welcome=False)
            assert (await refused.refused())[0] == 4001
            await refused.ws.wait_closed()
        deadline = time.monotonic() + 5
        while True:
            try:
                wire = await Wire.open(node_url(srv))
                break
            except InvalidStatus:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        await wire.close()


def test_connection_cap_settings_are_checked():
    from metered_realtime.server.config import ServerConfig

    assert ServerConfig().max_connections == 10000
    assert ServerConfig(max_connections=None).max_connections is None
    with pytest.raises(ValueError):
        ServerConfig(max_connections=0)


# --- per-address connect rate -----------------------------------------------------------


async def test_connect_rate_per_address_refuses_with_429(server_factory):
    # Loopback is exempt by default (a local proxy); the test address is not, here.
    limits = {"ip_connect_rate": 4.0, "ip_connect_burst": 3.0, "ip_connect_exempt": ()}
    async with server_factory(**limits) as srv:
        wires = [await Wire.open(node_url(srv)) for _ in range(3)]
        assert await refused_status(node_url(srv)) == 429
        assert srv.server.hub.stats.refusals.get(429) == 1
        # Plain HTTP is not an upgrade and is not limited.
        for _ in range(5):
            assert (await call(srv.server.port, "GET", "/healthz", token=None))[0] == 200
        await asyncio.sleep(0.3)  # 4/s: one more token
        wires.append(await Wire.open(node_url(srv)))
        for wire in wires:
            await wire.close()


@pytest.mark.parametrize(
    "settings",
    [{}, {"ip_connect_rate": None, "ip_connect_exempt": ()}],
    ids=["loopback-exempt-by-default", "off"],
)
async def test_connect_rate_exemptions_and_off(server_factory, settings):
    async with server_factory(**settings) as srv:
        wires = await asyncio.gather(*(Wire.open(node_url(srv)) for _ in range(60)))
        for wire in wires:
            await wire.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_buckets():
    clock = Clock()
    limiter = ConnectRateLimiter(rate=2.0, burst=3.0, max_entries=100, clock=clock)
    assert [limiter.allow("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("10.0.0.2")  # another address has its own bucket
    clock.now += 0.5  # one token back
    assert limiter.allow("10.0.0.1") and not limiter.allow("10.0.0.1")
    # IPv6: one bucket per /64 (a host holds a whole /64); IPv4-mapped addresses are IPv4.
    for i in range(3):
        assert limiter.allow(f"2001:db8:1:2::{i + 1}")
    assert not limiter.allow("2001:db8:1:2:ffff::9")
    assert limiter.allow("2001:db8:1:3::1")
    clock.now += 10
    assert [limiter.allow("::ffff:10.0.0.9") for _ in range(3)] == [True] * 3
    assert not limiter.allow("10.0.0.9")
    # Exempt networks (loopback by default: a local proxy) have no bucket at all.
    limiter = ConnectRateLimiter(rate=1.0, burst=1.0, exempt=("10.1.0.0/16", "::1"), clock=clock)
    assert all(limiter.allow("10.1.2.3") for _ in range(10))
    assert all(limiter.allow("::1") for _ in range(10))
    assert len(limiter) == 0
    assert limiter.allow("10.2.0.1") and not limiter.allow("10.2.0.1")


def test_rate_limiter_table_is_bounded():
    clock = Clock()
    limiter = ConnectRateLimiter(rate=1.0, burst=5.0, max_entries=1000, clock=clock)
    # An attacker with many addresses: the table never holds more than max_entries.
    for i in range(20000):
        limiter.allow(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        clock.now += 0.0001
    assert len(limiter) == 1000
    # A bucket idle long enough to be full again is the same as none: it is forgotten.
    clock.now += 5.0
    limiter.allow("192.0.2.1")
    assert len(limiter) == 1
    # The most recently seen addresses are the ones kept.
    limiter = ConnectRateLimiter(rate=1.0, burst=2.0, max_entries=2, clock=clock)
    assert limiter.allow("192.0.2.1") and limiter.allow("192.0.2.1")
    assert not limiter.allow("192.0.2.1")
    limiter.allow("192.0.2.2")
    limiter.allow("192.0.2.3")  # table full: the least recently seen address is dropped
    assert len(limiter) == 2
    assert limiter.allow("192.0.2.3")
    assert not limiter.allow("192.0.2.3")


# --- the admin token before the body -----------------------------------------------------


async def raw_http(port: int, head: bytes, body: bytes = b"", timeout: float = 3.0) -> bytes:
    """Send a request head (and maybe part of a body); return what comes back until close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def test_admin_token_is_checked_before_the_body_is_read(server_factory):
    big = b"Content-Length: 1000000\r\n\r\n"
    async with server_factory(admin_token=TOKEN) as srv:
        port = srv.server.port
        # Only the head is sent: the answer must come without waiting for the body.
        head = b"POST /admin/apps HTTP/1.1\r\nHost: x\r\n" + big
        assert (await raw_http(port, head)).startswith(b"HTTP/1.1 401 ")
        wrong = b"POST /admin/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer no\r\n" + big
        assert (await raw_http(port, wrong)).startswith(b"HTTP/1.1 401 ")
        # Unknown paths and methods are answered at the head too.
        assert (await raw_http(port, b"POST /nothing HTTP/1.1\r\nHost: x\r\n" + big)).startswith(
            b"HTTP/1.1 404 "
        )
        assert (await raw_http(port, b"POST /healthz HTTP/1.1\r\nHost: x\r\n" + big)).startswith(
            b"HTTP/1.1 405 "
        )
        # With the token, a body is read, up to 1 MiB.
        auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
        body = b'{"name": "shop"}'
        ok = b"POST /admin/apps HTTP/1.1\r\nHost: x\r\n" + auth
        ok += b"Content-Length: %d\r\n\r\n" % len(body)
        assert (await raw_http(port, ok, body)).startswith(b"HTTP/1.1 201 ")
        huge = b"POST /admin/apps HTTP/1.1\r\nHost: x\r\n" + auth
        huge += b"Content-Length: 2000000\r\n\r\n"
        assert (await raw_http(port, huge, b"x" * 1_100_000)).startswith(b"HTTP/1.1 413 ")
        # A client that sends its whole body anyway still reads the 401 (no reset).
        status = await call(port, "POST", "/admin/apps", b"x" * 1_000_000, token="wrong")
        assert status[0] == 401
    async with server_factory() as srv:  # no admin token: the API is off, 404 at once
        head = b"POST /admin/apps HTTP/1.1\r\nHost: x\r\n" + big
        assert (await raw_http(srv.server.port, head)).startswith(b"HTTP/1.1 404 ")


# --- handshake timeout ----------------------------------------------------------------------


async def dropped_after(port: int, chunks: list[bytes], pause: float) -> float:
    """Send the chunks slowly, then keep sending a byte at a time; seconds until dropped."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()

    async def trickle() -> None:
        for chunk in chunks:
            writer.write(chunk)
            await asyncio.sleep(pause)
        while True:
            writer.write(b"a")
            await asyncio.sleep(pause)

    sender = asyncio.ensure_future(trickle())
    try:
        try:
            data = await asyncio.wait_for(reader.read(), 10)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"HTTP/1.1 2"), data
        return time.monotonic() - start
    finally:
        sender.cancel()
        writer.close()


async def test_handshake_timeout_drops_slow_clients(server_factory):
    async with server_factory(handshake_timeout=0.5, admin_token=TOKEN) as srv:
        port = srv.server.port
        slow_line = [bytes([c]) for c in b"GET /healthz"]
        assert await dropped_after(port, slow_line, 0.05) < 3
        upgrade = [b"GET /v1?key=", srv.api_key.encode()]
        assert await dropped_after(port, upgrade, 0.05) < 3
        slow_head = [b"GET /v1?key=x HTTP/1.1\r\n", b"Host: x\r\n"]
        assert await dropped_after(port, slow_head, 0.05) < 3
        auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
        slow_body = [b"POST /admin/apps HTTP/1.1\r\nContent-Length: 99999\r\n" + auth + b"\r\n"]
        assert await dropped_after(port, slow_body, 0.05) < 3
        # A prompt client is unaffected.
        assert (await call(port, "GET", "/healthz", token=None))[0] == 200
        wire = await Wire.open(node_url(srv))
        await asyncio.sleep(0.8)  # longer than the handshake timeout: an open socket stays
        assert (await wire.request({"type": "ping", "requestId": "p"}))["type"] == "pong"
        await wire.close()


# --- token length ------------------------------------------------------------------------------


def padded_token(srv, length: int) -> str:
    """A real, validly signed JWT of about ``length`` characters."""
    token = srv.mint(metadata={"pad": ""})
    pad = "x" * ((length - len(token)) * 3 // 4)
    token = srv.mint(metadata={"pad": pad})
    assert abs(len(token) - length) < 16
    return token


async def test_tokens_up_to_the_limit_are_accepted(server_factory):
    async with server_factory() as srv:
        # Over websockets' own 8 KiB request line: accepted, welcome and all.
        token = padded_token(srv, 12_000)
        wire = await Wire.open(srv.token_url(token))
        assert wire.welcome["metadata"]["pad"].startswith("xxx")
        await wire.close()


@pytest.mark.parametrize("length", [20_000, 200_000])
async def test_an_over_long_token_is_refused_with_4001(server_factory, length):
    async with server_factory() as srv:
        # 20 KB fits the request line and is measured; 200 KB is skipped unread. Either
        # way the client gets a close it treats as final, not a dropped connection.
        token = padded_token(srv, length)
        refused = await Wire.open(srv.token_url(token), welcome=False)
        assert await refused.refused() == (4001, "token too long")
        assert (
            srv.server.hub.stats.refusals.get(4001, 0)
            + sum(node.hub.stats.refusals.get(4001, 0) for node in srv.nodes[1:])
            == 1
        )


async def test_max_token_length_is_a_setting(server_factory):
    async with server_factory(max_token_length=2048) as srv:
        wire = await Wire.open(srv.token_url(srv.mint()))
        await wire.close()
        refused = await Wire.open(srv.token_url(padded_token(srv, 3000)), welcome=False)
        assert await refused.refused() == (4001, "token too long")


async def test_a_request_line_over_a_mebibyte_is_dropped(server_factory):
    async with server_factory() as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.server.port)
        writer.write(b"GET /v1?token=" + b"a" * (1024 * 1024 + 100_000))
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


def test_limit_settings_from_the_environment_and_toml(tmp_path):
    from metered_realtime.server.settings import load_config

    env = {
        "METERED_REALTIME_MAX_CONNECTIONS": "none",
        "METERED_REALTIME_IP_CONNECT_RATE": "5",
        "METERED_REALTIME_IP_CONNECT_EXEMPT": "10.0.0.0/8, fd00::/8",
        "METERED_REALTIME_HANDSHAKE_TIMEOUT": "2.5",
        "METERED_REALTIME_MAX_TOKEN_LENGTH": "4096",
    }
    config = load_config({}, env=env)
    assert config.max_connections is None
    assert config.ip_connect_rate == 5.0
    assert config.ip_connect_exempt == ("10.0.0.0/8", "fd00::/8")
    assert config.handshake_timeout == 2.5
    assert config.max_token_length == 4096
    toml = tmp_path / "server.toml"
    toml.write_text('[server]\nip_connect_rate = "none"\nip_connect_exempt = []\n')
    config = load_config({"max_connections": 7}, env={}, toml_path=str(toml))
    assert config.ip_connect_rate is None and config.ip_connect_exempt == ()
    assert config.max_connections == 7
    with pytest.raises(ValueError):
        load_config({}, env={"METERED_REALTIME_IP_CONNECT_EXEMPT": "not-a-network"})
    with pytest.raises(ValueError):
        load_config({}, env={"METERED_REALTIME_HANDSHAKE_TIMEOUT": "0"})
