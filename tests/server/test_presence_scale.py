"""Presence coalescing: big channels form without O(N²) frames, ordering kept on a real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable

from tests.server.wire import Wire

from metered_realtime.protocol import SendFrame, SubscribeFrame
from metered_realtime.server.auth import ChannelScope, Principal
from metered_realtime.server.config import ServerConfig
from metered_realtime.server.hub import Conn, Hub


class Counter:
    def __init__(self) -> None:
        self.frames = 0
        self.presence_entries = 0

    def send(self, conn: Conn, payload: bytes) -> None:
        self.frames += 1

    def fanout(self, conns: Iterable[Conn], payload: bytes) -> None:
        n = len(list(conns))
        self.frames += n
        if payload.startswith(b'{"type":"presence"'):
            frame = json.loads(payload)
            self.presence_entries += n * (len(frame["joined"]) + len(frame["left"]))

    def close(self, conn: Conn, code: int, reason: str) -> None:
        raise AssertionError("nobody should be closed")


def test_five_thousand_joins_cost_far_fewer_than_n_squared_frames():
    sink = Counter()
    hub = Hub(ServerConfig(rate_burst=10), sink)
    principal = Principal("app", frozenset({"subscribe", "presence"}), ChannelScope(["*"]))
    n = 5000
    now = 0.0
    for i in range(n):
        conn = hub.connect(f"peer{i:05d}", principal, None, now)
        assert isinstance(conn, Conn)
        hub.receive(conn, SubscribeFrame("big", f"r{i}"), now)
        now += 0.0005  # 2,000 joins per second
        hub.tick(now)
    hub.tick(now + 1)
    naive = n * (n - 1) // 2  # one delta frame per existing member per join
    # welcome + ack + snapshot per member, plus the coalesced deltas.
    deltas = sink.frames - 3 * n
    assert deltas < naive / 20, (deltas, naive)
    # Every member still learns about every later joiner exactly once.
    assert sink.presence_entries == naive


async def test_join_precedes_direct_and_message_on_a_real_server(server_factory):
    async with server_factory(presence_window=0.05) as srv:
        a = await Wire.open(srv.key_url())
        assert await a.subscribe("room") == []
        for round_ in range(5):
            b = await Wire.open(srv.key_url())
            # Fire subscribe, direct and publish back to back: a must see b join first.
            await b.send({"type": "subscribe", "channel": "room", "requestId": "s"})
            await b.send({"type": "send", "to": a.peer_id, "data": round_, "requestId": "d"})
            await b.send({"type": "publish", "channel": "room", "data": round_, "requestId": "p"})
            first = await a.recv()
            assert first["type"] == "presence" and first["joined"] == [{"peerId": b.peer_id}]
            kinds = {(await a.recv())["type"] for _ in range(2)}
            assert kinds == {"direct", "message"}
            await b.close()
            assert (await a.recv())["left"] == [{"peerId": b.peer_id}]


async def test_many_joiners_converge_with_coalesced_frames(server_factory):
    async with server_factory(presence_window=0.05) as srv:
        watcher = await Wire.open(srv.key_url())
        assert await watcher.subscribe("room") == []
        joiners = await asyncio.gather(*(Wire.open(srv.key_url()) for _ in range(40)))
        await asyncio.gather(
            *(j.send({"type": "subscribe", "channel": "room", "requestId": "s"}) for j in joiners)
        )
        seen: set[str] = set()
        frames = 0
        while len(seen) < len(joiners):
            frame = await watcher.recv()
            assert frame["type"] == "presence" and frame["left"] == []
            new = {e["peerId"] for e in frame["joined"]}
            assert not new & seen
            seen |= new
            frames += 1
        assert seen == {j.peer_id for j in joiners}
        assert frames < len(joiners)
        # Each joiner's own view converges too: snapshot plus later deltas, never itself.
        everyone = {j.peer_id for j in joiners} | {watcher.peer_id}
        for j in joiners:
            assert await j.recv() == {"type": "ack", "requestId": "s"}
            snap = await j.recv()
            view = {e["peerId"] for e in snap["joined"]}
            while view != everyone - {j.peer_id}:
                frame = await j.recv()
                new = {e["peerId"] for e in frame["joined"]}
                assert j.peer_id not in new and not new & view
                view |= new
        for w in (watcher, *joiners):
            await w.close()


def test_direct_flushes_only_the_senders_pending_channels():
    frames: list[tuple[str, dict[str, object]]] = []

    class Sink:
        def send(self, conn: Conn, payload: bytes) -> None:
            frames.append((conn.peer_id, json.loads(payload)))

        def fanout(self, conns: Iterable[Conn], payload: bytes) -> None:
            for conn in conns:
                self.send(conn, payload)

        def close(self, conn: Conn, code: int, reason: str) -> None:
            raise AssertionError

    hub = Hub(ServerConfig(presence_window=0.05), Sink())
    principal = Principal("app", frozenset({"subscribe", "presence", "send"}), ChannelScope(["*"]))
    a, b, c = (hub.connect(p, principal, None, 0.0) for p in ("a", "b", "c"))
    assert isinstance(a, Conn) and isinstance(b, Conn) and isinstance(c, Conn)
    hub.receive(a, SubscribeFrame("x", "1"), 0.0)
    hub.receive(a, SubscribeFrame("y", "2"), 0.0)
    hub.tick(1.0)
    hub.receive(b, SubscribeFrame("x", "3"), 1.0)
    hub.receive(c, SubscribeFrame("y", "4"), 1.0)
    frames.clear()
    hub.receive(b, SendFrame("a", "hi", "5"), 1.001)
    to_a = [f for peer, f in frames if peer == "a"]
    # b's join in x is flushed before its direct; c's pending join in y still waits.
    assert to_a[0] == {"type": "presence", "channel": "x", "joined": [{"peerId": "b"}], "left": []}
    assert to_a[1]["type"] == "direct"
    assert len(to_a) == 2
    hub.tick(2.0)
    assert [f for peer, f in frames if peer == "a"][2]["channel"] == "y"


def test_token_expiry_bookkeeping_stays_bounded_under_churn():
    closed: list[tuple[str, int]] = []

    class ClosingCounter(Counter):
        def close(self, conn: Conn, code: int, reason: str) -> None:
            closed.append((conn.peer_id, code))

    hub = Hub(ServerConfig(), ClosingCounter())
    principal = Principal("app", frozenset({"subscribe"}), ChannelScope(["*"]), expires_at=10**10)
    for i in range(10):
        assert isinstance(hub.connect(f"steady{i}", principal, None, 0.0), Conn)
    for i in range(10_000):
        conn = hub.connect(f"churn{i}", principal, None, 0.0)
        assert isinstance(conn, Conn)
        hub.disconnect(conn, 0.0)
    assert len(hub._expiries) <= 2 * len(hub.conns) + 64
    # The live ones still expire on time.
    hub.tick(10**10 + 1)
    assert sorted(closed) == sorted((f"steady{i}", 4002) for i in range(10))
