"""The server's WebSocket read and write path, over raw sockets.

Messages are handed to the server as they are parsed (server/endpoint.py): early ones,
fragmented ones and invalid UTF-8 are handled as websockets would. Output is corked per
connection and loop turn (server/outbound.py): many frames leave in one write, in order,
and a close follows every frame written before it.
"""

from __future__ import annotations

import json
from typing import Any

from tests.server.raw import RawClient, client_frame, server_conn, text
from tests.server.wire import Wire


async def test_frames_pipelined_behind_the_upgrade_are_answered(server):
    client = await RawClient.open(server.key_url(), text({"type": "ping", "requestId": "early"}))
    assert (await client.recv())["type"] == "welcome"
    assert await client.recv() == {"type": "pong", "requestId": "early"}
    client.close()


async def test_a_fragmented_message_is_routed_whole(server):
    client = await RawClient.open(server.key_url())
    assert (await client.recv())["type"] == "welcome"
    raw = json.dumps({"type": "ping", "requestId": "in-three-parts"}).encode()
    client.send(
        client_frame(raw[:5], 0x1, fin=False)
        + client_frame(raw[5:12], 0x0, fin=False)
        + client_frame(b"", 0x9)  # a ping between the fragments, as RFC 6455 allows
        + client_frame(raw[12:], 0x0)
    )
    opcode, _ = await client.frame()
    assert opcode == 0xA  # the pong to the control frame
    assert await client.recv() == {"type": "pong", "requestId": "in-three-parts"}
    client.close()


async def test_a_text_message_that_is_not_utf8_closes_with_1007(server):
    client = await RawClient.open(server.key_url())
    assert (await client.recv())["type"] == "welcome"
    client.send(client_frame(b'{"type":"ping","requestId":"\xff"}') + text({"type": "ping"}))
    assert await client.close_code() == 1007
    client.close()


def record_writes(transport: Any) -> list[bytes]:
    """Each write call on a real socket's transport, recorded as it goes through."""
    writes: list[bytes] = []
    real_write = transport.write

    def write(data: bytes) -> None:
        writes.append(bytes(data))
        real_write(data)

    def writelines(parts: list[bytes]) -> None:
        write(b"".join(parts))

    transport.write, transport.writelines = write, writelines
    return writes


async def test_frames_of_one_turn_leave_in_one_write_in_order(server):
    subscriber = await Wire.open(server.key_url())
    await subscriber.subscribe("cork")
    conn = server_conn(server, subscriber.peer_id)
    writes = record_writes(conn.handle.transport)
    publisher = await RawClient.open(server.key_url())
    assert (await publisher.recv())["type"] == "welcome"
    count = 100
    publisher.send(
        b"".join(
            text({"type": "publish", "channel": "cork", "data": i, "requestId": f"p{i}"})
            for i in range(count)
        )
    )
    acks = [await publisher.recv() for _ in range(count)]
    assert [a["requestId"] for a in acks] == [f"p{i}" for i in range(count)]
    got = []
    for _ in range(count * 2):
        frame = await subscriber.recv()
        if frame["type"] == "message":
            got.append(frame["data"])
        if len(got) == count:
            break
    assert got == list(range(count))
    # 100 frames, read by the server in a few reads at most: a few writes, not 100.
    assert 0 < len(writes) <= 10, writes
    publisher.close()
    await subscriber.close()


async def test_a_close_follows_every_frame_queued_before_it(server_factory):
    # Three frames in one write, the third over the rate: two pongs are queued in the
    # turn the hub closes the connection (4011), and they still come first.
    async with server_factory(rate_burst=3.0, rate_per_second=0.01) as server:
        client = await RawClient.open(server.key_url())
        assert (await client.recv())["type"] == "welcome"
        client.send(
            text({"type": "ping", "requestId": "first"})
            + text({"type": "ping", "requestId": "second"})
            + text({"type": "ping", "requestId": "third"})
            + text({"type": "ping", "requestId": "fourth"})
        )
        assert await client.recv() == {"type": "pong", "requestId": "first"}
        assert await client.recv() == {"type": "pong", "requestId": "second"}
        assert await client.recv() == {"type": "pong", "requestId": "third"}
        assert await client.close_code() == 4011
        client.close()


async def test_the_handshake_is_not_kept_once_the_connection_is_admitted(server):
    # Headers are KiBs a connection, and the request line holds the credential.
    token = server.mint()
    wire = await Wire.open(server.token_url(token))
    ws = server_conn(server, wire.peer_id).handle
    kept = [getattr(ws, name, None) for name in type(ws).__slots__]
    assert ws.target is None and token not in repr(kept)
    assert not any(isinstance(value, (bytes, bytearray)) and value for value in kept)
    assert await wire.request({"type": "ping", "requestId": "p"}) == {
        "type": "pong",
        "requestId": "p",
    }
    await wire.close()


async def test_a_big_frame_is_written_at_once_behind_what_was_queued(server):
    wire = await Wire.open(server.key_url())
    await wire.subscribe("big")
    ws = server_conn(server, wire.peer_id).handle
    writes = record_writes(ws.transport)
    big = "b" * 20_000
    # Fed as the event loop would, without yielding to it: the small pong waits for the
    # turn's end, the big message does not, and takes the pong along, in order.
    ws.data_received(
        text({"type": "ping", "requestId": "small"})
        + text({"type": "publish", "channel": "big", "data": big})
    )
    assert len(writes) == 1, writes
    assert writes[0].index(b'"small"') < writes[0].index(big.encode())
    assert await wire.recv() == {"type": "pong", "requestId": "small"}
    message = await wire.recv()
    assert message["type"] == "message" and message["data"] == big
    await wire.close()
