"""Hostile bytes at the connection layer (server/endpoint.py), over real sockets.

Mutated upgrade requests and random bytes after a good upgrade: the server answers each
with a 101, a 4xx or a close, never a 5xx, never an error in its log, never a hang, and it
serves a normal client afterwards. The seed is printed, so a failure can be replayed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random

import pytest
from tests.server.raw import TIMEOUT, RawClient
from tests.server.wire import Wire

pytestmark = pytest.mark.timeout(120)
CASES = 200


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A few random flips, insertions, deletions, duplications or a cut."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            break
        at = rng.randrange(len(out))
        kind = rng.randrange(5)
        if kind == 0:
            out[at] = rng.randrange(256)
        elif kind == 1:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == 2:
            del out[at : at + rng.randint(1, 8)]
        elif kind == 3:
            out[at:at] = out[at : at + rng.randint(1, 40)]
        else:
            del out[at:]
    return bytes(out)


async def answer(port: int, data: bytes, then_close: bool) -> bytes:
    """What the server sends back to ``data`` until it closes (or we stop waiting)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if then_close:
        writer.write_eof()
    chunks: list[bytes] = []
    try:
        while sum(map(len, chunks)) < 65536:
            chunk = await asyncio.wait_for(reader.read(4096), 1.0)
            if not chunk:
                break
            chunks.append(chunk)
    except (asyncio.TimeoutError, ConnectionError):
        pass  # an upgrade that went through stays open, waiting for frames
    writer.close()
    return b"".join(chunks)


async def test_mutated_upgrade_requests_are_answered_or_closed(server, caplog):
    caplog.set_level(logging.WARNING)
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"seed={seed}")
    rng = random.Random(seed)
    port = server.server.port
    key = base64.b64encode(os.urandom(16)).decode()
    good = (
        f"GET /v1?key={server.api_key} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    for start in range(0, CASES, 20):
        cases = [
            (mutate(rng, good), rng.random() < 0.5) for _ in range(start, min(CASES, start + 20))
        ]
        answers = await asyncio.gather(*(answer(port, d, c) for d, c in cases))
        for (data, _), got in zip(cases, answers, strict=True):
            status = got[:12]
            assert got == b"" or status.startswith((b"HTTP/1.1 101", b"HTTP/1.1 4")), (data, got)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    wire = await Wire.open(server.key_url())
    assert await wire.request({"type": "ping", "requestId": "after"}) == {
        "type": "pong",
        "requestId": "after",
    }
    await wire.close()


def sendable(code: int) -> bool:
    """A close code that may appear on the wire (RFC 6455 section 7.4)."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or 3000 <= code < 5000


async def test_random_bytes_after_the_upgrade_end_in_a_clean_close(server, caplog):
    caplog.set_level(logging.WARNING)
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"seed={seed}")
    rng = random.Random(seed)
    for _ in range(CASES // 4):
        client = await RawClient.open(server.key_url())
        assert (await client.recv())["type"] == "welcome"
        client.send(bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))))
        client.writer.write_eof()
        codes: list[int] = []
        try:
            for _ in range(50):
                opcode, payload = await client.frame()
                if opcode == 0x8:
                    codes.append(int.from_bytes(payload[:2], "big") if payload else 1005)
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
            pass  # closed without a close frame (the client's half-close came first)
        # The server's own codes for broken input (1002, 1007, 1009, the rate's 4011), or the
        # echo of a close frame the random bytes happened to spell (1005: it had no code).
        assert all(code == 1005 or sendable(code) for code in codes), codes
        assert await asyncio.wait_for(client.reader.read(), TIMEOUT) == b""
        client.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
