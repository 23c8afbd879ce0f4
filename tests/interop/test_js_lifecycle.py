"""Connection lifecycle of the published JavaScript SDK against our server: reconnect and
resubscribe, heartbeat, drain, the advertised size cap, token expiry, MeteredPeer reconcile."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from tests.support.jsclient import JSError, MakeJS

from metered_realtime.server.auth import DEFAULT_LEEWAY

pytestmark = pytest.mark.timeout(30)


def is_pong(line: dict[str, Any]) -> bool:
    return (
        line.get("type") == "wire"
        and line.get("dir") == "in"
        and line["frame"] == ('{"type":"pong"}')
    )


async def test_dropped_socket_reconnects_and_resubscribes(server: Any, js: MakeJS) -> None:
    alice, bob = await js("alice"), await js("bob")
    a = (await alice.connect(server.url, key=server.api_key) or {})["peerId"]
    b = (await bob.connect(server.url, key=server.api_key) or {})["peerId"]
    await alice.subscribe("room")
    await alice.next_event("presence")
    await bob.subscribe("room", include_sender_metadata=True)
    await bob.next_event("presence")
    assert (await alice.next_event("presence"))["joined"] == [{"peerId": b}]

    await bob.request("drop")  # no close handshake: the server sees the TCP connection die
    assert await bob.next_event("disconnected") == {
        "code": 1006,
        "reason": "",
        "willReconnect": True,
    }
    assert await alice.next_event("presence") == {
        "channel": "room",
        "joined": [],
        "left": [{"peerId": b}],
    }
    again = await bob.next_event("connected", timeout=10)
    assert again["isReconnect"] is True
    b2 = again["peerId"]
    assert b2 != b  # a fresh id per connection
    # The SDK replays the subscription (same options) and the server answers with a snapshot.
    replay = [f for f in bob.wire("out") if f["type"] == "subscribe"][-1]
    assert replay["channel"] == "room" and replay["includeSenderMetadata"] is True
    assert await bob.next_event("presence") == {
        "channel": "room",
        "joined": [{"peerId": a}],
        "left": [],
    }
    assert await alice.next_event("presence") == {
        "channel": "room",
        "joined": [{"peerId": b2}],
        "left": [],
    }
    await alice.publish("room", "after")
    assert (await bob.next_event("message"))["data"] == "after"


async def test_heartbeat_ping_gets_pong(server: Any, js: MakeJS) -> None:
    client = await js("idle")
    # inactivity 3 s -> the SDK pings after 1 s of silence (max(1 s, 3 s / 3)), every second.
    await client.connect(server.url, key=server.api_key, inactivityTimeoutMs=3000)
    for _ in range(3):
        await client.next_line(is_pong, timeout=5)
    assert [f for f in client.wire("out")] == [{"type": "ping"}] * len(client.wire("out"))
    assert len(client.wire("out")) >= 3
    assert client.events("disconnected") == []  # the pongs kept the watchdog fed
    assert await client.state() == "connected"


async def test_drain_sends_going_away_then_closes_1001(server_factory: Any, js: MakeJS) -> None:
    async with server_factory(drain_grace=0.2) as srv:
        client = await js("draining")
        await client.connect(srv.url, key=srv.api_key, reconnect=False)
        drain = asyncio.create_task(srv.server.drain())
        try:
            assert await client.next_event("going-away") == {"retryAfterMs": 1000}
            assert await client.next_event("disconnected") == {
                "code": 1001,
                "reason": "server draining",
                "willReconnect": False,
            }
            assert [f["type"] for f in client.wire("in")] == ["welcome", "going_away"]
        finally:
            await asyncio.wait_for(drain, 10)


async def test_max_message_size_is_advertised_and_enforced_by_the_sdk(
    server_factory: Any, js: MakeJS
) -> None:
    async with server_factory(max_message_size=1000) as srv:
        sender, receiver = await js("sender"), await js("receiver")
        connected = await sender.connect(srv.url, key=srv.api_key)
        assert connected is not None and connected["maxMessageSize"] == 1000
        await receiver.connect(srv.url, key=srv.api_key)
        await receiver.subscribe("big")
        await receiver.next_event("presence")
        with pytest.raises(JSError) as rejected:
            await sender.publish("big", "x" * 999)  # 1001 bytes of JSON
        assert rejected.value.name == "OversizedPayloadError"
        assert (rejected.value["size"], rejected.value["cap"]) == (1001, 1000)
        # Exactly at the cap, with multi-byte UTF-8 (the SDK measures UTF-8 bytes of the JSON).
        at_cap = "é" * 499  # 2 + 998 bytes
        await sender.publish("big", at_cap)
        assert (await receiver.next_event("message"))["data"] == at_cap
        assert await sender.state() == "connected"


async def test_publish_at_the_default_cap_with_non_ascii(server: Any, js: MakeJS) -> None:
    """65536 bytes of UTF-8 JSON (raw, as JS sends it) must not trip the server's own check."""
    sender, receiver = await js("sender"), await js("receiver")
    await sender.connect(server.url, key=server.api_key)
    await receiver.connect(server.url, key=server.api_key)
    await receiver.subscribe("big")
    await receiver.next_event("presence")
    for data in ("é" * 32767, "😀" * 16383 + "ab"):  # both exactly 65536 bytes as JSON
        await sender.publish("big", data)
        assert (await receiver.next_event("message"))["data"] == data
    assert await sender.state() == "connected"


