"""What every WebRTC test directory shares: ICE kept on 127.0.0.1, and peers closed at the end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest


def keep_ice_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice gathers host candidates on every interface *except* 127.0.0.1; point its
    host-address discovery at 127.0.0.1 only. (No STUN/TURN is configured: the SDK always
    passes an explicit ICE server list, so aiortc never falls back to a public STUN server.)
    """
    import aioice.ice

    from metered_realtime.demo.loopback import loopback_host_addresses

    monkeypatch.setattr(aioice.ice, "get_host_addresses", loopback_host_addresses)


@contextlib.asynccontextmanager
async def peer_factory(server: Any) -> AsyncIterator[Callable[..., Any]]:
    """``make(url=None, **options)`` builds MeteredPeers on the test server; all are closed
    (bounded) on exit."""
    from metered_realtime.errors import MeteredRealtimeError
    from metered_realtime.peer import MeteredPeer

    peers: list[MeteredPeer] = []

    def make(url: str | None = None, **kw: Any) -> MeteredPeer:
        peer = MeteredPeer(api_key=server.api_key, url=url or server.url, **kw)
        peers.append(peer)
        return peer

    try:
        yield make
    finally:
        for peer in peers:
            with contextlib.suppress(asyncio.TimeoutError, MeteredRealtimeError, OSError):
                await asyncio.wait_for(peer.close(), 10)
