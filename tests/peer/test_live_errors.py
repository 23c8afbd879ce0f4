"""Fatal and negotiation error paths end to end: real server, real aiortc on loopback.

The timings that would make these tests minutes long (the 10 s reconcile deadline, the ICE
recovery ladder's delays and 15 s probes, the remote hang-up grace) are shortened through
MeteredPeer's private seams; the code paths are the production ones.
"""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc")

import json
from typing import Any

from aiortc import AudioStreamTrack
from tests.peer.helpers import Expect, remote_of, wait_state
from tests.support.faultproxy import FaultProxy
from tests.support.waiting import until

from metered_realtime.errors import IceRestartExhaustedError, ReconcileTimeoutError
from metered_realtime.events import Connected, Direct, FatalError, NegotiationError, Presence
from metered_realtime.peer import MeteredPeer

pytestmark = pytest.mark.timeout(30)


def no_presence(opcode: int, payload: bytes) -> bool:
    """Keep every server frame except ``presence`` text frames."""
    if opcode != 1:
        return True
    try:
        frame = json.loads(payload)
    except ValueError:
        return True
    return not (isinstance(frame, dict) and frame.get("type") == "presence")


async def test_fault_proxy_drops_only_the_filtered_frames(make_peer: Any, server: Any) -> None:
    async with FaultProxy("127.0.0.1", server.server.port) as proxy:
        proxy.filter_server_frames(no_presence)
        watcher, other = make_peer(url=proxy.url), make_peer()
        presences: list[Presence] = []
        watcher._client.on(Presence, presences.append)
        await watcher.join("filtered")
        await other.join("filtered")
        direct = Expect(watcher._client, Direct)
        # Direct messages still pass, presence does not: the watcher never learns of `other`.
        await other._client.send(watcher.peer_id, {"hello": 1})
        assert (await direct.get(5)).data == {"hello": 1}
        await watcher.send("still connected")  # acked through the filter
        assert presences == [] and watcher.remote_peers == []
        assert proxy.dropped_frames >= 1


async def test_reconcile_timeout_is_fatal_after_two_resubscribes(
    make_peer: Any, server: Any
) -> None:
    async with FaultProxy("127.0.0.1", server.server.port) as proxy:
        a: MeteredPeer = make_peer(url=proxy.url, _reconcile_deadline=0.4)
        b: MeteredPeer = make_peer()
        await a.join("reconcile-timeout")
        await b.join("reconcile-timeout")
        await until(lambda: bool(a.remote_peers and b.remote_peers), 10)
        survivor = a.remote_peers[0]

        # From now on the server's presence frames never reach `a`: no snapshot can come.
        proxy.filter_server_frames(no_presence)
        reconnected = Expect(a._client, Connected, lambda e: e.is_reconnect)
        fatal = Expect(a, FatalError)
        before = proxy.dropped_frames
        assert proxy.cut() == 1
        await reconnected.get(10)
        assert a.state == "reconnecting"
        ev = await fatal.get(10)
        assert isinstance(ev.err, ReconcileTimeoutError)
        # The replayed subscribe and both forced re-subscribes each had their snapshot dropped.
        assert proxy.dropped_frames - before >= 3
        assert a.remote_peers == [survivor]


async def test_ice_recovery_exhaustion_surfaces_negotiation_error(
    make_peer: Any, server: Any
) -> None:
    async with FaultProxy("127.0.0.1", server.server.port) as proxy:
        a: MeteredPeer = make_peer(
            _ladder_delays=(0.0, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05),
            _probe_timeout=0.3,
            _hangup_grace=0.2,
        )
        b: MeteredPeer = make_peer(url=proxy.url)
        await a.join("exhaust")
        await b.join("exhaust")
        await until(lambda: bool(a.remote_peers and b.remote_peers), 10)
        ra, rb = remote_of(a, b), remote_of(b, a)
        a.add_track(AudioStreamTrack())
        await wait_state(ra, "connected")
        await wait_state(rb, "connected")

        # `b` stays in the room but its signalling is frozen, so none of a's re-offers is
        # ever answered; then b's transport dies under it.
        errors = Expect(ra, NegotiationError)
        proxy.stall()
        first_pc = ra.pc
        await rb.pc.close()
        ev = await errors.get(20)
        assert isinstance(ev.err, IceRestartExhaustedError)
        assert ev.err.attempts == 9
        assert ra.state == "reconnecting" and ra.pc is not first_pc
        assert ra._neg.generation == 9 and ra._neg.recovery.exhausted
        proxy.resume()
