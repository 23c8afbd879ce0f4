"""Every server frame, checked byte for byte against a real server."""

from __future__ import annotations

import asyncio
import json
import re
import time

from tests.server.wire import Wire
from websockets.asyncio.client import connect


async def test_welcome_is_first_and_complete(server):
    before = time.time() * 1000
    wire = await Wire.open(server.key_url())
    w = wire.welcome
    assert list(w) == ["type", "peerId", "expiresAt", "serverTime", "maxMessageSize"]
    assert re.fullmatch(r"[A-Za-z0-9]{20}", w["peerId"])
    assert w["expiresAt"] is None
    assert before - 1000 <= w["serverTime"] <= time.time() * 1000 + 1000
    assert w["maxMessageSize"] == 65536
    await wire.close()


async def test_raw_welcome_bytes_are_compact(server):
    async with connect(server.key_url()) as ws:
        raw = await ws.recv()
        assert isinstance(raw, str)
        assert raw.startswith('{"type":"welcome","peerId":"') and " " not in raw


async def test_peer_ids_are_fresh_per_connection(server):
    wires = [await Wire.open(server.key_url()) for _ in range(5)]
    assert len({w.peer_id for w in wires}) == 5
    for w in wires:
        await w.close()


async def test_subscribe_ack_then_empty_snapshot(server):
    a = await Wire.open(server.key_url())
    await a.send({"type": "subscribe", "channel": "room", "requestId": "r1"})
    assert await a.recv() == {"type": "ack", "requestId": "r1"}
    assert await a.recv() == {"type": "presence", "channel": "room", "joined": [], "left": []}
    await a.close()


async def test_join_delta_snapshot_and_leave(server):
    a = await Wire.open(server.key_url())
    b = await Wire.open(server.key_url())
    assert await a.subscribe("room") == []
    assert await b.subscribe("room") == [a.peer_id]
    delta = await a.recv()
    assert delta == {
        "type": "presence",
        "channel": "room",
        "joined": [{"peerId": b.peer_id}],
        "left": [],
    }
    await b.close()
    left = await a.recv()
    assert left == {
        "type": "presence",
        "channel": "room",
        "joined": [],
        "left": [{"peerId": b.peer_id}],
    }
    await a.close()


async def test_resubscribe_is_idempotent_with_fresh_snapshot(server):
    a = await Wire.open(server.key_url())
    b = await Wire.open(server.key_url())
    await a.subscribe("room")
    await b.subscribe("room")
    await a.recv()  # b joined
    assert await b.subscribe("room", rid="again") == [a.peer_id]
    await a.quiet()  # no duplicate delta for a re-subscribe
    await a.close()
    await b.close()


async def test_unsubscribe_acks_and_announces_leave(server):
    a = await Wire.open(server.key_url())
    b = await Wire.open(server.key_url())
    await a.subscribe("room")
    await b.subscribe("room")
    await a.recv()
    assert await b.request({"type": "unsubscribe", "channel": "room", "requestId": "u"}) == {
        "type": "ack",
        "requestId": "u",
    }
    assert (await a.recv())["left"] == [{"peerId": b.peer_id}]
    # Not subscribed: still acked.
    assert await b.request({"type": "unsubscribe", "channel": "room", "requestId": "u2"}) == {
        "type": "ack",
        "requestId": "u2",
    }
    await b.quiet()
    await a.close()
    await b.close()


async def test_publish_fans_out_including_publisher(server):
    a = await Wire.open(server.key_url())
    b = await Wire.open(server.key_url())
    await a.subscribe("room")
    await b.subscribe("room")
    await a.recv()
    data = {"text": "héllo ✓", "n": [1, 2.5, None, True]}
    await a.send({"type": "publish", "channel": "room", "data": data, "requestId": "p"})
    expected = {"type": "message", "channel": "room", "from": a.peer_id, "data": data}
    assert await b.recv() == expected
    got = [await a.recv(), await a.recv()]
    assert expected in got and {"type": "ack", "requestId": "p"} in got
    await a.close()
    await b.close()


async def test_publish_without_subscribing_and_null_data(server):
    a = await Wire.open(server.key_url())
    b = await Wire.open(server.key_url())
    await b.subscribe("room")
    await a.send({"type": "publish", "channel": "room", "data": None, "requestId": "p"})
    assert await a.recv() == {"type": "ack", "requestId": "p"}
    assert await b.recv() == {"type": "message", "channel": "room", "from": a.peer_id, "data": None}
    # Zero subscribers is still acked.
    assert await a.request(
        {"type": "publish", "channel": "empty", "data": 1, "requestId": "q"}
    ) == {
        "type": "ack",
        "requestId": "q",
    }
    await a.close()
    await b.close()


async def test_sender_metadata_only_when_requested(server):
    token = server.mint(peer_metadata={"name": "Ada"})
    pub = await Wire.open(server.token_url(token))
    plain = await Wire.open(server.key_url())
    rich = await Wire.open(server.key_url())
    await plain.subscribe("room")
    await rich.subscribe("room", includeSenderMetadata=True)
    await plain.recv()  # rich joined
    await pub.send({"type": "publish", "channel": "room", "data": 1, "requestId": "p"})
    assert await pub.recv() == {"type": "ack", "requestId": "p"}
    assert "fromMetadata" not in await plain.recv()
    assert (await rich.recv())["fromMetadata"] == {"name": "Ada"}
    # Direct: fromMetadata goes to a recipient holding a subscription with the flag.
    await pub.send({"type": "send", "to": rich.peer_id, "data": "x", "requestId": "d1"})
    await pub.send({"type": "send", "to": plain.peer_id, "data": "x", "requestId": "d2"})
    assert await rich.recv() == {
        "type": "direct",
        "from": pub.peer_id,
        "data": "x",
        "fromMetadata": {"name": "Ada"},
    }
    assert await plain.recv() == {"type": "direct", "from": pub.peer_id, "data": "x"}
    for w in (pub, plain, rich):
        await w.close()


