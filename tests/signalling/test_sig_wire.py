"""Wire-level tolerance of the client parser, against a scripted WebSocket peer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tests.support.scripted import WELCOME, answer_requests, hold, scripted_server, send_json
from tests.support.waiting import next_event
from websockets.asyncio.server import ServerConnection

from metered_realtime import (
    Connected,
    Direct,
    Disconnected,
    GoingAway,
    Message,
    Presence,
    ServerError,
    SignallingClient,
    SignallingConnectError,
)

pytestmark = pytest.mark.timeout(20)


def make(url: str, **kw: Any) -> SignallingClient:
    kw.setdefault("reconnect", False)
    return SignallingClient(api_key="pk_live_test", url=url, **kw)


async def test_garbage_frames_are_dropped_and_connection_stays_up() -> None:
    async def script(ws: ServerConnection) -> None:
        await send_json(ws, WELCOME)
        await ws.send(b"\x00binary")
        await ws.send("not json")
        await ws.send("[1,2]")
        await send_json(ws, {"type": "nonsense"})
        await send_json(ws, {"type": "message", "channel": "c", "from": "p"})  # no data key
        await send_json(ws, {"type": "presence", "channel": "c", "joined": [{"x": 1}], "left": []})
        await send_json(ws, {**WELCOME, "peerId": "second"})  # a second welcome is ignored
        await send_json(ws, {"type": "ack", "requestId": "unknown"})
        await send_json(ws, {"type": "error", "code": "unknown_type"})  # swallowed (old ping)
        await send_json(ws, {"type": "error", "code": "over_message_quota", "message": "q"})
        await send_json(ws, {"type": "error", "code": "x_new", "requestId": "nobody"})
        await send_json(ws, {"type": "going_away", "retryAfterMs": 10**9})
        await send_json(ws, {"type": "going_away"})
        await send_json(
            ws,
            {
                "type": "message",
                "channel": "c",
                "from": "p",
                "data": None,
                "fromMetadata": [1],
            },
        )
        await send_json(ws, {"type": "direct", "from": "p", "data": 5, "fromMetadata": {"a": 1}})
        await answer_requests(ws)

    async with scripted_server(script) as url:
        client = make(url)
        errors, going = client.events(ServerError), client.events(GoingAway)
        messages, directs = client.events(Message), client.events(Direct)
        presence = client.events(Presence)
        await client.connect()
        assert client.peer_id == "scripted-peer"
        msg = await next_event(messages)
        assert msg.data is None and msg.sender_metadata is None
        direct = await next_event(directs)
        assert (direct.data, direct.sender_metadata) == (5, {"a": 1})
        assert client.peer_id == "scripted-peer"
        got = [await next_event(errors), await next_event(errors)]
        assert [(e.code, e.message, e.request_id) for e in got] == [
            ("over_message_quota", "q", None),
            ("x_new", None, "nobody"),
        ]
        assert [(await next_event(going)).retry_after_ms for _ in range(2)] == [300000, 1000]
        assert presence.qsize() == 0
        await client.publish("c", 1)  # still connected and acked
        assert client.state == "connected"
        await client.close()


async def test_ice_servers_from_welcome_metadata() -> None:
    ice = [
        {"urls": "stun:stun.example:3478"},
        {
            "urls": ["turn:t.example:3478", "TURNS:t.example:5349"],
            "username": "u",
            "credential": "c",
        },
        {"urls": "turn:x", "username": 5},
    ]

    def script_for(meta: Any) -> Any:
        async def script(ws: ServerConnection) -> None:
            await send_json(ws, {**WELCOME, "metadata": meta})
            await hold(ws)

        return script

    async with scripted_server(script_for({"iceServers": ice})) as url:
        client = make(url)
        connected = client.events(Connected)
        await client.connect()
        ev = await next_event(connected)
        assert ev.ice_servers is not None
        assert [s.urls for s in ev.ice_servers] == [
            "stun:stun.example:3478",
            ("turn:t.example:3478", "TURNS:t.example:5349"),
            "turn:x",
        ]
        assert ev.ice_servers[1].credential == "c" and ev.ice_servers[2].username is None
        await client.close()

    for bad in (
        {"iceServers": [{"urls": "http://x"}]},
        {"iceServers": [{"urls": []}]},
        {"iceServers": [{"urls": "stun:x"}] * 17},
        {"iceServers": [{"urls": "stun:" + "x" * 600}]},
        {"iceServers": "stun:x"},
        {"other": 1},
    ):
        async with scripted_server(script_for(bad)) as url:
            client = make(url)
            connected = client.events(Connected)
            await client.connect()
            assert (await next_event(connected)).ice_servers is None
            await client.close()


async def test_welcome_timeout_closes_with_no_welcome() -> None:
    async def script(ws: ServerConnection) -> None:
        await hold(ws, 5)

    async with scripted_server(script) as url:
        client = make(url, _welcome_timeout=0.2)
        with pytest.raises(SignallingConnectError) as info:
            await client.connect()
        assert (info.value.close_code, info.value.close_reason) == (1000, "no welcome")
        assert client.state == "closed"


async def test_malformed_welcome_is_ignored() -> None:
    async def script(ws: ServerConnection) -> None:
        await send_json(ws, {**WELCOME, "maxMessageSize": 0})
        await send_json(ws, {**WELCOME, "serverTime": True})
        await hold(ws)

    async with scripted_server(script) as url:
        client = make(url, _welcome_timeout=0.3)
        with pytest.raises(SignallingConnectError, match="no welcome"):
            await client.connect()


async def test_frames_sent_match_the_wire_format() -> None:
    received: list[dict[str, Any]] = []

    async def script(ws: ServerConnection) -> None:
        await send_json(ws, WELCOME)
        for _ in range(100):
            raw = await ws.recv()
            assert isinstance(raw, str) and ", " not in raw and ": " not in raw
            frame = json.loads(raw)
            received.append(frame)
            if "requestId" in frame:
                await send_json(ws, {"type": "ack", "requestId": frame["requestId"]})

    from metered_realtime import SubscribeOptions

    async with scripted_server(script) as url:
        client = make(url)
        await client.connect()
        await client.subscribe("a")
        await client.subscribe("b", SubscribeOptions(include_sender_metadata=True))
        await client.publish("a", {"k": "é"})
        await client.send("peer", None)
        await client.unsubscribe("a")
        await client.close()
    kinds = [(f["type"], sorted(f)) for f in received]
    assert kinds == [
        ("subscribe", ["channel", "requestId", "type"]),
        ("subscribe", ["channel", "includeSenderMetadata", "requestId", "type"]),
        ("publish", ["channel", "data", "requestId", "type"]),
        ("send", ["data", "requestId", "to", "type"]),
        ("unsubscribe", ["channel", "requestId", "type"]),
    ]
    ids = [f["requestId"] for f in received]
    assert len(set(ids)) == 5 and all(len(i) == 36 and i[14] == "4" for i in ids)
    assert received[2]["data"] == {"k": "é"} and received[3]["data"] is None


async def test_heartbeat_ping_and_old_server_unknown_type() -> None:
    pings = 0

    async def script(ws: ServerConnection) -> None:
        nonlocal pings
        await send_json(ws, WELCOME)
        for _ in range(100):
            frame = json.loads(await ws.recv())
            if frame == {"type": "ping"}:
                pings += 1
                await send_json(ws, {"type": "error", "code": "unknown_type"})

    async with scripted_server(script) as url:
        client = make(url, inactivity_timeout=1.5)
        errors = client.events(ServerError)
        disconnected = client.events(Disconnected)
        await client.connect()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(disconnected.__anext__(), 2.3)
        assert pings >= 2 and errors.qsize() == 0
        await client.close()


async def test_http_rejection_reports_status() -> None:
    from websockets.asyncio.server import serve
    from websockets.http11 import Request, Response

    def reject(conn: ServerConnection, request: Request) -> Response:
        return conn.respond(401, "nope\n")

    async def never(ws: ServerConnection) -> None:
        return None

    async with serve(never, "127.0.0.1", 0, process_request=reject) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        client = make(f"ws://127.0.0.1:{port}")
        with pytest.raises(SignallingConnectError) as info:
            await client.connect()
        assert (info.value.close_code, info.value.close_reason) == (401, "handshake rejected")
