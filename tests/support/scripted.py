"""A scripted WebSocket peer for wire-level conformance tests of the SDK parser.

The real server never sends malformed frames, binary frames or a second welcome;
this peer does, so the SDK's tolerance of them can be tested. Everything else is
tested against the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

__all__ = ["WELCOME", "scripted_server"]

WELCOME: dict[str, Any] = {
    "type": "welcome",
    "peerId": "scripted-peer",
    "expiresAt": None,
    "serverTime": 1_700_000_000_000,
    "maxMessageSize": 65536,
}

Script = Callable[[ServerConnection], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted_server(script: Script) -> AsyncIterator[str]:
    """Serve ``script`` for each connection on 127.0.0.1; yields the ``ws://`` origin."""

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            await script(ws)

    async with serve(handler, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def send_json(ws: ServerConnection, obj: Any) -> None:
    await ws.send(json.dumps(obj, separators=(",", ":")))


async def answer_requests(ws: ServerConnection, limit: int = 1000) -> None:
    """Ack every request and pong every ping, for at most ``limit`` frames."""
    for _ in range(limit):
        raw = await ws.recv()
        frame = json.loads(raw)
        if frame.get("type") == "ping":
            await send_json(ws, {"type": "pong"})
        elif "requestId" in frame:
            await send_json(ws, {"type": "ack", "requestId": frame["requestId"]})


async def hold(ws: ServerConnection, seconds: float = 30.0) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(ws.wait_closed(), seconds)
