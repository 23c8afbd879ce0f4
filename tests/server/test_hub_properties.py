"""The pure hub under random workloads: presence views converge and ordering holds."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from metered_realtime.protocol import (
    PublishFrame,
    SendFrame,
    SubscribeFrame,
    UnsubscribeFrame,
)
from metered_realtime.server.auth import ChannelScope, Principal
from metered_realtime.server.config import ServerConfig
from metered_realtime.server.hub import Conn, Hub

CHANNELS = ("a", "b")


class Recorder:
    """A sink that keeps each connection's frames in order."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = {}
        self.closed: dict[str, int] = {}

    def send(self, conn: Conn, payload: bytes) -> None:
        self.frames.setdefault(conn.peer_id, []).append(json.loads(payload))

    def fanout(self, conns: Iterable[Conn], payload: bytes) -> None:
        frame = json.loads(payload)
        for conn in conns:
            self.frames.setdefault(conn.peer_id, []).append(frame)

    def close(self, conn: Conn, code: int, reason: str) -> None:
        self.closed[conn.peer_id] = code


class Viewer:
    """Replays one connection's stream and checks every presence rule on the way."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.views: dict[str, set[str]] = {}
        self.expect_snapshot: str | None = None
        self.seen = 0

    def advance(self, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
        new = frames[self.seen :]
        self.seen = len(frames)
        for frame in new:
            kind = frame["type"]
            if self.expect_snapshot is not None:
                assert kind == "presence" and frame["channel"] == self.expect_snapshot, frame
                assert frame["left"] == []
                ids = [e["peerId"] for e in frame["joined"]]
                assert self.me not in ids and len(ids) == len(set(ids))
                self.views[frame["channel"]] = set(ids)
                self.expect_snapshot = None
                continue
            if kind == "ack" and frame["requestId"].startswith("sub:"):
                self.expect_snapshot = frame["requestId"].split(":")[1]
            elif kind == "ack" and frame["requestId"].startswith("unsub:"):
                self.views.pop(frame["requestId"].split(":")[1], None)
            elif kind == "presence":
                view = self.views[frame["channel"]]
                joined = {e["peerId"] for e in frame["joined"]}
                left = {e["peerId"] for e in frame["left"]}
                assert self.me not in joined | left
                assert not joined & view, f"re-announced {joined & view}"
                assert left <= view | joined, f"left for unknown {left - view}"
                view |= joined
                view -= left
        return new


ops = st.lists(
    st.tuples(
        st.sampled_from(["connect", "sub", "unsub", "drop", "send", "pub", "tick", "sub"]),
        st.integers(0, 3),
        st.integers(0, 3),
        st.sampled_from(CHANNELS),
    ),
    max_size=60,
)


@settings(max_examples=1200, deadline=None)
@given(ops, st.floats(0.0, 0.05))
def test_presence_converges_and_joins_precede_traffic(script, window):
    sink = Recorder()
    hub = Hub(ServerConfig(presence_window=window, rate_burst=10_000), sink)
    principal = Principal(
        "app", frozenset({"subscribe", "publish", "presence", "send"}), ChannelScope(["*"])
    )
    conns: dict[int, Conn] = {}
    viewers: dict[str, Viewer] = {}
    truth: dict[str, set[str]] = {c: set() for c in CHANNELS}
    now = 1000.0
    counter = 0

    def sync_views() -> None:
        for pid, viewer in viewers.items():
            viewer.advance(sink.frames.get(pid, []))

    for op, i, j, channel in script:
        now += 0.004
        counter += 1
        if op == "connect" or i not in conns:
            if i not in conns:
                pid = f"p{i}-{counter}"
                conn = hub.connect(pid, principal, None, now)
                assert isinstance(conn, Conn)
                conns[i] = conn
                viewers[pid] = Viewer(pid)
            continue
        conn = conns[i]
        if op == "sub":
            hub.receive(conn, SubscribeFrame(channel, f"sub:{channel}:{counter}"), now)
            truth[channel].add(conn.peer_id)
        elif op == "unsub":
            hub.receive(conn, UnsubscribeFrame(channel, f"unsub:{channel}:{counter}"), now)
            truth[channel].discard(conn.peer_id)
        elif op == "drop":
            hub.disconnect(conn, now)
            for members in truth.values():
                members.discard(conn.peer_id)
            del conns[i]
            del viewers[conn.peer_id]
        elif op == "tick":
            now += window
            hub.tick(now)
        elif op in ("send", "pub"):
            before = {pid: len(sink.frames.get(pid, [])) for pid in viewers}
            if op == "send" and j in conns:
                hub.receive(conn, SendFrame(conns[j].peer_id, counter, f"d{counter}"), now)
            else:
                hub.receive(conn, PublishFrame(channel, counter, f"m{counter}"), now)
            # Every recipient must already know the sender in every channel both are in.
            for pid, viewer in viewers.items():
                new = sink.frames.get(pid, [])[before[pid] :]
                viewer.advance(sink.frames.get(pid, [])[: before[pid]])
                for k, frame in enumerate(new):
                    if frame["type"] in ("direct", "message") and frame["from"] != pid:
                        for ch, members in truth.items():
                            if conn.peer_id in members and pid in members and ch in viewer.views:
                                assert conn.peer_id in viewer.views[ch], (
                                    f"{pid} got {frame['type']} from {conn.peer_id} before its join"
                                )
                    viewer.advance(sink.frames[pid][: before[pid] + k + 1])
        sync_views()
    now += 1.0
    hub.tick(now)
    sync_views()
    for pid, viewer in viewers.items():
        for ch, members in truth.items():
            if pid in members:
                assert viewer.views.get(ch) == members - {pid}, (pid, ch)
    assert not sink.closed
