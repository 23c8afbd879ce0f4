"""A member of another node that leaves a channel and joins it again within one presence
window must stay visible (docs/architecture.md, presence coalescing).

Found by ``test_cluster_properties.py`` (Hypothesis) during the mutation run of the hardening
work, and fixed in the hub (8c34706). On one node the hub flushes the channel between a leave
and a re-join of the same connection. For a member of another node it compared
``RemoteMember`` objects, but the leave drops the object when that was its last channel on
this node, and the re-join makes a new one; so the two events stayed in one window and went
out as one frame naming the peer in both ``joined`` and ``left``. The SDKs apply ``joined``
then ``left``: the peer vanished from every view on this node, although it was a member.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.server.wire import Wire

from metered_realtime.protocol import SendFrame, SubscribeFrame, UnsubscribeFrame
from metered_realtime.server.auth import ChannelScope, Principal
from metered_realtime.server.broker import MemoryBroker
from metered_realtime.server.config import ServerConfig
from metered_realtime.server.hub import Conn, Hub

PRINCIPAL = Principal(
    "app", frozenset({"subscribe", "publish", "presence", "send"}), ChannelScope(["*"])
)


class Frames:
    def __init__(self) -> None:
        self.by_peer: dict[str, list[dict[str, Any]]] = {}

    def send(self, conn: Conn, payload: bytes) -> None:
        self.by_peer.setdefault(conn.peer_id, []).append(json.loads(payload))

    def fanout(self, conns: Any, payload: bytes) -> None:
        for conn in conns:
            self.send(conn, payload)

    def close(self, conn: Conn, code: int, reason: str) -> None:
        raise AssertionError(f"closed {code}")


def view_after(frames: list[dict[str, Any]], channel: str) -> set[str]:
    """The membership an SDK ends with: each frame's ``joined`` applied, then its ``left``."""
    view: set[str] = set()
    for frame in frames:
        if frame["type"] == "presence" and frame["channel"] == channel:
            view |= {e["peerId"] for e in frame["joined"]}
            view -= {e["peerId"] for e in frame["left"]}
    return view


def test_remote_member_that_rejoins_within_a_window_stays_visible() -> None:
    broker = MemoryBroker()
    now = 1000.0
    sinks = {"n0aa": Frames(), "n1bb": Frames()}
    hubs = {n: Hub(ServerConfig(presence_window=0.02), s) for n, s in sinks.items()}
    for node, hub in hubs.items():
        broker.join(hub, node, now)
    x = hubs["n0aa"].connect("n0aaX", PRINCIPAL, None, now)
    y = hubs["n1bb"].connect("n1bbY", PRINCIPAL, None, now)
    assert isinstance(x, Conn) and isinstance(y, Conn)

    def settle() -> None:
        nonlocal now
        for _ in range(10):
            broker.pump(now)
            now += 0.05
            for hub in hubs.values():
                hub.tick(now)

    hubs["n0aa"].receive(x, SubscribeFrame("room", "x1"), now)
    settle()
    hubs["n1bb"].receive(y, SubscribeFrame("room", "y1"), now)
    settle()
    assert view_after(sinks["n0aa"].by_peer["n0aaX"], "room") == {"n1bbY"}
    # Y leaves and comes straight back, within one window (also after a direct to X, which
    # flushes Y's pending presence on X's node first).
    hubs["n1bb"].receive(y, SendFrame("n0aaX", "hi", "y2"), now)
    hubs["n1bb"].receive(y, UnsubscribeFrame("room", "y3"), now)
    hubs["n1bb"].receive(y, SubscribeFrame("room", "y4"), now)
    settle()
    frames = sinks["n0aa"].by_peer["n0aaX"]
    for frame in frames:
        if frame["type"] == "presence":
            both = {e["peerId"] for e in frame["joined"]} & {e["peerId"] for e in frame["left"]}
            assert not both, f"one frame names {both} as joined and left: {frame}"
    assert view_after(frames, "room") == {"n1bbY"}, frames


async def test_member_that_rejoins_at_once_stays_visible_on_a_live_server(server_factory):
    """The same on real servers: one node, and the 2-node cluster over Redis."""
    async with server_factory() as srv:
        x = await Wire.open(srv.key_url())  # on the cluster: node 0
        y = await Wire.open(srv.key_url())  # on the cluster: node 1
        frames: list[dict[str, Any]] = []
        await x.subscribe("room", rid="x1")
        await y.subscribe("room", rid="y1")
        for _ in range(50):
            frames.append(await x.recv())
            if view_after(frames, "room") == {y.peer_id}:
                break
        for _ in range(5):
            # Unsubscribe and subscribe again in one write: within one presence window.
            await y.send({"type": "unsubscribe", "channel": "room", "requestId": "u"})
            await y.send({"type": "subscribe", "channel": "room", "requestId": "s"})
            assert await y.recv() == {"type": "ack", "requestId": "u"}
            assert await y.recv() == {"type": "ack", "requestId": "s"}
            assert (await y.recv())["type"] == "presence"  # the snapshot
            await asyncio.sleep(0.3)  # several windows: everything is out
            while True:
                try:
                    frames.append(await x.recv(timeout=0.2))
                except asyncio.TimeoutError:
                    break
            assert view_after(frames, "room") == {y.peer_id}, frames[-4:]
        await x.close()
        await y.close()