async def test_token_expiry_closes_4002_and_the_sdk_reconnects(server: Any, js: MakeJS) -> None:
    client = await js("expiring")
    # The server closes at exp plus its clock-skew leeway: 2 s from now.
    token = server.mint(ttl=2, now=time.time() - DEFAULT_LEEWAY)
    connected = await client.connect(server.url, token=token)
    assert connected is not None
    assert connected["expiresAt"] - time.time() <= 2.5
    await client.request("set_token", token=server.mint(ttl=600))  # what the provider returns next
    assert await client.next_event("disconnected", timeout=6) == {
        "code": 4002,
        "reason": "token expired",
        "willReconnect": True,
    }
    again = await client.next_event("connected", timeout=6)
    assert again["isReconnect"] is True
    assert again["expiresAt"] - time.time() > 500


async def test_metered_peer_survives_a_signalling_drop(server: Any, js: MakeJS) -> None:
    """The reconnecting side reconciles from the first presence after its replayed subscribe
    (the snapshot); the other side sees the old id leave and the new one join."""
    p1, p2 = await js("steady"), await js("flaky")
    await p1.connect(server.url, key=server.api_key, kind="peer")
    await p2.connect(server.url, key=server.api_key, kind="peer")
    await p1.request("join", channel="call")
    id1 = (await p1.next_event("joined"))["peerId"]
    await p2.request("join", channel="call")
    id2 = (await p2.next_event("joined"))["peerId"]
    assert (await p1.next_event("peer-joined"))["peer"]["id"] == id2
    assert (await p2.next_event("peer-joined"))["peer"]["id"] == id1

    await p2.request("drop")
    assert (await p1.next_event("peer-left"))["peer"]["id"] == id2
    await p2.next_event("state-change", lambda e: e == {"from": "joined", "to": "reconnecting"})
    await p2.next_event(
        "state-change", lambda e: e == {"from": "reconnecting", "to": "joined"}, timeout=10
    )
    new_id2 = (await p2.request("peer_info"))["peerId"]
    assert new_id2 != id2
    assert (await p1.next_event("peer-joined"))["peer"]["id"] == new_id2
    # p1 survived on p2's side: the same RemotePeer, no peer-left / peer-joined for it.
    assert p2.unconsumed("peer-left") == [] and p2.unconsumed("peer-joined") == []
    assert [p["id"] for p in await p2.request("remote_peers")] == [id1]
    await p2.request("peer_send", data="back")
    assert await p1.next_event("data") == {
        "senderPeerId": new_id2,
        "data": "back",
        "kind": "broadcast",
    }
    assert p1.events("error") == [] and p2.events("error") == []


async def test_deeply_nested_publish_is_answered(server: Any, js: MakeJS) -> None:
    """Valid JSON nested deeper than the server parses is refused with the request's id, so
    the SDK's publish() rejects at once instead of waiting out its 15 s ack timeout."""
    sender = await js("sender")
    await sender.connect(server.url, key=server.api_key)
    depth = 2000  # 4000 bytes: far under the cap, and valid JSON that the SDK sends as is
    with pytest.raises(JSError) as rejected:
        await sender.request(
            "publish", channel="deep", dataJson="[" * depth + "]" * depth, timeout=3
        )
    assert rejected.value.name == "malformed_message"
    err = [f for f in sender.wire("in") if f["type"] == "error"]
    sent = [line["frame"] for line in sender.lines if line.get("dir") == "out"][-1]
    rid = re.search(r'"requestId":"([^"]+)"', sent)  # too deep for Python's json to parse
    assert rid is not None and len(err) == 1 and err[0]["requestId"] == rid.group(1)
    assert sender.events("server-error") == []
    await sender.publish("deep", [[["shallow is fine"]]])  # the connection is still usable
    assert await sender.state() == "connected"
