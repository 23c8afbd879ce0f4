"""TURN over TCP and over TLS, as corporate networks leave open: a relay-only call through a
coturn that has no UDP listener (and, for TLS, no plain TCP one either)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.support.coturn import Coturn, running_coturn
from tests.support.webrtc import peer_factory

pytest.importorskip("aiortc")

pytestmark = pytest.mark.relay_policy


async def relayed_call(server_factory: Any, coturn: Coturn, url: str) -> None:
    from aiortc import AudioStreamTrack
    from tests.peer.helpers import Expect, join_all, remote_of, wait_state
    from tests.support.icepairs import selected_pairs
    from tests.support.waiting import until

    from metered_realtime.events import Track

    async with (
        server_factory(ice_urls=(url,), turn_secret=coturn.secret) as srv,
        peer_factory(srv) as make,
    ):
        a, b = make(ice_transport_policy="relay"), make(ice_transport_policy="relay")
        await join_all([a, b], "turn-transport")
        await until(lambda: bool(a.remote_peers and b.remote_peers), 10)
        ra, rb = remote_of(a, b), remote_of(b, a)
        track_at_b = Expect(rb, Track)
        a.add_track(AudioStreamTrack())
        await wait_state(ra, "connected", 30)
        await wait_state(rb, "connected", 30)
        inbound = (await track_at_b.get(20)).track
        frame = await asyncio.wait_for(inbound.recv(), 20)
        assert frame.samples > 0
        for remote in (ra, rb):
            assert {(p.local_type, p.remote_type) for p in selected_pairs(remote.pc)} == {
                ("relay", "relay")
            }


async def test_turn_over_tcp(tmp_path: Path, server_factory: Any) -> None:
    async with running_coturn(tmp_path, listeners=("tcp",)) as coturn:
        await relayed_call(server_factory, coturn, coturn.tcp_url)


async def test_turn_over_tls(
    tmp_path: Path, server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_coturn(tmp_path, listeners=("tls",)) as coturn:
        # aioice verifies the server with the default trust store: trust the test's certificate.
        monkeypatch.setenv("SSL_CERT_FILE", str(coturn.ca_file))
        await relayed_call(server_factory, coturn, coturn.tls_url)
