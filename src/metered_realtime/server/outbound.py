"""The hub's output to the sockets: frames corked per connection for one event-loop turn.

Writing each frame with its own ``transport.write`` is a system call per frame. Instead
the frames a connection is given during one turn of the loop are queued and leave
together, in one write, at the start of the next turn: under load a socket takes many
frames per call, while a lone frame waits only for the loop to come round once.

What stays exact: frames leave in the order the hub wrote them; a close first writes what
was queued for that connection, so the close frame follows every frame before it; the
slow-consumer bound is checked after each write, as before, and once the protocol is
closing nothing more is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from .hub import Conn


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented WebSocket text frame (what a server sends)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


class CorkedSink:
    """The hub's ``Sink`` over websockets connections (``Conn.handle``), corked per turn.

    Server frames are unmasked, so a fan-out frame is the same bytes for every recipient:
    it is framed once and queued for each. websockets writes its own protocol output
    (pongs, pings, the close frame) synchronously and whole, so it never splits one of ours.
    """

    def __init__(
        self,
        buffer_limit: int,
        evict: Callable[[Conn], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._limit = buffer_limit
        self._evict = evict
        self._spawn = spawn
        self._queued: dict[Conn, list[bytes]] = {}

    def send(self, conn: Conn, payload: bytes) -> None:
        self._queue(conn, text_frame(payload))

    def fanout(self, conns: Iterable[Conn], payload: bytes) -> None:
        frame = text_frame(payload)
        queued = self._queued
        if not queued:
            asyncio.get_running_loop().call_soon(self.flush)
        for conn in conns:
            frames = queued.get(conn)
            if frames is None:
                queued[conn] = [frame]
            else:
                frames.append(frame)

    def close(self, conn: Conn, code: int, reason: str) -> None:
        frames = self._queued.pop(conn, None)
        if frames is not None:
            self._write(conn, frames)
        ws: ServerConnection = conn.handle
        self._spawn(ws.close(code, reason))

    def _queue(self, conn: Conn, frame: bytes) -> None:
        queued = self._queued
        if not queued:
            asyncio.get_running_loop().call_soon(self.flush)
        frames = queued.get(conn)
        if frames is None:
            queued[conn] = [frame]
        else:
            frames.append(frame)

    def flush(self) -> None:
        """Write every connection's queued frames, one write each."""
        queued, self._queued = self._queued, {}
        write = self._write
        for conn, frames in queued.items():
            write(conn, frames)

    def _write(self, conn: Conn, frames: list[bytes]) -> None:
        ws: ServerConnection = conn.handle
        if ws.protocol.state is not State.OPEN:
            return
        transport = ws.transport
        if transport.is_closing():
            return
        transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
        if transport.get_write_buffer_size() > self._limit:
            self._evict(conn)
