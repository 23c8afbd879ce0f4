"""A connection's life on the server (server/endpoint.py), over raw sockets.

The opening handshake is checked as RFC 6455 asks, a slow one is dropped, keepalive pings
find a silent client, both closing handshakes end with the server closing the socket, and
one that the client never answers is aborted.
"""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from tests.server.raw import TIMEOUT, RawClient, client_frame, server_conn, text
from tests.server.wire import Wire

pytestmark = pytest.mark.timeout(30)


async def exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new connection; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()


def upgrade(path: str, *lines: str, version: str = "1.1") -> bytes:
    return (
        f"GET {path} HTTP/{version}\r\nHost: x\r\n" + "".join(f"{h}\r\n" for h in lines) + "\r\n"
    ).encode()


KEY = "Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)).decode()
GOOD = ("Upgrade: websocket", "Connection: keep-alive, Upgrade", KEY, "Sec-WebSocket-Version: 13")


async def test_the_accept_key_is_the_one_rfc_6455_computes(server):
    answer = await exchange(
        server.server.port,
        upgrade(
            f"/v1?key={server.api_key}",
            "Upgrade: WebSocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",  # RFC 6455's own example
            "Sec-WebSocket-Version: 13",
        )
        + client_frame(b"\x03\xe8", 0x8),
    )
    head = answer.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head


@pytest.mark.parametrize(
    ("lines", "version", "status"),
    [
        (GOOD[1:], "1.1", b"426"),  # no Upgrade
        ((GOOD[0], "Connection: keep-alive", *GOOD[2:]), "1.1", b"426"),
        ((*GOOD[:3], "Sec-WebSocket-Version: 8"), "1.1", b"426"),
        ((*GOOD[:2], "Sec-WebSocket-Key: short", GOOD[3]), "1.1", b"400"),
        ((*GOOD[:2], GOOD[3]), "1.1", b"400"),  # no key
        (GOOD, "1.0", b"400"),
    ],
)
async def test_a_bad_opening_handshake_is_answered_with_an_http_error(
    server, lines, version, status
):
    answer = await exchange(
        server.server.port, upgrade(f"/v1?key={server.api_key}", *lines, version=version)
    )
    assert answer.startswith(b"HTTP/1.1 " + status), answer
    if status == b"426":
        assert b"\r\nUpgrade: websocket\r\n" in answer
        assert b"\r\nSec-WebSocket-Version: 13\r\n" in answer
    assert not server.server.hub.conns


async def test_a_request_sent_too_slowly_is_dropped(server_factory):
    async with server_factory(handshake_timeout=0.3) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.server.port)
        writer.write(b"GET /v1?key=" + srv.api_key.encode() + b" HTTP/1.1\r\nHost: x\r\n")
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
        assert not srv.server.listener.endpoints


async def test_keepalive_closes_a_client_that_never_answers_and_keeps_one_that_does(
    server_factory,
):
    async with server_factory(ws_ping_interval=0.2, ws_ping_timeout=0.3) as srv:
        silent = await RawClient.open(srv.key_url())
        answering = await RawClient.open(srv.key_url())
        assert (await silent.recv())["type"] == "welcome"
        assert (await answering.recv())["type"] == "welcome"
        for _ in range(4):  # past the silent one's timeout
            opcode, payload = await answering.frame()
            assert opcode == 0x9
            answering.send(client_frame(payload, 0xA))
        opcode, payload = await silent.frame()
        assert opcode == 0x9
        opcode, payload = await silent.frame()
        assert (opcode, payload) == (0x8, (1011).to_bytes(2, "big") + b"keepalive ping timeout")
        assert await asyncio.wait_for(silent.reader.read(), TIMEOUT) == b""
        answering.send(text({"type": "ping", "requestId": "alive"}))
        for _ in range(10):
            opcode, payload = await answering.frame()
            if opcode == 0x1:
                break
            answering.send(client_frame(payload, 0xA))
        assert b'"alive"' in payload
        silent.close()
        answering.close()


async def test_a_client_ping_is_answered_with_its_payload(server):
    client = await RawClient.open(server.key_url())
    assert (await client.recv())["type"] == "welcome"
    client.send(client_frame(b"are you there", 0x9))
    assert await client.frame() == (0xA, b"are you there")
    client.close()


async def test_a_client_close_is_echoed_and_the_server_closes_the_socket(server):
    client = await RawClient.open(server.key_url())
    assert (await client.recv())["type"] == "welcome"
    client.send(client_frame((4321).to_bytes(2, "big") + b"leaving", 0x8))
    assert await client.frame() == (0x8, (4321).to_bytes(2, "big") + b"leaving")
    assert await asyncio.wait_for(client.reader.read(), TIMEOUT) == b""
    client.close()


async def test_a_close_the_client_never_answers_is_aborted_after_the_close_timeout(server):
    client = await RawClient.open(server.key_url())
    welcome = await client.recv()
    for node in server.nodes:
        node.listener.close_timeout = 0.3
    conn = server_conn(server, welcome["peerId"])
    conn.handle.close(4000, "test")
    assert await client.frame() == (0x8, (4000).to_bytes(2, "big") + b"test")
    # Not answered: the server gives up waiting and drops the socket.
    assert await asyncio.wait_for(client.reader.read(), TIMEOUT) == b""
    client.close()


async def test_stopping_the_server_closes_open_connections_with_1001(server_factory):
    async with server_factory() as srv:
        wire = await Wire.open(srv.key_url())
        await srv.server.listener.close()
        assert (await wire.closed())[0] == 1001


async def test_frames_that_arrive_while_the_cluster_admits_the_connection_wait_for_it(
    server_factory,
):
    # In a cluster the per-app limit is checked over Redis before the welcome: what the
    # client sent meanwhile is held (more than EARLY_MESSAGES pauses reading) and answered.
    async with server_factory(max_connections_per_app=100) as srv:
        early = [text({"type": "ping", "requestId": f"early-{i}"}) for i in range(40)]
        client = await RawClient.open(srv.key_url(), b"".join(early))
        assert (await client.recv())["type"] == "welcome"
        for i in range(40):
            assert await client.recv() == {"type": "pong", "requestId": f"early-{i}"}
        client.send(text({"type": "ping", "requestId": "later"}))  # reading resumed
        assert await client.recv() == {"type": "pong", "requestId": "later"}
        client.close()
