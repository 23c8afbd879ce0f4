"""Reconnect, replay, liveness and failure paths, against the real server via a fault proxy."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tests.support.faultproxy import FaultProxy
from tests.support.waiting import ManualSleep, event_matching, next_event, until

from metered_realtime import (
    AckTimeoutError,
    Connected,
    Disconnected,
    DisconnectedError,
    Presence,
    ReconnectOptions,
    SignallingClient,
    SignallingConnectError,
    StateChange,
    TokenProviderError,
)
from metered_realtime.server.auth import DEFAULT_LEEWAY

pytestmark = pytest.mark.timeout(20)

FAST = ReconnectOptions(initial_delay=0.05, max_delay=0.2, jitter_ratio=0.0)


def client_for(url: str, **kw: Any) -> SignallingClient:
    kw.setdefault("reconnect", FAST)
    return SignallingClient(url=url, **kw)


async def test_cut_reconnects_and_replays_subscriptions(server: Any, proxy: FaultProxy) -> None:
    other = SignallingClient(api_key=server.api_key, url=server.url)
    await other.connect()
    await other.subscribe("room")
    client = client_for(proxy.url, api_key=server.api_key)
    connected = client.events(Connected)
    disconnected = client.events(Disconnected)
    presence = client.events(Presence)
    states = client.events(StateChange)
    await client.connect()
    first = await next_event(connected)
    assert first.is_reconnect is False
    await client.subscribe("room")
    snap = await event_matching(presence, lambda p: p.channel == "room")
    assert [p.peer_id for p in snap.joined] == [other.peer_id]

    assert proxy.cut() == 1
    drop = await next_event(disconnected)
    assert drop.will_reconnect is True
    assert drop.code == 1006
    again = await next_event(connected)
    assert again.is_reconnect is True
    # the replayed subscribe produces a fresh snapshot on the new connection
    snap2 = await event_matching(presence, lambda p: p.channel == "room")
    assert [p.peer_id for p in snap2.joined] == [other.peer_id]
    assert snap2.left == ()
    seen = []
    while states.qsize():
        ev = await next_event(states)
        seen.append((ev.from_, ev.to))
    assert seen == [
        ("idle", "connecting"),
        ("connecting", "connected"),
        ("connected", "reconnecting"),
        ("reconnecting", "connected"),
    ]
    # the replayed subscription is live: a publish from the other side arrives
    from metered_realtime import Message

    messages = client.events(Message)
    await other.publish("room", {"n": 1})
    msg = await next_event(messages)
    assert msg.data == {"n": 1} and msg.sender_peer_id == other.peer_id
    await client.close()
    await other.close()


async def test_no_replay_when_auto_resubscribe_off(server: Any, proxy: FaultProxy) -> None:
    client = client_for(proxy.url, api_key=server.api_key, auto_resubscribe=False)
    connected = client.events(Connected)
    presence = client.events(Presence)
    await client.connect()
    await client.subscribe("room")
    await next_event(presence)
    proxy.cut()
    await event_matching(connected, lambda c: c.is_reconnect)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(presence.__anext__(), 0.5)
    await client.close()


async def test_pending_request_fails_with_disconnected_at_cut(
    server: Any, proxy: FaultProxy
) -> None:
    client = client_for(proxy.url, api_key=server.api_key)
    await client.connect()
    proxy.stall()
    task = asyncio.ensure_future(client.publish("room", {"x": 1}))
    await until(lambda: len(client._acks) == 1)
    started = time.monotonic()
    proxy.cut()
    proxy.resume()
    with pytest.raises(DisconnectedError):
        await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 2.0  # failed at the cut, not after the ack timeout
    await client.close()


async def test_ack_timeout_on_stalled_socket(server: Any, proxy: FaultProxy) -> None:
    client = client_for(proxy.url, api_key=server.api_key, _ack_timeout=0.3)
    await client.connect()
    proxy.stall()
    started = time.monotonic()
    with pytest.raises(AckTimeoutError) as info:
        await client.publish("room", 1)
    assert 0.25 <= time.monotonic() - started < 2.0
    assert info.value.timeout == 0.3
    assert len(info.value.request_id) == 36
    assert len(client._acks) == 0
    proxy.resume()
    await client.publish("room", 2)  # the connection itself survived
    await client.close()


async def test_watchdog_closes_stalled_socket_with_4000_and_reconnects(
    server: Any, proxy: FaultProxy
) -> None:
    client = client_for(proxy.url, api_key=server.api_key, inactivity_timeout=1.5)
    connected = client.events(Connected)
    disconnected = client.events(Disconnected)
    await client.connect()
    await next_event(connected)
    proxy.stall()
    drop = await next_event(disconnected, timeout=6)
    assert (drop.code, drop.reason, drop.will_reconnect) == (4000, "inactivity", True)
    proxy.resume()
    again = await next_event(connected, timeout=6)
    assert again.is_reconnect
    await client.close()


async def test_heartbeat_keeps_idle_connection_alive(server: Any, proxy: FaultProxy) -> None:
    client = client_for(proxy.url, api_key=server.api_key, inactivity_timeout=1.5)
    disconnected = client.events(Disconnected)
    await client.connect()
    # pings every 1 s are answered by pongs, so 2.5 s of silence never trips the 1.5 s watchdog
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(disconnected.__anext__(), 2.5)
    assert client.state == "connected"
    await client.close()


async def test_watchdog_disabled_when_inactivity_not_positive(
    server: Any, proxy: FaultProxy
) -> None:
    client = client_for(proxy.url, api_key=server.api_key, inactivity_timeout=0)
    disconnected = client.events(Disconnected)
    await client.connect()
    proxy.stall()  # no pings go out and nothing comes in; nothing must fire
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(disconnected.__anext__(), 1.5)
    assert client.state == "connected"
    proxy.resume()
    await client.close()


async def test_terminal_close_code_stops_reconnecting(server: Any, proxy: FaultProxy) -> None:
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        return server.mint(ttl=60) if calls == 1 else "garbage.not.a-jwt"

    client = client_for(proxy.url, token_provider=provider)
    disconnected = client.events(Disconnected)
    states = client.events(StateChange)
    await client.connect()
    proxy.cut()
    first = await next_event(disconnected)
    assert first.will_reconnect is True
    final = await next_event(disconnected)
    assert final.code == 4001 and final.will_reconnect is False
    await event_matching(states, lambda s: s.to == "closed")
    assert client.state == "closed"
    assert calls == 2
    # terminal exit tears down like close(): streams end
    rest = [ev async for ev in disconnected]
    assert rest == []
    assert client.listener_count(Disconnected) == 0
    with pytest.raises(asyncio.TimeoutError):  # no further attempt is made
        await proxy.wait_accepted(3, timeout=0.5)


async def test_token_expiry_4002_fetches_a_new_token(server: Any, proxy: FaultProxy) -> None:
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            # The server closes at exp plus its clock-skew leeway: 2 s from now.
            return server.mint(ttl=2, now=time.time() - DEFAULT_LEEWAY)
        return server.mint(ttl=600)

    client = client_for(proxy.url, token_provider=provider)
    connected = client.events(Connected)
    disconnected = client.events(Disconnected)
    await client.connect()
    first = await next_event(connected)
    assert first.expires_at is not None
    drop = await next_event(disconnected, timeout=6)
    assert drop.code == 4002 and drop.will_reconnect is True
    again = await next_event(connected)
    assert again.is_reconnect and calls == 2
    assert again.expires_at is not None and again.expires_at > first.expires_at
    await client.close()


async def test_4010_raises_next_delay_to_30s_floor(server_factory: Any) -> None:
    async with (
        server_factory(max_connections_per_app=1) as srv,
        FaultProxy("127.0.0.1", srv.server.port) as proxy,
    ):
        sleep = ManualSleep()
        client = SignallingClient(
            api_key=srv.api_key, url=proxy.url, _sleep=sleep, _random=lambda: -1.0
        )
        disconnected = client.events(Disconnected)
        connected = client.events(Connected)
        await client.connect()
        assert not (await next_event(connected)).is_reconnect
        proxy.cut()
        assert (await next_event(disconnected)).code == 1006
        delay1, release1 = await sleep.next_call()
        assert delay1 == pytest.approx(0.4)  # 0.5 s with -20 % jitter
        blocker = SignallingClient(api_key=srv.api_key, url=srv.url)
        for _ in range(50):  # the server frees the cut connection's slot asynchronously
            try:
                await blocker.connect()
                break
            except SignallingConnectError as exc:
                assert exc.close_code == 4010
                await asyncio.sleep(0.02)
        assert blocker.state == "connected"
        release1()
        over = await next_event(disconnected)
        assert (over.code, over.will_reconnect) == (4010, True)
        delay2, release2 = await sleep.next_call()
        assert delay2 >= 24.0  # 30 s floor with the largest negative jitter
        await blocker.close()
        release2()
        assert (await next_event(connected)).is_reconnect
        # the floor is applied once; the session lasted less than stable_after, so the
        # ladder goes on at attempt 3 (2 s with -20 % jitter) instead of restarting
        proxy.cut()
        await next_event(disconnected)
        delay3, release3 = await sleep.next_call()
        assert delay3 == pytest.approx(1.6)
        release3()
        await client.close()


async def test_max_attempts_is_honoured(server: Any, proxy: FaultProxy) -> None:
    opts = ReconnectOptions(initial_delay=0.01, max_delay=0.02, max_attempts=3)
    client = client_for(proxy.url, api_key=server.api_key, reconnect=opts)
    disconnected = client.events(Disconnected)
    states = client.events(StateChange)
    await client.connect()
    proxy.refuse()
    proxy.cut()
    assert (await next_event(disconnected)).will_reconnect is True
    await event_matching(states, lambda s: s.to == "closed")
    assert proxy.refused == 3
    # attempts that never opened a socket emit no further Disconnected
    assert [ev async for ev in disconnected] == []


async def test_max_attempts_zero_never_reconnects(server: Any, proxy: FaultProxy) -> None:
    opts = ReconnectOptions(max_attempts=0)
    client = client_for(proxy.url, api_key=server.api_key, reconnect=opts)
    disconnected = client.events(Disconnected)
    await client.connect()
    proxy.cut()
    drop = await next_event(disconnected)
    assert drop.will_reconnect is False
    await until(lambda: client.state == "closed")
    assert proxy.accepted == 1


async def test_reconnect_false(server: Any, proxy: FaultProxy) -> None:
    client = client_for(proxy.url, api_key=server.api_key, reconnect=False)
    disconnected = client.events(Disconnected)
    await client.connect()
    proxy.cut()
    assert (await next_event(disconnected)).will_reconnect is False
    await until(lambda: client.state == "closed")


async def test_token_provider_failures_emit_event_from_the_third(
    server: Any, proxy: FaultProxy
) -> None:
    token = server.mint(ttl=600)
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        if calls == 1 or calls >= 6:
            return token
        raise RuntimeError(f"backend down while refreshing token={token}")

    client = client_for(proxy.url, token_provider=provider)
    failures = client.events(TokenProviderError)
    connected = client.events(Connected)
    await client.connect()
    await next_event(connected)
    proxy.cut()
    got = [await next_event(failures), await next_event(failures)]
    assert [f.consecutive_failures for f in got] == [3, 4]
    assert isinstance(got[0].err, RuntimeError)
    assert token not in str(got[0].err) and "token=***" in str(got[0].err)
    assert got[0].err.__cause__ is None
    assert (await next_event(connected)).is_reconnect  # 5th call fails, 6th succeeds
    assert calls == 6
    await client.close()


async def test_token_provider_give_up_after_connected(server: Any, proxy: FaultProxy) -> None:
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            return server.mint(ttl=600)
        raise RuntimeError("no token")

    opts = ReconnectOptions(initial_delay=0.01, max_delay=0.02, max_attempts=2)
    client = client_for(proxy.url, token_provider=provider, reconnect=opts)
    disconnected = client.events(Disconnected)
    await client.connect()
    proxy.cut()
    assert (await next_event(disconnected)).will_reconnect
    final = await next_event(disconnected)
    assert (final.code, final.reason, final.will_reconnect) == (
        1006,
        "token provider failed",
        False,
    )
    await until(lambda: client.state == "closed")
    assert calls == 3  # the connect, then the two allowed attempts


async def test_close_during_backoff_stops_for_good(server: Any, proxy: FaultProxy) -> None:
    sleep = ManualSleep()
    client = client_for(proxy.url, api_key=server.api_key, _sleep=sleep)
    await client.connect()
    proxy.cut()
    await sleep.next_call()
    assert client.state == "reconnecting"
    await client.close()
    assert client.state == "closed"
    with pytest.raises(asyncio.TimeoutError):
        await proxy.wait_accepted(2, timeout=0.3)


async def test_going_away_then_1001_reconnects(server_factory: Any) -> None:
    from metered_realtime import GoingAway

    async with server_factory(drain_grace=0.2, going_away_retry_ms=1500) as srv:
        sleep = ManualSleep()
        client = SignallingClient(api_key=srv.api_key, url=srv.url, _sleep=sleep)
        going = client.events(GoingAway)
        disconnected = client.events(Disconnected)
        await client.connect()
        drain = asyncio.ensure_future(srv.server.drain())
        assert (await next_event(going)).retry_after_ms == 1500
        assert client.state == "connected"  # the client does not disconnect by itself
        drop = await next_event(disconnected)
        assert (drop.code, drop.will_reconnect) == (1001, True)
        await sleep.next_call()
        await client.close()
        await asyncio.wait_for(drain, 5)


class _Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any] | None]] = []
        self.changed = asyncio.Event()

    def _add(self, level: str, msg: str, ctx: Any) -> None:
        self.lines.append((level, msg, ctx))
        self.changed.set()

    def debug(self, msg: str, ctx: Any = None) -> None:
        self._add("debug", msg, ctx)

    def info(self, msg: str, ctx: Any = None) -> None:
        self._add("info", msg, ctx)

    def warning(self, msg: str, ctx: Any = None) -> None:
        self._add("warning", msg, ctx)

    def error(self, msg: str, ctx: Any = None) -> None:
        self._add("error", msg, ctx)

    def count(self, text: str) -> int:
        return sum(1 for _, m, _ in self.lines if text in m)


async def test_replay_retries_three_times_then_gives_up(server: Any, proxy: FaultProxy) -> None:
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        # after the reconnect the token no longer covers "room": the replay is refused
        return server.mint(ttl=600, channels=["room", "other"] if calls == 1 else ["other"])

    log = _Lines()
    client = client_for(proxy.url, token_provider=provider, logger=log, _replay_delay=0.05)
    connected = client.events(Connected)
    await client.connect()
    await client.subscribe("room")
    await client.subscribe("other")
    proxy.cut()
    await event_matching(connected, lambda c: c.is_reconnect)
    await until(lambda: log.count("gave up") == 1)
    assert log.count("replayed subscribe failed; retrying") == 3
    assert "room" in client.subscriptions  # still recorded; a later reconnect replays again
    await client.close()


async def test_unsubscribe_cancels_replay_retries(server: Any, proxy: FaultProxy) -> None:
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        return server.mint(ttl=600, channels=["room", "x"] if calls == 1 else ["x"])

    log = _Lines()
    client = client_for(proxy.url, token_provider=provider, logger=log, _replay_delay=0.3)
    connected = client.events(Connected)
    await client.connect()
    await client.subscribe("room")
    proxy.cut()
    await event_matching(connected, lambda c: c.is_reconnect)
    await until(lambda: log.count("replayed subscribe failed; retrying") == 1)
    await client.unsubscribe("room")
    assert not client._replays
    with pytest.raises(TimeoutError):
        await until(lambda: log.count("replayed subscribe failed; retrying") > 1, timeout=0.6)
    await client.close()


async def test_inbound_frame_over_1mib_closes_1009_and_reconnects(server_factory: Any) -> None:
    async with server_factory(max_message_size=2_000_000) as srv:
        big_sender = SignallingClient(api_key=srv.api_key, url=srv.url)
        client = client_for(srv.url, api_key=srv.api_key)
        disconnected = client.events(Disconnected)
        connected = client.events(Connected)
        async with big_sender:
            await client.connect()
            await client.subscribe("room")
            await big_sender.publish("room", "y" * 1_100_000)
            drop = await next_event(disconnected)
            assert (drop.code, drop.will_reconnect) == (1009, True)
            await event_matching(connected, lambda c: c.is_reconnect)
        await client.close()


async def test_subscribe_cut_mid_flight_is_kept_and_replayed(
    server: Any, proxy: FaultProxy
) -> None:
    client = client_for(proxy.url, api_key=server.api_key)
    presence = client.events(Presence)
    connected = client.events(Connected)
    await client.connect()
    proxy.stall()
    task = asyncio.ensure_future(client.subscribe("late-room"))
    await until(lambda: len(client._acks) == 1)
    proxy.cut()
    proxy.resume()
    with pytest.raises(DisconnectedError):
        await asyncio.wait_for(task, 5)
    assert "late-room" in client.subscriptions  # it may have reached the server
    await event_matching(connected, lambda c: c.is_reconnect)
    snap = await event_matching(presence, lambda p: p.channel == "late-room")
    assert snap.joined == ()
    await client.close()


async def test_delayed_link_still_works(server: Any, proxy: FaultProxy) -> None:
    proxy.delay(0.05)
    client = client_for(proxy.url, api_key=server.api_key)
    started = time.monotonic()
    await client.connect()
    await client.publish("room", 1)
    assert time.monotonic() - started >= 0.2  # handshake, welcome, publish, ack each delayed
    await client.close()
