"""The published JavaScript SDK (`@metered-ca/realtime`, in Node with `ws`) against our server.

Each test drives real SDK objects in node processes (tests/interop/driver.mjs) and checks both
what the SDK reports (events, resolved and rejected promises) and, from the driver's wire trace,
the exact frames the server sent it.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support.cluster import cluster_factory
from tests.support.jsclient import JSClient, JSError, MakeJS

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=["one-node", "redis-cluster"])
async def server(
    request: pytest.FixtureRequest, server_factory: Any, tmp_path: Any
) -> AsyncIterator[Any]:
    """One server, or a two-node cluster whose nodes the clients alternate between."""
    if request.param == "one-node":
        factory = server_factory
    else:
        factory = cluster_factory(tmp_path, request.getfixturevalue("redis_server").url)
    async with factory() as srv:
        yield srv


PEER_ID = re.compile(r"[A-Za-z0-9]{20}")
CHANNEL = "room-42"


def frames_of(client: JSClient, kind: str) -> list[dict[str, Any]]:
    return [f for f in client.wire("in") if f.get("type") == kind]


def last_request_id(client: JSClient, kind: str) -> str:
    sent = [f for f in client.wire("out") if f.get("type") == kind]
    assert sent, f"{client.label} sent no {kind}"
    rid = sent[-1]["requestId"]
    assert isinstance(rid, str)
    return rid


def assert_welcome(client: JSClient, connected: dict[str, Any] | None) -> str:
    assert connected is not None
    peer_id = connected["peerId"]
    assert PEER_ID.fullmatch(peer_id), peer_id
    assert connected["isReconnect"] is False
    assert connected["expiresAt"] is None
    assert connected["maxMessageSize"] == 65536
    assert abs(connected["serverTime"] - time.time() * 1000) < 60_000  # Unix milliseconds
    assert connected.get("iceServers") is None  # no TURN configured
    welcome = client.wire("in")[0]
    assert welcome["type"] == "welcome"
    assert set(welcome) <= {
        "type",
        "peerId",
        "expiresAt",
        "serverTime",
        "maxMessageSize",
        "metadata",
    }
    assert {"type", "peerId", "expiresAt", "serverTime", "maxMessageSize"} <= set(welcome)
    assert welcome["peerId"] == peer_id
    return str(peer_id)


async def test_subscribe_publish_send_presence_and_peer_not_found(server: Any, js: MakeJS) -> None:
    alice, bob = await js("alice"), await js("bob")

    a = assert_welcome(alice, await alice.connect(server.url, key=server.api_key))
    await alice.subscribe(CHANNEL)
    assert await alice.next_event("presence") == {"channel": CHANNEL, "joined": [], "left": []}
    # The ack comes before the snapshot (the JS MeteredPeer drops a snapshot sent before it).
    rid = last_request_id(alice, "subscribe")
    assert alice.wire("in")[1:] == [
        {"type": "ack", "requestId": rid},
        {"type": "presence", "channel": CHANNEL, "joined": [], "left": []},
    ]

    b = assert_welcome(bob, await bob.connect(server.url, key=server.api_key))
    assert a != b
    await bob.subscribe(CHANNEL)
    assert await bob.next_event("presence") == {
        "channel": CHANNEL,
        "joined": [{"peerId": a}],
        "left": [],
    }
    assert await alice.next_event("presence") == {
        "channel": CHANNEL,
        "joined": [{"peerId": b}],
        "left": [],
    }

    # publish -> message to every subscriber, the subscribed publisher included.
    data = {"text": "héllo ✓", "n": [1, 2.5, None, True, {"deep": []}]}
    await alice.publish(CHANNEL, data)
    expected = {"channel": CHANNEL, "from": a, "data": data}
    assert await bob.next_event("message") == expected
    assert await alice.next_event("message") == expected
    assert frames_of(bob, "message") == [{"type": "message", **expected}]
    await bob.publish(CHANNEL, None)  # null is a value, not a missing `data`
    assert await alice.next_event("message") == {"channel": CHANNEL, "from": b, "data": None}
    assert await bob.next_event("message") == {"channel": CHANNEL, "from": b, "data": None}

    # send -> direct to the target only, no channel, acked to the sender.
    await alice.send(b, {"kind": "dm", "seq": 1})
    assert await bob.next_event("direct") == {"from": a, "data": {"kind": "dm", "seq": 1}}
    assert frames_of(bob, "direct") == [
        {"type": "direct", "from": a, "data": {"kind": "dm", "seq": 1}}
    ]
    assert frames_of(alice, "ack")[-1] == {
        "type": "ack",
        "requestId": last_request_id(alice, "send"),
    }

    # send to an id nobody holds -> the promise rejects with the server's code.
    with pytest.raises(JSError) as rejected:
        await alice.send("nobodyHasThisId00000", {"x": 1})
    assert rejected.value.name == "peer_not_found"
    err = frames_of(alice, "error")[-1]
    assert err["code"] == "peer_not_found"
    assert err["requestId"] == last_request_id(alice, "send")
    assert set(err) <= {"type", "code", "requestId", "message"}
    assert rejected.value.message == err.get("message", "peer_not_found")
    assert alice.events("server-error") == []  # correlated: it rejects, it is not an event
    assert await alice.state() == "connected"

    # leave by unsubscribe: the others see `left`, the leaver sees no presence for it.
    await bob.unsubscribe(CHANNEL)
    assert await alice.next_event("presence") == {
        "channel": CHANNEL,
        "joined": [],
        "left": [{"peerId": b}],
    }
    assert frames_of(bob, "ack")[-1] == {
        "type": "ack",
        "requestId": last_request_id(bob, "unsubscribe"),
    }

    # A second subscribe gets a fresh, full snapshot.
    await bob.subscribe(CHANNEL)
    assert await bob.next_event("presence") == {
        "channel": CHANNEL,
        "joined": [{"peerId": a}],
        "left": [],
    }
    assert await alice.next_event("presence") == {
        "channel": CHANNEL,
        "joined": [{"peerId": b}],
        "left": [],
    }

    # leave by disconnect.
    await bob.close()
    assert await bob.next_event("disconnected") == {
        "code": 1000,
        "reason": "client requested close",
        "willReconnect": False,
    }
    assert await alice.next_event("presence") == {
        "channel": CHANNEL,
        "joined": [],
        "left": [{"peerId": b}],
    }
    with pytest.raises(JSError) as gone:
        await alice.send(b, "anyone there?")
    assert gone.value.name == "peer_not_found"

    # Nothing else reached either SDK, and it dropped no frame as malformed.
    assert alice.unconsumed("presence") == [] and bob.unconsumed("presence") == []
    assert alice.unconsumed("message") == [] and bob.unconsumed("message") == []
    assert alice.events("direct") == [] and bob.unconsumed("direct") == []
    assert alice.events("server-error") == [] and bob.events("server-error") == []
    for client in (alice, bob):
        assert [log for log in client.logs() if log["level"] != "info"] == []
        assert all(f.get("type") != "<unparsable>" for f in client.wire("in"))
    await alice.close()
    assert (await alice.next_event("disconnected"))["code"] == 1000


async def test_presence_of_three_and_direct_across_channels(server: Any, js: MakeJS) -> None:
    """Deltas reach only members of the channel; `send` needs no shared channel."""
    alice, bob, carol = await js("alice"), await js("bob"), await js("carol")
    a = (await alice.connect(server.url, key=server.api_key) or {})["peerId"]
    b = (await bob.connect(server.url, key=server.api_key) or {})["peerId"]
    c = (await carol.connect(server.url, key=server.api_key) or {})["peerId"]
    await alice.subscribe("lobby")
    await alice.next_event("presence")
    await bob.subscribe("lobby")
    assert (await bob.next_event("presence"))["joined"] == [{"peerId": a}]
    assert (await alice.next_event("presence"))["joined"] == [{"peerId": b}]
    await carol.subscribe("elsewhere")
    assert await carol.next_event("presence") == {"channel": "elsewhere", "joined": [], "left": []}

    # carol shares no channel with bob: direct still routes within the app.
    await carol.send(b, ["from", "carol"])
    assert await bob.next_event("direct") == {"from": c, "data": ["from", "carol"]}
    # carol publishes to lobby without being subscribed to it (allowed).
    await carol.publish("lobby", "hi lobby")
    for member in (alice, bob):
        assert await member.next_event("message") == {
            "channel": "lobby",
            "from": c,
            "data": "hi lobby",
        }
    await carol.close()
    await carol.next_event("disconnected")
    await bob.close()
    assert await alice.next_event("presence") == {
        "channel": "lobby",
        "joined": [],
        "left": [{"peerId": b}],
    }
    # carol was never in lobby, so her leaving told alice nothing.
    assert alice.unconsumed("presence") == []
    assert carol.unconsumed("presence") == []


async def test_bad_key_rejects_connect_with_4001(server: Any, js: MakeJS) -> None:
    client = await js("mallory")
    with pytest.raises(JSError) as rejected:
        await client.connect(server.url, key="pk_live_" + "x" * 24, reconnect=False)
    assert rejected.value["closeCode"] == 4001
    assert rejected.value.name == "SignallingConnectError"
    assert [f for f in client.wire("in")] == []  # closed before any welcome
    closes = [line for line in client.lines if line.get("dir") == "close"]
    assert [c["code"] for c in closes] == [4001]


async def test_reserved_channel_is_refused(server: Any, js: MakeJS) -> None:
    client = await js("alice")
    await client.connect(server.url, key=server.api_key)
    for channel in ("_metered/x", "_Internal/y", "_SYSTEM/z"):
        with pytest.raises(JSError) as rejected:
            await client.subscribe(channel)
        assert rejected.value.name == "channel_reserved"
        with pytest.raises(JSError) as rejected:
            await client.publish(channel, 1)
        assert rejected.value.name == "channel_reserved"
    assert await client.state() == "connected"


async def test_jwt_metadata_presence_and_sender_metadata(server: Any, js: MakeJS) -> None:
    ice = [{"urls": "turn:127.0.0.1:3478", "username": "u", "credential": "c"}]
    alice_token = server.mint(peer_metadata={"name": "Alice"}, metadata={"iceServers": ice})
    alice, bob = await js("alice"), await js("bob")
    connected = await alice.connect(server.url, token=alice_token)
    assert connected is not None
    a = connected["peerId"]
    assert isinstance(connected["expiresAt"], int)
    assert 3500 < connected["expiresAt"] - time.time() <= 3601  # Unix seconds of `exp`
    assert connected["iceServers"] == ice
    assert alice.wire("in")[0]["metadata"] == {"iceServers": ice}
    b = (await bob.connect(server.url, token=server.mint(peer_metadata={"name": "Bob"})) or {})[
        "peerId"
    ]

    await alice.subscribe(CHANNEL)
    await alice.next_event("presence")
    await bob.subscribe(CHANNEL, include_sender_metadata=True)
    assert bob.wire("out")[-1]["includeSenderMetadata"] is True
    assert await bob.next_event("presence") == {
        "channel": CHANNEL,
        "joined": [{"peerId": a, "metadata": {"name": "Alice"}}],
        "left": [],
    }
    assert await alice.next_event("presence") == {
        "channel": CHANNEL,
        "joined": [{"peerId": b, "metadata": {"name": "Bob"}}],
        "left": [],
    }

    await alice.publish(CHANNEL, "hello")
    assert await bob.next_event("message") == {
        "channel": CHANNEL,
        "from": a,
        "fromMetadata": {"name": "Alice"},
        "data": "hello",
    }
    # alice did not opt in, so her echo carries no sender metadata.
    assert await alice.next_event("message") == {"channel": CHANNEL, "from": a, "data": "hello"}

    # direct: fromMetadata only for a recipient holding an includeSenderMetadata subscription.
    await alice.send(b, 1)
    assert await bob.next_event("direct") == {
        "from": a,
        "fromMetadata": {"name": "Alice"},
        "data": 1,
    }
    await bob.send(a, 2)
    assert await alice.next_event("direct") == {"from": b, "data": 2}

    await bob.close()
    assert await alice.next_event("presence") == {
        "channel": CHANNEL,
        "joined": [],
        "left": [{"peerId": b, "metadata": {"name": "Bob"}}],
    }


async def test_jwt_scope_and_permissions(server: Any, js: MakeJS) -> None:
    carol = await js("carol")
    token = server.mint(channels=["room-*"], permissions=["subscribe", "presence"])
    await carol.connect(server.url, token=token)
    with pytest.raises(JSError) as rejected:
        await carol.subscribe("lobby")
    assert rejected.value.name == "channel_not_authorized"
    await carol.subscribe("room-1")
    assert await carol.next_event("presence") == {"channel": "room-1", "joined": [], "left": []}
    with pytest.raises(JSError) as rejected:
        await carol.publish("room-1", "x")
    assert rejected.value.name == "action_not_permitted"
    with pytest.raises(JSError) as rejected:
        await carol.send("someoneElse000000000", "x")
    assert rejected.value.name == "action_not_permitted"
    assert await carol.state() == "connected"


@pytest.mark.parametrize(
    ("claims", "code"),
    [({"ttl": 10, "now": time.time() - 100}, 4002), ({"channels": []}, 4003)],
    ids=["expired", "no-channels"],
)
async def test_jwt_refused_before_welcome(
    server: Any, js: MakeJS, claims: dict[str, Any], code: int
) -> None:
    client = await js("late")
    with pytest.raises(JSError) as rejected:
        await client.connect(server.url, token=server.mint(**claims), reconnect=False)
    assert rejected.value.name == "SignallingConnectError"
    assert rejected.value["closeCode"] == code
    assert client.wire("in") == []


async def test_metered_peer_join_data_and_leave(server: Any, js: MakeJS) -> None:
    """Two JS MeteredPeers (no media, so no negotiation) meet through presence."""
    p1, p2 = await js("peer1"), await js("peer2")
    await p1.connect(server.url, key=server.api_key, kind="peer")
    await p2.connect(server.url, key=server.api_key, kind="peer")
    await p1.request("join", channel="call")
    joined1 = await p1.next_event("joined")
    assert joined1["channel"] == "call" and PEER_ID.fullmatch(joined1["peerId"])
    await p2.request("join", channel="call")
    joined2 = await p2.next_event("joined")
    id1, id2 = joined1["peerId"], joined2["peerId"]

    remote_of_2 = (await p2.next_event("peer-joined"))["peer"]
    remote_of_1 = (await p1.next_event("peer-joined"))["peer"]
    assert remote_of_2["id"] == id1 and remote_of_1["id"] == id2
    assert remote_of_1["polite"] is (id1 < id2) and remote_of_2["polite"] is (id2 < id1)
    assert remote_of_1["state"] == "idle" and remote_of_2["state"] == "idle"

    await p1.request("peer_send", data={"hello": "all"})
    assert await p2.next_event("data") == {
        "senderPeerId": id1,
        "data": {"hello": "all"},
        "kind": "broadcast",
    }
    await p2.request("send_to", peerId=id1, data=["just", "you"])
    assert await p1.next_event("data") == {
        "senderPeerId": id2,
        "data": ["just", "you"],
        "kind": "direct",
    }

    await p2.request("peer_close")
    assert (await p1.next_event("peer-left"))["peer"]["id"] == id2
    assert await p1.request("remote_peers") == []
    # MeteredPeer drops its own broadcast echo; nothing else arrived and nothing failed.
    assert p1.unconsumed("data") == [] and p2.unconsumed("data") == []
    assert p1.events("error") == [] and p2.events("error") == []
    assert await p1.request("peer_info") == {"state": "joined", "peerId": id1, "channel": "call"}
