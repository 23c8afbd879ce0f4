"""Several pure hubs wired through the in-memory broker: the presence and ordering rules of
one node hold across nodes, whatever the interleaving of client actions, deliveries and ticks."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.server.test_hub_properties import Recorder

from metered_realtime.protocol import PublishFrame, SendFrame, SubscribeFrame, UnsubscribeFrame
from metered_realtime.server.auth import ChannelScope, Principal
from metered_realtime.server.broker import MemoryBroker
from metered_realtime.server.config import ServerConfig
from metered_realtime.server.hub import Conn, Hub

CHANNELS = ("a", "b")
NODES = ("n0aa", "n1bb", "n2cc")
PRINCIPAL = Principal(
    "app", frozenset({"subscribe", "publish", "presence", "send"}), ChannelScope(["*"])
)


class StreamChecker:
    """Replays one connection's frames, checking the presence rules and that a message
    never arrives before its sender's ``joined`` in a channel the sender was in when sending."""

    def __init__(self, me: str, sent_in: dict[str, set[str]]) -> None:
        self.me = me
        self.sent_in = sent_in  # message data -> channels its sender was a member of
        self.views: dict[str, set[str]] = {}
        self.expect_snapshot: str | None = None
        self.seen = 0
        self.acks: set[str] = set()
        self.errors: list[dict[str, Any]] = []

    def advance(self, frames: list[dict[str, Any]]) -> None:
        for frame in frames[self.seen :]:
            self.seen += 1
            kind = frame["type"]
            if self.expect_snapshot is not None:
                assert kind == "presence" and frame["channel"] == self.expect_snapshot, frame
                assert frame["left"] == []
                ids = [e["peerId"] for e in frame["joined"]]
                assert self.me not in ids and len(ids) == len(set(ids)), ids
                self.views[frame["channel"]] = set(ids)
                self.expect_snapshot = None
            elif kind == "ack":
                rid = frame["requestId"]
                self.acks.add(rid)
                if rid.startswith("sub:"):
                    self.expect_snapshot = rid.split(":")[1]
                elif rid.startswith("unsub:"):
                    self.views.pop(rid.split(":")[1], None)
            elif kind == "error":
                self.errors.append(frame)
            elif kind == "presence":
                view = self.views[frame["channel"]]
                joined = {e["peerId"] for e in frame["joined"]}
                left = {e["peerId"] for e in frame["left"]}
                assert self.me not in joined | left
                assert not joined & view, f"{self.me} re-announced {joined & view}"
                assert left <= view, f"{self.me} left for unknown {left - view}"
                view |= joined
                view -= left
            elif kind in ("message", "direct") and frame["from"] != self.me:
                for channel in self.sent_in[frame["data"]]:
                    if channel in self.views:
                        assert frame["from"] in self.views[channel], (
                            f"{self.me} got {kind} {frame['data']} from {frame['from']} "
                            f"before its join in {channel}"
                        )


ops = st.lists(
    st.tuples(
        st.sampled_from(
            ["connect", "sub", "sub", "unsub", "drop", "send", "pub", "tick", "pump", "pump"]
        ),
        st.integers(0, 5),
        st.integers(0, 5),
        st.sampled_from(CHANNELS),
        st.integers(1, 4),
    ),
    max_size=70,
)


