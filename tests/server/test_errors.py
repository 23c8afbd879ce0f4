"""Every error code the server emits, with and without a requestId."""

from __future__ import annotations

import asyncio
import json

import pytest
from tests.server.wire import Wire

from metered_realtime.protocol.limits import MAX_NESTING


def err(code: str, rid: str | None = None) -> dict[str, object]:
    frame: dict[str, object] = {"type": "error", "code": code}
    if rid is not None:
        frame["requestId"] = rid
    return frame


def strip_message(frame: dict[str, object]) -> dict[str, object]:
    assert isinstance(frame.get("message"), str) and frame["message"]
    return {k: v for k, v in frame.items() if k != "message"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not json", err("malformed_message")),
        ("[1,2]", err("malformed_message")),
        ('{"channel":"x"}', err("malformed_message")),
        ('{"type":5}', err("malformed_message")),
        ('{"type":"ping","requestId":7}', err("malformed_message")),
        ('{"type":"ping","requestId":""}', err("malformed_message")),
        ('{"type":"ping","requestId":"' + "x" * 129 + '"}', err("malformed_message")),
        # Numbers no double can hold are refused, correlated, never a 1011 crash.
        (
            '{"type":"publish","channel":"c","data":NaN,"requestId":"r"}',
            err("malformed_message", "r"),
        ),
        (
            '{"type":"publish","channel":"c","data":1e400,"requestId":"r"}',
            err("malformed_message", "r"),
        ),
        (
            '{"type":"publish","channel":"c","data":{"x":[-1e400]},"requestId":"r"}',
            err("malformed_message", "r"),
        ),
        ('{"type":"publish","channel":"c","data":1e400}', err("malformed_message")),
        ('{"type":"send","to":"x","data":1E+999,"requestId":"r"}', err("malformed_message", "r")),
        ('{"type":"send","to":"x","data":Infinity,"requestId":"r"}', err("malformed_message", "r")),
        # A missing or non-string type is still answered against the frame's requestId.
        ('{"requestId":"r"}', err("malformed_message", "r")),
        ('{"type":null,"requestId":"r"}', err("malformed_message", "r")),
        ('{"type":["ping"],"requestId":"r","channel":"c"}', err("malformed_message", "r")),
        ('{"type":5,"requestId":7}', err("malformed_message")),
        (
            '{"type":"subscribe","channel":"c","includeSenderMetadata":1,"requestId":"r"}',
            err("malformed_message", "r"),
        ),
        ('{"type":"nope"}', err("unknown_type")),
        ('{"type":"nope","requestId":"r"}', err("unknown_type", "r")),
        ('{"type":"subscribe","requestId":"r"}', err("invalid_channel", "r")),
        ('{"type":"subscribe","channel":"","requestId":"r"}', err("invalid_channel", "r")),
        (
            '{"type":"subscribe","channel":"' + "c" * 257 + '","requestId":"r"}',
            err("invalid_channel", "r"),
        ),
        ('{"type":"subscribe","channel":"a\\u0007b","requestId":"r"}', err("invalid_channel", "r")),
        (
            '{"type":"publish","channel":"a\\u0085","data":1,"requestId":"r"}',
            err("invalid_channel", "r"),
        ),
        ('{"type":"unsubscribe","channel":7,"requestId":"r"}', err("invalid_channel", "r")),
        ('{"type":"send","data":1,"requestId":"r"}', err("invalid_peer_id", "r")),
        ('{"type":"send","to":"","data":1,"requestId":"r"}', err("invalid_peer_id", "r")),
        (
            '{"type":"send","to":"' + "p" * 129 + '","data":1,"requestId":"r"}',
            err("invalid_peer_id", "r"),
        ),
        ('{"type":"send","to":"a\\u007f","data":1,"requestId":"r"}', err("invalid_peer_id", "r")),
        ('{"type":"publish","channel":"c","requestId":"r"}', err("missing_data", "r")),
        ('{"type":"send","to":"someone","requestId":"r"}', err("missing_data", "r")),
        ('{"type":"send","to":"nobody-here","data":1,"requestId":"r"}', err("peer_not_found", "r")),
        (
            '{"type":"subscribe","channel":"_metered/x","requestId":"r"}',
            err("channel_reserved", "r"),
        ),
        (
            '{"type":"subscribe","channel":"_SYSTEM/x","requestId":"r"}',
            err("channel_reserved", "r"),
        ),
        (
            '{"type":"publish","channel":"_Internal/x","data":1,"requestId":"r"}',
            err("channel_reserved", "r"),
        ),
    ],
)
async def test_error_codes(server, raw, expected):
    wire = await Wire.open(server.key_url())
    await wire.send(raw)
    assert strip_message(await wire.recv()) == expected
    # The connection stays up after any error.
    assert await wire.request({"type": "ping"}) == {"type": "pong"}
    await wire.close()


async def test_odd_but_finite_numbers_are_relayed_as_valid_json(server):
    wire = await Wire.open(server.key_url())
    await wire.subscribe("c")
    big = "1" + "0" * 400  # an integer beyond the double range: exact in Python, valid JSON
    data = '{"big":' + big + ',"tiny":1e-400,"max":1.7976931348623157e308,"neg":-0.0}'
    await wire.send('{"type":"publish","channel":"c","data":' + data + ',"requestId":"p"}')
    frames = []
    for _ in range(2):  # the ack and the echoed message, in either order
        raw = await asyncio.wait_for(wire.ws.recv(), 5)
        assert isinstance(raw, str)
        # Strict JSON (what JSON.parse accepts): no NaN/Infinity tokens anywhere.
        frames.append(json.loads(raw, parse_constant=lambda name: pytest.fail(f"{name} relayed")))
    assert {"type": "ack", "requestId": "p"} in frames
    (message,) = (f for f in frames if f["type"] == "message")
    assert message["data"] == {
        "big": int(big),
        "tiny": 0.0,
        "max": 1.7976931348623157e308,
        "neg": -0.0,
    }
    await wire.close()


