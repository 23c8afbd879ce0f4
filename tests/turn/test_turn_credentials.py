"""TURN credentials: an expired one is reported as a TurnError naming TURN (not a silent ICE
failure), never logged; a reconnect takes the credentials of the latest welcome."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest
from tests.support.faultproxy import FaultProxy

pytest.importorskip("aiortc")

from aiortc import AudioStreamTrack
from tests.peer.helpers import Expect, join_all, remote_of, wait_state
from tests.support.icepairs import selected_pairs
from tests.support.waiting import until
from tests.support.webrtc import peer_factory

from metered_realtime import Connected, StdlibLogger, TurnAllocationError, TurnError
from metered_realtime.peer.turn_errors import turn_target


def credentials(pc: Any) -> tuple[str, str]:
    """The TURN username and password the connection ``pc`` was built with."""
    target = turn_target(pc._metered_config.iceServers)
    assert target is not None
    return target.username, target.password


@pytest.mark.relay_policy
async def test_expired_credential_is_a_turn_error_and_never_logged(
    turn_server: Any, coturn: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: the SDK's, aiortc's and aioice's
    async with turn_server(turn_ttl=-60) as srv, peer_factory(srv) as make:
        a = make(ice_transport_policy="relay", logger=StdlibLogger())
        b = make(ice_transport_policy="relay", logger=StdlibLogger())
        await join_all([a, b], "expired-turn")
        await until(lambda: bool(a.remote_peers and b.remote_peers), 10)
        ra = remote_of(a, b)
        refused = Expect(ra, TurnError)
        a.add_track(AudioStreamTrack())
        err = (await refused.get(20)).err
        assert isinstance(err, TurnAllocationError)
        assert (err.url, err.code, err.expired) == (coturn.url, 401, True)
        assert "TURN server" in str(err) and "expired" in str(err)
        assert ra.state != "connected"
        username, password = credentials(ra.pc)
        text = "\n".join(caplog.messages)
        text += f"{err!s} {err!r} {err.args!r} {err.__reduce__()!r} {turn_target(ra.pc._metered_config.iceServers)!r}"
        assert username.split(":")[1] == a.peer_id  # the credential checked is a's own
        for secret in (password, coturn.secret):
            assert secret not in text


@pytest.mark.relay_policy
async def test_reconnect_takes_the_latest_welcome_credentials(turn_server: Any) -> None:
    async with (
        turn_server(turn_ttl=-60) as srv,
        FaultProxy("127.0.0.1", srv.server.port) as proxy,
        peer_factory(srv) as make,
    ):
        a = make(url=proxy.url, ice_transport_policy="relay")
        b = make(url=proxy.url, ice_transport_policy="relay")
        await join_all([a, b], "rotating-turn")
        await until(lambda: bool(a.remote_peers and b.remote_peers), 10)
        ra, rb = remote_of(a, b), remote_of(b, a)
        refused = Expect(ra, TurnError)
        a.add_track(AudioStreamTrack())
        assert (await refused.get(20)).err.expired
        stale, _ = credentials(ra.pc)

        # The server now mints live credentials; both peers reconnect and get a new welcome.
        srv.server.config = dataclasses.replace(srv.server.config, turn_ttl=600)
        welcomes = [Expect(p._client, Connected, lambda e: e.is_reconnect) for p in (a, b)]
        assert proxy.cut() == 2
        latest = [await w.get(15) for w in welcomes]
        # A new connection: each peer has a new id, so each sees a new remote peer.
        await until(lambda: [r.id for r in a.remote_peers] == [b.peer_id], 15)
        await until(lambda: [r.id for r in b.remote_peers] == [a.peer_id], 15)
        ra, rb = remote_of(a, b), remote_of(b, a)
        await wait_state(ra, "connected", 40)
        await wait_state(rb, "connected", 40)
        for remote, welcome in zip((ra, rb), latest, strict=True):
            turn = next(s for s in welcome.ice_servers if s.username is not None)
            assert credentials(remote.pc) == (turn.username, turn.credential)
            assert {(p.local_type, p.remote_type) for p in selected_pairs(remote.pc)} == {
                ("relay", "relay")
            }
        assert credentials(ra.pc)[0] != stale