@settings(max_examples=600, deadline=None)
@given(ops, st.floats(0.0, 0.05), st.integers(2, 3), st.booleans())
def test_cluster_presence_converges_and_joins_precede_traffic(script, window, n_nodes, kill):
    broker = MemoryBroker()
    now = 1000.0
    sinks: dict[str, Recorder] = {}
    hubs: dict[str, Hub] = {}
    for node_id in NODES[:n_nodes]:
        sinks[node_id] = Recorder()
        hubs[node_id] = Hub(ServerConfig(presence_window=window, rate_burst=10_000), sinks[node_id])
        broker.join(hubs[node_id], node_id, now)
    conns: dict[int, Conn] = {}
    node_of: dict[str, str] = {}
    checkers: dict[str, StreamChecker] = {}
    truth: dict[str, set[str]] = {c: set() for c in CHANNELS}
    sent_in: dict[str, set[str]] = {}
    expect_ack: dict[str, set[str]] = {}
    counter = 0

    def frames_of(pid: str) -> list[dict[str, Any]]:
        return sinks[node_of[pid]].frames.get(pid, [])

    def check_all() -> None:
        for pid, checker in checkers.items():
            checker.advance(frames_of(pid))

    for op, i, j, channel, pumps in script:
        now += 0.004
        counter += 1
        if op == "connect" or i not in conns:
            if i not in conns:
                node_id = NODES[i % n_nodes]
                pid = f"{node_id}p{i}x{counter}"
                conn = hubs[node_id].connect(pid, PRINCIPAL, None, now)
                assert isinstance(conn, Conn)
                conns[i] = conn
                node_of[pid] = node_id
                checkers[pid] = StreamChecker(pid, sent_in)
                expect_ack[pid] = set()
            continue
        conn = conns[i]
        hub = hubs[node_of[conn.peer_id]]
        if op == "sub":
            rid = f"sub:{channel}:{counter}"
            hub.receive(conn, SubscribeFrame(channel, rid), now)
            truth[channel].add(conn.peer_id)
            expect_ack[conn.peer_id].add(rid)
        elif op == "unsub":
            rid = f"unsub:{channel}:{counter}"
            hub.receive(conn, UnsubscribeFrame(channel, rid), now)
            truth[channel].discard(conn.peer_id)
            expect_ack[conn.peer_id].add(rid)
        elif op == "drop":
            hub.disconnect(conn, now)
            for members in truth.values():
                members.discard(conn.peer_id)
            del conns[i]
            del checkers[conn.peer_id]
        elif op == "tick":
            now += window
            for h in hubs.values():
                h.tick(now)
        elif op == "pump":
            broker.pump(now, limit=pumps * 3)
        else:
            data = f"d{counter}"
            sent_in[data] = {c for c, members in truth.items() if conn.peer_id in members}
            if op == "send" and j in conns:
                hub.receive(conn, SendFrame(conns[j].peer_id, data, str(counter)), now)
            else:
                hub.receive(conn, PublishFrame(channel, data, str(counter)), now)
            expect_ack[conn.peer_id].add(str(counter))
        check_all()

    if kill and n_nodes > 2:
        # The last node dies: its members leave everywhere else.
        dead = NODES[n_nodes - 1]
        broker.kill(dead, now)
        for k, conn in list(conns.items()):
            if node_of[conn.peer_id] == dead:
                for members in truth.values():
                    members.discard(conn.peer_id)
                del conns[k]
                del checkers[conn.peer_id]
        del hubs[dead]
    for _ in range(50):
        broker.pump(now)
        now += 1.0
        for h in hubs.values():
            h.tick(now)
        if broker.idle:
            break
    check_all()
    for pid, checker in checkers.items():
        for ch, members in truth.items():
            if pid in members:
                assert checker.views.get(ch) == members - {pid}, (pid, ch, checker.views)
        # Every request is answered: subscribes and publishes acked, sends acked or refused.
        answered = checker.acks | {e.get("requestId") for e in checker.errors}
        assert expect_ack[pid] <= answered, expect_ack[pid] - answered
    for sink in sinks.values():
        assert not sink.closed


def test_message_reaches_subscribers_on_every_node_with_one_publish() -> None:
    broker = MemoryBroker()
    sinks = {n: Recorder() for n in NODES}
    hubs = {n: Hub(ServerConfig(), sinks[n]) for n in NODES}
    for n, hub in hubs.items():
        broker.join(hub, n, 0.0)
    subs = []
    for k, n in enumerate(NODES):
        conn = hubs[n].connect(f"{n}sub{k}", PRINCIPAL, None, 0.0)
        assert isinstance(conn, Conn)
        hubs[n].receive(conn, SubscribeFrame("room", f"s{k}"), 0.0)
        broker.pump(0.0)
        subs.append(conn)
    publisher = subs[0]
    published_before = sum(node.stats.published for node in broker.nodes.values())
    hubs[NODES[0]].receive(publisher, PublishFrame("room", {"x": 1}, "p1"), 0.1)
    published = sum(node.stats.published for node in broker.nodes.values()) - published_before
    broker.pump(0.1)
    assert published == 1
    for k, n in enumerate(NODES):
        got = [f for f in sinks[n].frames[subs[k].peer_id] if f["type"] == "message"]
        assert got == [
            {"type": "message", "channel": "room", "from": publisher.peer_id, "data": {"x": 1}}
        ]


def test_send_to_a_peer_of_a_gone_node_is_refused() -> None:
    broker = MemoryBroker()
    sinks = {n: Recorder() for n in NODES[:2]}
    hubs = {n: Hub(ServerConfig(), sinks[n]) for n in NODES[:2]}
    for n, hub in hubs.items():
        broker.join(hub, n, 0.0)
    a = hubs[NODES[0]].connect(f"{NODES[0]}aaaa", PRINCIPAL, None, 0.0)
    b = hubs[NODES[1]].connect(f"{NODES[1]}bbbb", PRINCIPAL, None, 0.0)
    assert isinstance(a, Conn) and isinstance(b, Conn)
    hubs[NODES[0]].receive(a, SendFrame(b.peer_id, "hi", "r1"), 0.0)
    broker.pump(0.0)
    assert sinks[NODES[1]].frames[b.peer_id][-1] == {
        "type": "direct",
        "from": a.peer_id,
        "data": "hi",
    }
    assert sinks[NODES[0]].frames[a.peer_id][-1] == {"type": "ack", "requestId": "r1"}
    hubs[NODES[0]].receive(a, SendFrame(f"{NODES[1]}nobody", "hi", "r2"), 0.0)
    broker.pump(0.0)
    assert sinks[NODES[0]].frames[a.peer_id][-1]["code"] == "peer_not_found"
    broker.kill(NODES[1], 1.0)
    hubs[NODES[0]].receive(a, SendFrame(b.peer_id, "hi", "r3"), 1.0)
    last = sinks[NODES[0]].frames[a.peer_id][-1]
    assert last["code"] == "peer_not_found" and last["requestId"] == "r3"