async def test_binary_frame_is_malformed(server):
    wire = await Wire.open(server.key_url())
    await wire.ws.send(b'{"type":"ping"}')
    assert strip_message(await wire.recv()) == err("malformed_message")
    await wire.close()


async def test_reserved_looking_but_allowed_channels(server):
    wire = await Wire.open(server.key_url())
    for channel in ("metered/x", "_metered", "x/_system/y"):
        assert await wire.subscribe(channel, rid=channel) == []
    await wire.close()


async def test_channel_not_authorized_by_key_pattern(server):
    key = server.new_key(channel_patterns=["room-*", "lobby"])
    wire = await Wire.open(server.key_url(key))
    assert await wire.subscribe("room-1") == []
    assert await wire.subscribe("lobby", rid="l") == []
    for channel in ("room", "lobby2", "xroom-1"):
        reply = await wire.request({"type": "subscribe", "channel": channel, "requestId": "r"})
        assert strip_message(reply) == err("channel_not_authorized", "r")
    reply = await wire.request({"type": "publish", "channel": "other", "data": 1, "requestId": "p"})
    assert strip_message(reply) == err("channel_not_authorized", "p")
    await wire.close()


async def test_channel_not_authorized_by_token_channels(server):
    token = server.mint(channels=["tenant/42/*"])
    wire = await Wire.open(server.token_url(token))
    assert await wire.subscribe("tenant/42/a") == []
    reply = await wire.request({"type": "subscribe", "channel": "tenant/43/a", "requestId": "r"})
    assert strip_message(reply) == err("channel_not_authorized", "r")
    await wire.close()


async def test_action_not_permitted(server):
    key = server.new_key()  # default permissions: no send
    wire = await Wire.open(server.key_url(key))
    other = await Wire.open(server.key_url())
    reply = await wire.request({"type": "send", "to": other.peer_id, "data": 1, "requestId": "s"})
    assert strip_message(reply) == err("action_not_permitted", "s")
    await other.quiet()
    token = server.mint(permissions=["subscribe"])
    limited = await Wire.open(server.token_url(token))
    reply = await limited.request({"type": "publish", "channel": "c", "data": 1, "requestId": "p"})
    assert strip_message(reply) == err("action_not_permitted", "p")
    no_sub = await Wire.open(server.token_url(server.mint(permissions=["publish"])))
    reply = await no_sub.request({"type": "subscribe", "channel": "c", "requestId": "s"})
    assert strip_message(reply) == err("action_not_permitted", "s")
    for w in (wire, other, limited, no_sub):
        await w.close()


async def test_channel_limit_exceeded(server_factory):
    async with server_factory(max_subscriptions=2) as srv:
        wire = await Wire.open(srv.key_url())
        await wire.subscribe("a", rid="1")
        await wire.subscribe("b", rid="2")
        reply = await wire.request({"type": "subscribe", "channel": "c", "requestId": "3"})
        assert strip_message(reply) == err("channel_limit_exceeded", "3")
        # Re-subscribing an existing channel is not a new subscription.
        assert await wire.subscribe("a", rid="4") == []
        await wire.request({"type": "unsubscribe", "channel": "a", "requestId": "5"})
        assert await wire.subscribe("c", rid="6") == []
        await wire.close()


async def test_over_message_quota(server_factory):
    async with server_factory(app_message_quota=2) as srv:
        wire = await Wire.open(srv.key_url())
        for rid in ("1", "2"):
            reply = await wire.request(
                {"type": "publish", "channel": "c", "data": 1, "requestId": rid}
            )
            assert reply == {"type": "ack", "requestId": rid}
        reply = await wire.request({"type": "publish", "channel": "c", "data": 1, "requestId": "3"})
        assert strip_message(reply) == err("over_message_quota", "3")
        reply = await wire.request(
            {"type": "send", "to": wire.peer_id, "data": 1, "requestId": "4"}
        )
        assert strip_message(reply) == err("over_message_quota", "4")
        await wire.close()


async def test_nesting_near_the_recursion_limit_never_crashes(server_factory):
    # Frames nest at most MAX_NESTING levels on every Python version; around that depth the
    # answer is an ack or a correlated malformed_message, never a 1011 close.
    async with server_factory(rate_per_second=10_000, rate_burst=10_000) as srv:
        wire = await Wire.open(srv.key_url())
        outcomes = set()
        for depth in range(MAX_NESTING - 20, MAX_NESTING + 20):
            data = "[" * depth + "]" * depth
            rid = f"d{depth}"
            await wire.send(
                f'{{"type":"send","to":"{wire.peer_id}","data":{data},"requestId":"{rid}"}}'
            )
            reply = await wire.recv()
            if reply["type"] == "direct":  # delivered to ourselves: the ack follows
                reply = await wire.recv()
            assert reply.get("requestId") == rid, reply
            outcomes.add(reply.get("code", reply["type"]))
            # The send frame is one level above its data.
            assert (reply["type"] == "ack") == (depth + 1 <= MAX_NESTING), (depth, reply)
        assert outcomes == {"ack", "malformed_message"}
        assert await wire.request({"type": "ping"}) == {"type": "pong"}
        await wire.close()
