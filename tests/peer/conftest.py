"""Fixtures for WebRTC tests: real server, real aiortc, traffic kept on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

pytest.importorskip("aiortc")

from metered_realtime.peer import MeteredPeer


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice gathers host candidates on every interface *except* 127.0.0.1.

    Tests must keep traffic on loopback, so the host-address discovery is pointed at
    127.0.0.1 only (no STUN/TURN is configured: the SDK always passes an explicit ICE
    server list, so aiortc never falls back to its public default STUN server).
    """
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
async def make_peer(server: Any) -> AsyncIterator[Callable[..., MeteredPeer]]:
    """Build MeteredPeers on the test server; all are closed at teardown."""
    peers: list[MeteredPeer] = []

    def make(url: str | None = None, **kw: Any) -> MeteredPeer:
        peer = MeteredPeer(api_key=server.api_key, url=url or server.url, **kw)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(peer.close(), 10)
