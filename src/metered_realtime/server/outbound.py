"""The hub's output to the sockets: frames corked per connection for one event-loop turn.

Writing each frame with its own ``transport.write`` is a system call per frame. Instead
the frames a connection is given while the loop handles one poll's events are queued and
leave together, in one write: under load a socket takes many frames per call. A big frame
(``SPLIT_AT``: presence snapshots and deltas) is written at once, with what was queued
before it: held to the end of a long turn, a channel's formation kept its clients idle.

The flush is a ``call_soon`` callback: the loop runs those after the read callbacks of the
same poll (uvloop in the same turn, asyncio after one more poll that does not wait), so
what every socket read in one poll caused leaves together, and a lone round trip waits for
nothing but that callback. (Flushing after each read instead was measured: it wrote one
system call per frame again for directed traffic, where a turn's reads answer several
sockets, for no gain in round-trip latency under uvloop.)

What stays exact: frames leave in the order the hub wrote them; a close first writes what
was queued for that connection, so the close frame follows every frame before it; the
slow-consumer bound is checked after each write, as before, and once the protocol is
closing nothing more is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from .endpoint import Endpoint
from .hub import Conn
from .wsframes import SPLIT_AT, text_frame


class CorkedSink:
    """The hub's ``Sink`` over the connections' endpoints (``Conn.handle``), corked per turn.

    Server frames are unmasked, so a fan-out frame is the same bytes for every recipient:
    it is framed once and queued for each. The endpoint writes its own protocol output
    (pongs, pings, the close frame) at once and whole, so it never splits one of ours.
    """

    def __init__(self, buffer_limit: int, evict: Callable[[Conn], None]) -> None:
        self._limit = buffer_limit
        self._evict = evict
        self._queued: dict[Conn, list[bytes]] = {}
        self._scheduled = False

    def send(self, conn: Conn, payload: bytes) -> None:
        if len(payload) >= SPLIT_AT:
            self.fanout((conn,), payload)
            return
        # fanout's small-frame path for one connection, without its loop: this is every
        # ack and direct message.
        if not self._scheduled:
            self._schedule()
        frame = text_frame(payload)[0]
        frames = self._queued.get(conn)
        if frames is None:
            self._queued[conn] = [frame]
        else:
            frames.append(frame)

    def fanout(self, conns: Iterable[Conn], payload: bytes) -> None:
        frame = text_frame(payload)
        if len(frame) > 1:
            # A big frame (a presence snapshot or delta) goes out at once, behind what was
            # queued for the connection: one write is cheap beside its size, and held to the
            # end of a long turn it would keep the client idle meanwhile.
            queued, write = self._queued, self._write
            for conn in conns:
                write(conn, [*queued.pop(conn, ()), *frame])
            return
        if not self._scheduled:
            self._schedule()
        queued = self._queued
        for conn in conns:
            frames = queued.get(conn)
            if frames is None:
                queued[conn] = list(frame)
            else:
                frames.extend(frame)

    def close(self, conn: Conn, code: int, reason: str) -> None:
        frames = self._queued.pop(conn, None)
        if frames is not None:
            self._write(conn, frames)
        endpoint: Endpoint = conn.handle
        endpoint.close(code, reason)

    def _schedule(self) -> None:
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._turn_over)

    def _turn_over(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Write every connection's queued frames, one write each."""
        if not self._queued:
            return
        queued, self._queued = self._queued, {}
        write = self._write
        for conn, frames in queued.items():
            write(conn, frames)

    def _write(self, conn: Conn, frames: list[bytes]) -> None:
        endpoint: Endpoint = conn.handle
        transport = endpoint.transport
        if not endpoint.is_open or transport is None or transport.is_closing():
            return
        if len(frames) == 1:
            transport.write(frames[0])
        else:
            transport.writelines(frames)  # one gathered write, nothing joined first
        if transport.get_write_buffer_size() > self._limit:
            self._evict(conn)
