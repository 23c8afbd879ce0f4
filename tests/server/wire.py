"""A raw WebSocket client for checking the server's frames exactly."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TIMEOUT = 5.0


class Wire:
    """One raw connection: JSON in, JSON out, and the close code at the end."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}

    @classmethod
    async def open(cls, url: str, *, welcome: bool = True, **kwargs: Any) -> Wire:
        options: dict[str, Any] = {"ping_interval": None, "max_size": 2**22, "compression": None}
        options.update(kwargs)
        ws = await connect(url, **options)
        wire = cls(ws)
        if welcome:
            wire.welcome = await wire.recv()
            assert wire.welcome["type"] == "welcome", wire.welcome
        return wire

    @property
    def peer_id(self) -> str:
        return str(self.welcome["peerId"])

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, str), "the server must only send text frames"
        frame = json.loads(raw)
        assert isinstance(frame, dict)
        return frame

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a frame and return the next frame received."""
        await self.send(frame)
        return await self.recv()

    async def subscribe(self, channel: str, rid: str = "s", **extra: Any) -> list[Any]:
        """Subscribe; assert ack then snapshot; return the snapshot's joined peer ids."""
        await self.send({"type": "subscribe", "channel": channel, "requestId": rid, **extra})
        assert await self.recv() == {"type": "ack", "requestId": rid}
        snap = await self.recv()
        assert snap["type"] == "presence" and snap["channel"] == channel and snap["left"] == []
        return [e["peerId"] for e in snap["joined"]]

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str]:
        """Wait for the close (skipping frames) and return the server's code and reason."""

        async def drain() -> None:
            try:
                while True:
                    await self.ws.recv()
            except ConnectionClosed:
                return

        await asyncio.wait_for(drain(), timeout)
        rcvd = self.ws.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")

    async def refused(self, timeout: float = TIMEOUT) -> tuple[int | None, str]:
        """Wait for a close that came before any frame (a refusal); return code and reason.

        Unlike ``closed``, nothing may arrive first: a welcome followed by a close fails.
        """

        async def first() -> Any:
            try:
                return await self.ws.recv()
            except ConnectionClosed:
                return None

        frame = await asyncio.wait_for(first(), timeout)
        assert frame is None, f"expected a close before any frame, got {frame!r}"
        rcvd = self.ws.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")

    async def quiet(self, seconds: float = 0.15) -> None:
        """Assert nothing arrives for a while (used only to check that a frame is NOT sent)."""
        try:
            frame = await asyncio.wait_for(self.ws.recv(), seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame!r}")

    async def close(self) -> None:
        await self.ws.close()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def raw_token(kid: str, secret: str, claims: str, header: str | None = None) -> str:
    """An HS256 JWT over exactly the claims text given (``NaN``, ``1e400``, ... included)."""
    if header is None:
        header = json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid})
    signing_input = _b64(header.encode()) + "." + _b64(claims.encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)
