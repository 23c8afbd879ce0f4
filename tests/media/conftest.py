"""Fixtures for the media helper tests: real aiortc and PyAV, traffic kept on 127.0.0.1."""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc")

from tests.support.webrtc import keep_ice_on_loopback


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep ICE on loopback, the same way the peer tests do (tests/peer/conftest.py).

    aioice gathers a host candidate on every interface *except* 127.0.0.1, so here the
    host-address discovery returns 127.0.0.1 only. No STUN/TURN server is configured
    (``tracks.new_pc`` passes ``iceServers=[]``, so aiortc never falls back to its public
    default STUN server); ``tracks.negotiate`` asserts every SDP candidate is 127.0.0.1.
    """
    keep_ice_on_loopback(monkeypatch)
