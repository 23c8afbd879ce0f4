"""A WebSocket client on a bare stream, for tests of the server's read and write path."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any
from urllib.parse import urlsplit

from metered_realtime.server.hub import Conn

TIMEOUT = 5.0


def client_frame(data: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    """One masked client frame."""
    size = len(data)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(data))


def text(frame: dict[str, Any]) -> bytes:
    return client_frame(json.dumps(frame).encode())


class RawClient:
    """A WebSocket client on a bare stream: what it sends goes out exactly as given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str, pipelined: bytes = b"") -> RawClient:
        """Connect and upgrade; ``pipelined`` frames go out in the same write as the request."""
        parts = urlsplit(url)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port), TIMEOUT
        )
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        writer.write(request.encode() + pipelined)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def frame(self) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload)."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), TIMEOUT)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await asyncio.wait_for(self.reader.readexactly(size), TIMEOUT)

    async def recv(self) -> dict[str, Any]:
        opcode, payload = await self.frame()
        assert opcode == 0x1, (opcode, payload)
        frame = json.loads(payload)
        assert isinstance(frame, dict)
        return frame

    async def close_code(self) -> int:
        """Skip text frames up to the server's close frame; its code."""
        for _ in range(10_000):
            opcode, payload = await self.frame()
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big")
        raise AssertionError("no close frame")

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


def server_conn(server: Any, peer_id: str) -> Conn:
    for node in server.nodes:
        for conn in node.hub.conns.values():
            if conn.peer_id == peer_id:
                return conn
    raise AssertionError(f"no connection {peer_id}")
