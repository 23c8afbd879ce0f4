"""A peer that leaves closes its connections cleanly: the others must not try to recover them.

Real server, real aiortc on loopback.
"""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc")

from typing import Any

from aiortc import AudioStreamTrack
from tests.peer.helpers import Expect, remote_of, wait_state
from tests.support.waiting import until

from metered_realtime.events import PeerJoined, PeerLeft, ServerError, StateChange

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("sender", ["stayer", "leaver"])
async def test_leaving_peer_does_not_start_recovery(make_peer: Any, sender: str) -> None:
    stayer, leaver = make_peer(), make_peer()
    await stayer.join("leaving")
    await leaver.join("leaving")
    await until(lambda: bool(stayer.remote_peers and leaver.remote_peers), 10)
    remote = remote_of(stayer, leaver)
    (stayer if sender == "stayer" else leaver).add_track(AudioStreamTrack())
    await wait_state(remote, "connected")
    await wait_state(remote_of(leaver, stayer), "connected")
    pc, generation = remote.pc, remote._neg.generation
    errors: list[ServerError] = []
    stayer._client.on(ServerError, errors.append)
    states: list[str] = []
    remote.on(StateChange, lambda e: states.append(e.to))

    left = Expect(stayer, PeerLeft)
    await leaver.close()
    assert (await left.get(10)).peer is remote
    # No rebuild (so no offer to a peer that is gone), straight from connected to closed.
    assert remote._neg.generation == generation and remote.pc is pc
    assert states == ["closed"]
    # Any error for a send before PeerLeft comes back before the ack of a later request.
    await stayer.send({"after": "leave"})
    assert [e.code for e in errors] == []


async def test_a_departure_is_announced_before_a_later_arrival(make_peer: Any) -> None:
    """A page reloading leaves and joins again, often in one presence delta: PeerLeft first."""
    watcher, leaver, arrival = make_peer(), make_peer(), make_peer()
    await watcher.join("reload")
    await leaver.join("reload")
    await until(lambda: bool(watcher.remote_peers), 10)
    leaver.add_track(AudioStreamTrack())  # a live connection, which takes a while to close
    await wait_state(remote_of(watcher, leaver), "connected")
    order: list[tuple[str, str]] = []
    watcher.on(PeerLeft, lambda e: order.append(("left", e.peer.id)))
    watcher.on(PeerJoined, lambda e: order.append(("joined", e.peer.id)))
    states: list[str] = []
    remote_of(watcher, leaver).on(StateChange, lambda e: states.append(e.to))
    gone = leaver.peer_id
    await leaver.close()
    await arrival.join("reload")  # within the server's presence window of the leave
    await until(lambda: len(order) == 2, 10)
    assert order == [("left", gone), ("joined", arrival.peer_id)]
    assert states == ["closed"]  # closed before PeerLeft, once
