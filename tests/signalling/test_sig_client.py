"""SignallingClient against the real server: lifecycle, requests, errors, events."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from tests.support.waiting import event_matching, next_event

from metered_realtime import (
    Connected,
    Direct,
    Disconnected,
    Message,
    NotConnectedError,
    OversizedPayloadError,
    Presence,
    ServerError,
    ServerRequestError,
    SignallingClient,
    SignallingConnectError,
    SignallingError,
    StateChange,
    SubscribeOptions,
)

pytestmark = pytest.mark.timeout(20)


async def test_connect_states_and_connected_event(server: Any) -> None:
    client = SignallingClient(api_key=server.api_key, url=server.url)
    states = client.events(StateChange)
    connected = client.events(Connected)
    assert client.state == "idle"
    assert repr(client) == "<SignallingClient state=idle>"
    task = asyncio.ensure_future(client.connect())
    await asyncio.sleep(0)
    assert client.state == "connecting"
    await asyncio.wait_for(task, 5)
    assert client.state == "connected"
    ev = await next_event(connected)
    assert ev.is_reconnect is False
    assert ev.max_message_size == 65536
    assert ev.expires_at is None  # publishable key
    assert isinstance(ev.server_time, int) and ev.server_time > 1_600_000_000_000
    assert len(ev.peer_id) == 20 and client.peer_id == ev.peer_id
    await client.close()
    assert client.state == "closed"
    got = [(s.from_, s.to) async for s in states]
    assert got == [("idle", "connecting"), ("connecting", "connected"), ("connected", "closed")]


async def test_connect_in_wrong_state_raises(server: Any) -> None:
    client = SignallingClient(api_key=server.api_key, url=server.url)
    await client.connect()
    with pytest.raises(SignallingError, match="invalid state"):
        await client.connect()
    await client.close()
    await client.close()  # idempotent
    await client.connect()  # closed -> connecting is allowed
    assert client.state == "connected"
    await client.close()


async def test_async_with_connects_and_closes(server: Any) -> None:
    async with SignallingClient(api_key=server.api_key, url=server.url) as client:
        assert client.state == "connected"
        stream = client.events(Message)
    assert client.state == "closed"
    assert [m async for m in stream] == []  # closing ended the stream


async def test_pubsub_direct_and_presence(server: Any) -> None:
    token = server.mint(ttl=600, peer_metadata={"name": "bob"})
    a = SignallingClient(api_key=server.api_key, url=server.url)
    b = SignallingClient(token_provider=lambda: token, url=server.url)
    async with a, b:
        pa, ma, da = a.events(Presence), a.events(Message), a.events(Direct)
        await a.subscribe("room", SubscribeOptions(include_sender_metadata=True))
        assert (await next_event(pa)).joined == ()
        await b.subscribe("room")
        joined = await next_event(pa)
        assert [p.peer_id for p in joined.joined] == [b.peer_id]
        assert joined.joined[0].metadata == {"name": "bob"}
        await b.publish("room", {"hello": [1, 2, None]})
        msg = await next_event(ma)
        assert (msg.channel, msg.sender_peer_id, msg.data) == (
            "room",
            b.peer_id,
            {"hello": [1, 2, None]},
        )
        assert msg.sender_metadata == {"name": "bob"}
        await b.publish("room", None)  # None is JSON null
        assert (await next_event(ma)).data is None
        assert a.peer_id is not None
        await b.send(a.peer_id, "psst")
        direct = await next_event(da)
        assert (direct.sender_peer_id, direct.data) == (b.peer_id, "psst")
        await b.unsubscribe("room")
        left = await event_matching(pa, lambda p: bool(p.left))
        assert [p.peer_id for p in left.left] == [b.peer_id]
        assert "room" not in b.subscriptions


async def test_server_request_error_is_correlated(server: Any) -> None:
    async with SignallingClient(api_key=server.api_key, url=server.url) as client:
        errors = client.events(ServerError)
        with pytest.raises(ServerRequestError) as info:
            await client.subscribe("_metered/secret")
        assert info.value.code == "channel_reserved"
        assert info.value.request_id is not None and len(info.value.request_id) == 36
        with pytest.raises(ServerRequestError) as info2:
            await client.send("nobody-here", {"x": 1})
        assert info2.value.code == "peer_not_found"
        assert errors.qsize() == 0  # correlated errors are not emitted as ServerError


async def test_not_connected_and_subscription_bookkeeping(server: Any) -> None:
    client = SignallingClient(api_key=server.api_key, url=server.url)
    with pytest.raises(NotConnectedError):
        await client.publish("room", 1)
    with pytest.raises(NotConnectedError):
        await client.subscribe("room")
    assert client.subscriptions == frozenset()  # forgotten again
    with pytest.raises(NotConnectedError):
        await client.unsubscribe("room")
    await client.connect()
    await client.subscribe("room")
    await client.close()
    with pytest.raises(NotConnectedError):
        await client.send("peer", 1)


async def test_argument_validation(server: Any) -> None:
    async with SignallingClient(api_key=server.api_key, url=server.url) as client:
        with pytest.raises(TypeError):
            await client.subscribe(42)  # type: ignore[arg-type]
        for bad in ("", "x" * 257, "a\x00b", "a\x7fb", "a\x85b"):
            with pytest.raises(ValueError):
                await client.publish(bad, 1)
        await client.publish("x" * 256, 1)
        with pytest.raises(ValueError):
            await client.send("p" * 129, 1)
        with pytest.raises(ValueError):
            await client.publish("room", {"n": math.nan})
        with pytest.raises(ValueError):
            await client.publish("room", math.inf)
        with pytest.raises(TypeError):
            await client.publish("room", object())
        with pytest.raises(TypeError):
            await client.subscribe("room", {"include_sender_metadata": True})  # type: ignore[arg-type]


async def test_oversized_payload_is_refused_locally(server_factory: Any) -> None:
    async with server_factory(max_message_size=100) as srv:
        client = SignallingClient(api_key=srv.api_key, url=srv.url)
        connected = client.events(Connected)
        disconnected = client.events(Disconnected)
        await client.connect()
        assert (await next_event(connected)).max_message_size == 100
        assert client.max_message_size == 100
        with pytest.raises(OversizedPayloadError) as info:
            await client.publish("room", "x" * 99)  # 101 bytes with the quotes
        assert (info.value.size, info.value.cap) == (101, 100)
        assert isinstance(info.value, SignallingError)
        with pytest.raises(OversizedPayloadError) as info2:
            await client.send("peer", ["y" * 97])  # ["…"]: 100 bytes + 1
        assert info2.value.size == 101
        await client.publish("room", "x" * 98)  # exactly 100 bytes: allowed
        with pytest.raises(OversizedPayloadError) as info3:
            await client.publish("room", "é" * 50)
        assert info3.value.size == 102  # UTF-8 bytes, not ASCII escapes
        assert disconnected.qsize() == 0
        await client.close()


async def test_first_connect_failures(server: Any) -> None:
    bad = SignallingClient(api_key="pk_live_doesnotexist000000000000", url=server.url)
    states = bad.events(StateChange)
    with pytest.raises(SignallingConnectError) as info:
        await bad.connect()
    assert info.value.close_code == 4001
    assert "doesnotexist" not in str(info.value)
    assert bad.state == "closed"
    assert [s.to async for s in _drain(states)] == ["connecting", "closed"]
    assert bad.listener_count(StateChange) == 0  # no handlers; streams keep working
    # the failed client keeps its handlers and can connect again
    seen: list[str] = []
    bad.on(StateChange, lambda ev: seen.append(ev.to))
    with pytest.raises(SignallingConnectError):
        await bad.connect()
    assert seen == ["connecting", "closed"]

    expired = SignallingClient(token_provider=lambda: server.mint(ttl=1, now=0), url=server.url)
    with pytest.raises(SignallingConnectError) as info2:
        await expired.connect()
    assert info2.value.close_code == 4002


async def test_refused_socket_reports_1006() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    client = SignallingClient(api_key="pk_live_x", url=f"ws://127.0.0.1:{port}")
    with pytest.raises(SignallingConnectError) as info:
        await client.connect()
    assert info.value.close_code == 1006
    assert "ConnectionRefusedError" in info.value.close_reason


async def test_token_provider_errors_on_first_connect(server: Any) -> None:
    async def slow() -> str:
        await asyncio.sleep(5)
        return "never"

    client = SignallingClient(token_provider=slow, url=server.url, token_provider_timeout=0.1)
    with pytest.raises(TimeoutError):
        await client.connect()
    assert client.state == "closed"

    def boom() -> str:
        raise KeyError("vault unavailable")

    with pytest.raises(KeyError):
        await SignallingClient(token_provider=boom, url=server.url).connect()
    with pytest.raises(ValueError, match="empty"):
        await SignallingClient(token_provider=lambda: "", url=server.url).connect()


async def test_sync_and_async_token_providers(server: Any) -> None:
    async def async_provider() -> str:
        return server.mint(ttl=60)

    for provider in (lambda: server.mint(ttl=60), async_provider):
        client = SignallingClient(token_provider=provider, url=server.url)
        await client.connect()
        assert client.state == "connected"
        await client.close()


async def test_close_with_custom_code_emits_disconnected(server: Any) -> None:
    client = SignallingClient(api_key=server.api_key, url=server.url)
    got: list[Disconnected] = []
    client.on(Disconnected, got.append)
    await client.connect()
    await client.close(4321, "bye")
    assert got == [Disconnected(4321, "bye", False)]
    assert client.listener_count(Disconnected) == 0


async def test_close_interrupts_connect(server: Any) -> None:
    async def never() -> str:
        await asyncio.sleep(10)
        return "x"

    client = SignallingClient(token_provider=never, url=server.url)
    task = asyncio.ensure_future(client.connect())
    await asyncio.sleep(0.05)
    await client.close()
    with pytest.raises(SignallingError, match="interrupted"):
        await asyncio.wait_for(task, 2)
    assert client.state == "closed"


async def test_async_handlers_run_as_tasks_and_drain_on_close(server: Any) -> None:
    client = SignallingClient(api_key=server.api_key, url=server.url)
    done = asyncio.Event()
    order: list[str] = []

    @client.on(Connected)
    async def slow(ev: Connected) -> None:
        await asyncio.sleep(0.05)
        order.append("async")
        done.set()

    client.on(Connected, lambda ev: order.append("sync"))
    await client.connect()
    assert order == ["sync"]  # the async handler did not block emission
    await asyncio.wait_for(done.wait(), 2)
    await client.close()
    assert order == ["sync", "async"]


async def _drain(stream: Any) -> Any:
    while stream.qsize():
        yield await stream.__anext__()
