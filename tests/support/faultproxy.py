"""A fault-injecting TCP proxy for reconnect tests.

Listens on 127.0.0.1 (ephemeral port) and forwards every accepted connection to a
target. Faults: ``cut()`` aborts every live connection (both sides, no close frame),
``stall()`` stops forwarding in both directions until ``resume()`` (bytes are held,
not lost), ``refuse()`` makes new connections fail at once (accepted then reset),
``delay(seconds)`` holds every chunk that long before forwarding (order preserved).

``filter_server_frames(keep)`` drops WebSocket frames from the server for which
``keep(opcode, payload)`` is false, on connections accepted from then on (the HTTP upgrade
response passes untouched; the server sends unfragmented, uncompressed frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

__all__ = ["FaultProxy", "fault_proxy"]

_CHUNK = 65536
_QUEUE_CHUNKS = 256  # per direction; a full queue stops reading (backpressure)
_MAX_HEADER = 65536  # an HTTP upgrade response longer than this is passed through unparsed

FrameFilter = Callable[[int, bytes], bool]


class _FrameSplitter:
    """Cuts a server-to-client WebSocket byte stream into frames and drops unwanted ones."""

    def __init__(self, keep: FrameFilter, proxy: FaultProxy) -> None:
        self.keep = keep
        self.proxy = proxy
        self.buffer = b""
        self.in_header = True

    def feed(self, data: bytes) -> bytes:
        """Bytes to forward now; an incomplete frame stays buffered."""
        self.buffer += data
        out = bytearray()
        if self.in_header:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) <= _MAX_HEADER:
                    return b""
                end = len(self.buffer) - 4  # not HTTP: give up parsing, forward as is
                self.keep = lambda opcode, payload: True
            out += self.buffer[: end + 4]
            self.buffer = self.buffer[end + 4 :]
            self.in_header = False
        while True:
            frame = self._next_frame()
            if frame is None:
                break
            raw, opcode, payload = frame
            if self.keep(opcode, payload):
                out += raw
            else:
                self.proxy.dropped_frames += 1
        return bytes(out)

    def _next_frame(self) -> tuple[bytes, int, bytes] | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        opcode = buf[0] & 0x0F
        masked = bool(buf[1] & 0x80)
        length = buf[1] & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, pos = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, pos = int.from_bytes(buf[2:10], "big"), 10
        mask = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            mask, pos = buf[pos : pos + 4], pos + 4
        end = pos + length
        if len(buf) < end:
            return None
        payload = buf[pos:end]
        if masked:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.buffer = buf[end:]
        return buf[:end], opcode, payload


class _Link:
    """One proxied connection: two pumps, each a reader task and a writer task."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        keep = proxy._server_frame_filter
        self.splitter = _FrameSplitter(keep, proxy) if keep is not None else None
        self.transports: list[asyncio.BaseTransport] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = asyncio.Event()

    def start(
        self,
        c_reader: asyncio.StreamReader,
        c_writer: asyncio.StreamWriter,
        s_reader: asyncio.StreamReader,
        s_writer: asyncio.StreamWriter,
    ) -> None:
        self.transports = [c_writer.transport, s_writer.transport]
        loop = asyncio.get_running_loop()
        for reader, writer, splitter in (
            (c_reader, s_writer, None),
            (s_reader, c_writer, self.splitter),
        ):
            queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(_QUEUE_CHUNKS)
            self.tasks.append(loop.create_task(self._read(reader, queue, splitter)))
            self.tasks.append(loop.create_task(self._write(writer, queue)))

    async def _read(
        self,
        reader: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        splitter: _FrameSplitter | None = None,
    ) -> None:
        try:
            while not reader.at_eof():
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if splitter is not None:
                    data = splitter.feed(data)
                    if not data:
                        continue
                await queue.put((time.monotonic() + self.proxy.delay_seconds, data))
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def _write(
        self, writer: asyncio.StreamWriter, queue: asyncio.Queue[tuple[float, bytes] | None]
    ) -> None:
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.proxy._flowing.wait()
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        for transport in self.transports:
            transport.abort()  # type: ignore[attr-defined]
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.closed.set()
        self.proxy._links.discard(self)


class FaultProxy:
    """TCP proxy with cut / stall / refuse / delay faults. Use as an async context manager."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = 0
        self.delay_seconds = 0.0
        self.accepted = 0  # connections accepted so far (refused ones included)
        self.refused = 0
        self._refusing = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._accepted_event = asyncio.Event()
        self._server_frame_filter: FrameFilter | None = None
        self.dropped_frames = 0  # server frames dropped by the frame filter so far

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>``: pass as the SDK's ``url=``."""
        return f"ws://{self.host}:{self.port}"

    @property
    def live_connections(self) -> int:
        return len(self._links)

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- faults -------------------------------------------------------------

    def cut(self) -> int:
        """Abort every live connection on both sides; returns how many were cut."""
        links = list(self._links)
        for link in links:
            link.abort()
        return len(links)

    def stall(self) -> None:
        """Stop forwarding in both directions (bytes are held until ``resume``)."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def refuse(self, on: bool = True) -> None:
        """While on, every new connection is reset right after accept."""
        self._refusing = on

    def delay(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` before forwarding it (0 turns it off)."""
        self.delay_seconds = max(0.0, seconds)

    def filter_server_frames(self, keep: FrameFilter | None) -> None:
        """Forward only server frames with ``keep(opcode, payload)`` true (None: all).

        Applies to connections accepted after the call.
        """
        self._server_frame_filter = keep

    async def wait_accepted(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` connections were accepted in total."""
        async with asyncio.timeout(timeout) if hasattr(asyncio, "timeout") else _null():
            while self.accepted < count:
                self._accepted_event.clear()
                await asyncio.wait_for(self._accepted_event.wait(), timeout)

    # --- internals ----------------------------------------------------------

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._accepted_event.set()
        if self._refusing:
            self.refused += 1
            c_writer.transport.abort()
            return
        try:
            s_reader, s_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            c_writer.transport.abort()
            return
        link = _Link(self)
        self._links.add(link)
        link.start(c_reader, c_writer, s_reader, s_writer)


@contextlib.asynccontextmanager
async def _null() -> AsyncIterator[None]:
    yield


@contextlib.asynccontextmanager
async def fault_proxy(target_host: str, target_port: int) -> AsyncIterator[FaultProxy]:
    """``async with fault_proxy(host, port) as proxy:``."""
    proxy = FaultProxy(target_host, target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