async def test_presence_entries_carry_peer_metadata(server):
    a = await Wire.open(server.token_url(server.mint(peer_metadata={"role": "bot"})))
    b = await Wire.open(server.key_url())
    await a.subscribe("room")
    await b.send({"type": "subscribe", "channel": "room", "requestId": "s"})
    await b.recv()
    snap = await b.recv()
    assert snap["joined"] == [{"peerId": a.peer_id, "metadata": {"role": "bot"}}]
    assert (await a.recv())["joined"] == [{"peerId": b.peer_id}]
    await a.close()
    left = await b.recv()
    assert left["left"] == [{"peerId": a.peer_id, "metadata": {"role": "bot"}}]
    await b.close()


async def test_direct_send_and_send_to_self(server):
    a = await Wire.open(server.key_url())
    b = await Wire.open(server.key_url())
    await a.send({"type": "send", "to": b.peer_id, "data": {"k": 1}, "requestId": "d"})
    assert await b.recv() == {"type": "direct", "from": a.peer_id, "data": {"k": 1}}
    assert await a.recv() == {"type": "ack", "requestId": "d"}
    await a.send({"type": "send", "to": a.peer_id, "data": 2, "requestId": "self"})
    assert await a.recv() == {"type": "direct", "from": a.peer_id, "data": 2}
    assert await a.recv() == {"type": "ack", "requestId": "self"}
    await a.close()
    await b.close()


async def test_peer_not_found_after_disconnect(server):
    a = await Wire.open(server.key_url())
    b = await Wire.open(server.key_url())
    gone = b.peer_id
    await b.close()
    await b.ws.wait_closed()
    for _ in range(50):
        reply = await a.request({"type": "send", "to": gone, "data": 1, "requestId": "d"})
        if reply["type"] == "error":
            break
        await asyncio.sleep(0.02)
    assert reply["code"] == "peer_not_found" and reply["requestId"] == "d"
    await a.close()


async def test_cross_app_isolation(server):
    other_app = server.store.create_app("other")
    other_key = server.store.create_publishable_key(
        other_app.id, permissions={"subscribe", "publish", "presence", "send"}
    ).key
    a = await Wire.open(server.key_url())
    x = await Wire.open(server.key_url(other_key))
    assert await a.subscribe("room") == []
    assert await x.subscribe("room") == []  # same name, other tenant: not a member
    reply = await x.request({"type": "send", "to": a.peer_id, "data": 1, "requestId": "d"})
    assert reply["code"] == "peer_not_found"
    await x.send({"type": "publish", "channel": "room", "data": 1, "requestId": "p"})
    frames = [await x.recv(), await x.recv()]
    assert {"type": "ack", "requestId": "p"} in frames
    await a.quiet()
    await a.close()
    await x.close()


async def test_ping_pong(server):
    a = await Wire.open(server.key_url())
    assert await a.request({"type": "ping"}) == {"type": "pong"}
    assert await a.request({"type": "ping", "requestId": "p1"}) == {
        "type": "pong",
        "requestId": "p1",
    }
    await a.close()


async def test_unknown_fields_are_ignored(server):
    a = await Wire.open(server.key_url())
    reply = await a.request(
        {"type": "subscribe", "channel": "c", "requestId": "s", "extra": {"x": 1}}
    )
    assert reply == {"type": "ack", "requestId": "s"}
    await a.close()


async def test_acks_follow_request_order(server):
    a = await Wire.open(server.key_url())
    for i in range(50):
        await a.send({"type": "publish", "channel": "c", "data": i, "requestId": f"r{i}"})
    acks = [(await a.recv())["requestId"] for _ in range(50)]
    assert acks == [f"r{i}" for i in range(50)]
    await a.close()


async def test_ascii_escaped_and_raw_utf8_input_both_accepted(server):
    a = await Wire.open(server.key_url())
    b = await Wire.open(server.key_url())
    await b.subscribe("c")
    await a.send('{"type":"publish","channel":"c","data":"\\u00e9","requestId":"1"}')
    await a.send('{"type":"publish","channel":"c","data":"é","requestId":"2"}')
    assert (await b.recv())["data"] == "é"
    assert (await b.recv())["data"] == "é"
    await a.close()
    await b.close()


async def test_lone_surrogate_data_still_reaches_subscribers(server):
    a = await Wire.open(server.key_url())
    await a.subscribe("c")
    await a.send('{"type":"publish","channel":"c","data":"\\ud800","requestId":"1"}')
    frames = [await a.recv(), await a.recv()]
    assert {"type": "message", "channel": "c", "from": a.peer_id, "data": "\ud800"} in frames
    await a.close()


async def test_only_text_frames_are_sent(server):
    async with connect(server.key_url()) as ws:
        raw = await ws.recv()
        await ws.send(json.dumps({"type": "ping"}))
        raw2 = await ws.recv()
        assert isinstance(raw, str) and isinstance(raw2, str)
