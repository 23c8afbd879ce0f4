"""Fixtures for WebRTC tests: real server, real aiortc, traffic kept on 127.0.0.1.

The pure tests here (test_negotiation*, test_sdp) need no aiortc, so this file does not
skip the directory; each module that needs aiortc skips itself (``importorskip``), which
the CI guard (tests/support/ci_skips.py) turns into a failure.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from tests.support.webrtc import keep_ice_on_loopback, peer_factory

from metered_realtime.peer import MeteredPeer


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep ICE on 127.0.0.1 (see tests/support/webrtc.py), where aioice is installed."""
    if importlib.util.find_spec("aioice") is not None:
        keep_ice_on_loopback(monkeypatch)


@pytest.fixture
async def make_peer(server: Any) -> AsyncIterator[Callable[..., MeteredPeer]]:
    """Build MeteredPeers on the test server; all are closed at teardown."""
    async with peer_factory(server) as make:
        yield make
