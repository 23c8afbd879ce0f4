"""Every error code the server emits, with and without a requestId."""

from __future__ import annotations

import pytest
from tests.server.wire import Wire


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
        ('{"type":"publish","channel":"c","data":NaN,"requestId":"r"}', err("malformed_message")),
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
