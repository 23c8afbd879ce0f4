"""Ordering guarantees, publishable-key rules and limits, as the JavaScript SDK sees them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.support.jsclient import JSClient, JSError, MakeJS

pytestmark = pytest.mark.timeout(30)


def seq_of(client: JSClient, name: str, match: Any) -> int:
    for line in client.lines:
        if line.get("type") == "event" and line.get("name") == name and match(line["payload"]):
            return int(line["seq"])
    raise AssertionError(f"{client.label}: no {name} event matching")


async def test_joined_presence_precedes_anything_from_the_joiner(server: Any, js: MakeJS) -> None:
    """docs/protocol.md, Ordering: a member sees presence{joined:[X]} before any direct or message from
    X, even when X subscribes, sends and publishes back to back (presence is coalesced)."""
    alice, bob = await js("alice"), await js("bob")
    a = (await alice.connect(server.url, key=server.api_key) or {})["peerId"]
    b = (await bob.connect(server.url, key=server.api_key) or {})["peerId"]
    await alice.subscribe("room")
    await alice.next_event("presence")
    # Written to the SDK in this order without waiting for any ack in between.
    await asyncio.gather(
        bob.subscribe("room"),
        bob.send(a, "direct-1"),
        bob.publish("room", "broadcast-1"),
    )
    assert await alice.next_event("direct") == {"from": b, "data": "direct-1"}
    assert await alice.next_event("message") == {
        "channel": "room",
        "from": b,
        "data": "broadcast-1",
    }
    joined = seq_of(alice, "presence", lambda p: p["joined"] == [{"peerId": b}])
    assert joined < seq_of(alice, "direct", lambda p: p["from"] == b)
    assert joined < seq_of(alice, "message", lambda p: p["from"] == b)
    sent = [f["type"] for f in bob.wire("out")]
    assert sent == ["subscribe", "send", "publish"]


async def test_send_to_self_and_idempotent_unsubscribe(server: Any, js: MakeJS) -> None:
    client = await js("solo")
    me = (await client.connect(server.url, key=server.api_key) or {})["peerId"]
    await client.send(me, {"note": "to self"})
    assert await client.next_event("direct") == {"from": me, "data": {"note": "to self"}}
    await client.unsubscribe("never-joined")  # acked, not an error
    await client.subscribe("twice")
    assert await client.next_event("presence") == {"channel": "twice", "joined": [], "left": []}
    await client.subscribe("twice")  # a duplicate subscribe still gets a fresh snapshot
    assert await client.next_event("presence") == {"channel": "twice", "joined": [], "left": []}
    assert client.events("server-error") == []


async def test_default_publishable_key_cannot_send(server: Any, js: MakeJS) -> None:
    """New publishable keys have every permission but `send`, as the hosted service does."""
    key = server.new_key()
    alice, bob = await js("alice"), await js("bob")
    await alice.connect(server.url, key=key)
    b = (await bob.connect(server.url, key=key) or {})["peerId"]
    with pytest.raises(JSError) as rejected:
        await alice.send(b, "hi")
    assert rejected.value.name == "action_not_permitted"
    await alice.subscribe("ok")  # the rest still works
    await alice.publish("ok", 1)
    assert (await alice.next_event("message"))["data"] == 1


async def test_key_channel_patterns(server: Any, js: MakeJS) -> None:
    key = server.new_key(
        permissions={"subscribe", "publish", "presence", "send"}, channel_patterns=["room-*"]
    )
    client = await js("scoped")
    await client.connect(server.url, key=key)
    await client.subscribe("room-1")
    for call in (client.subscribe("lobby"), client.publish("lobby", 1)):
        with pytest.raises(JSError) as rejected:
            await call
        assert rejected.value.name == "channel_not_authorized"
    assert await client.state() == "connected"


async def test_presence_permission_off_hides_the_member(server: Any, js: MakeJS) -> None:
    quiet_key = server.new_key(permissions={"subscribe", "publish"})
    loud, quiet = await js("loud"), await js("quiet")
    await loud.connect(server.url, key=server.api_key)
    await loud.subscribe("room")
    await loud.next_event("presence")
    q = (await quiet.connect(server.url, key=quiet_key) or {})["peerId"]
    await quiet.subscribe("room")
    await quiet.publish("room", "still delivered")
    # loud gets the message, and no presence about quiet before or after it.
    assert await loud.next_event("message") == {
        "channel": "room",
        "from": q,
        "data": "still delivered",
    }
    assert await quiet.next_event("message") == {
        "channel": "room",
        "from": q,
        "data": "still delivered",
    }
    assert loud.unconsumed("presence") == []
    assert quiet.events("presence") == []


async def test_revoked_key_is_refused_with_4001(server: Any, js: MakeJS) -> None:
    key = server.new_key()
    assert server.store.revoke(key)
    server.changed()
    client = await js("revoked")
    with pytest.raises(JSError) as rejected:
        await client.connect(server.url, key=key, reconnect=False)
    assert rejected.value.name == "SignallingConnectError"
    assert rejected.value["closeCode"] == 4001


async def test_subscription_limit(server_factory: Any, js: MakeJS) -> None:
    async with server_factory(max_subscriptions=2) as srv:
        client = await js("greedy")
        await client.connect(srv.url, key=srv.api_key)
        await client.subscribe("one")
        await client.subscribe("two")
        with pytest.raises(JSError) as rejected:
            await client.subscribe("three")
        assert rejected.value.name == "channel_limit_exceeded"
        await client.unsubscribe("one")
        await client.subscribe("three")
        assert await client.state() == "connected"


async def test_channel_names_the_sdk_allows_are_accepted(server: Any, js: MakeJS) -> None:
    """Lockstep identifier rules: JS counts UTF-16 units (<= 256), the server must accept
    every channel the SDK lets through, astral characters and line separators included."""
    client = await js("names")
    await client.connect(server.url, key=server.api_key)
    for channel in ("x" * 256, "é" * 256, "😀" * 128, "a\u2028b", "tenant/42/room #1"):
        await client.subscribe(channel)
        assert await client.next_event("presence") == {"channel": channel, "joined": [], "left": []}
        await client.publish(channel, "ok")
        assert (await client.next_event("message"))["channel"] == channel
    assert client.events("server-error") == []
