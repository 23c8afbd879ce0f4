"""Every frame the hub hand-builds is byte for byte the codec's encoding of the same frame.

The hub assembles message, direct, ack and presence frames from cached bytes for speed;
``protocol.encode_server_frame`` is the reference. Each payload the hub writes is decoded
with the SDK rules and encoded again with the codec: the two must be the same bytes (same
keys, same order, same number and string spelling), so no field may be added, dropped,
reordered or spelled differently by the fast path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from metered_realtime.protocol import (
    Malformed,
    PingFrame,
    PublishFrame,
    SendFrame,
    SubscribeFrame,
    UnsubscribeFrame,
    decode_client_frame,
    decode_server_frame,
    dumps,
    encode_server_frame,
    to_wire_bytes,
)
from metered_realtime.server.auth import ChannelScope, Principal
from metered_realtime.server.config import ServerConfig
from metered_realtime.server.hub import Conn, Hub

CHANNELS = ("a", "ünï", "room:1", "private:x")
OPS = ("sub", "sub_meta", "unsub", "pub", "send", "send_gone", "ping", "raw", "tick", "drop")
OPS += ("remote_join", "remote_leave", "remote_msg", "remote_direct")
ALL = frozenset({"subscribe", "publish", "presence", "send"})


class CheckingSink:
    """Checks each payload against the codec as it is written; counts frames by type."""

    def __init__(self) -> None:
        self.kinds: dict[str, int] = {}

    def _check(self, payload: bytes) -> None:
        frame = decode_server_frame(payload.decode("utf-8"))
        assert not isinstance(frame, Malformed), (payload, frame)
        assert to_wire_bytes(encode_server_frame(frame)) == payload, payload
        kind = type(frame).__name__
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def send(self, conn: Conn, payload: bytes) -> None:
        self._check(payload)

    def fanout(self, conns: Iterable[Conn], payload: bytes) -> None:
        self._check(payload)

    def close(self, conn: Conn, code: int, reason: str) -> None:
        pass


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
metadata = st.none() | st.dictionaries(st.text(max_size=4), json_values, min_size=1, max_size=2)
request_ids = st.none() | st.text(min_size=1, max_size=6)
ops = st.lists(
    st.tuples(
        st.sampled_from(OPS),
        st.integers(0, 3),
        st.integers(0, 3),
        st.sampled_from(CHANNELS),
        json_values,
        request_ids,
    ),
    max_size=40,
)
raw_frames = st.sampled_from(
    [
        b"{",
        b'{"type":"publish","channel":"a"}',
        b'{"type":"nope","requestId":"r"}',
        b'{"type":"subscribe","channel":"","requestId":"x"}',
        b'{"type":"send","to":"p1","data":1e400,"requestId":"big"}',
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(metadata, min_size=4, max_size=4),
    st.sampled_from([None, 3]),
    ops,
    raw_frames,
)
def test_every_hub_frame_is_the_codec_encoding(metas, quota, script, raw) -> None:
    sink = CheckingSink()
    hub = Hub(ServerConfig(presence_window=0.01, rate_burst=10_000, app_message_quota=quota), sink)
    conns: dict[int, Conn] = {}
    now = 1000.0
    for i, meta in enumerate(metas):
        # Some connections lack permissions, so refusals (error frames) are written too.
        perms = ALL if i != 3 else frozenset({"subscribe"})
        principal = Principal("app", perms, ChannelScope(["*"]), peer_metadata=meta)
        welcome_meta: dict[str, Any] | None = {"turn": {"ttl": i}} if i % 2 else None
        conn = hub.connect(f"p{i}", principal, None, now, welcome_meta)
        assert isinstance(conn, Conn)
        conns[i] = conn
    for op, i, j, channel, data, rid in script:
        now += 0.003
        conn = conns.get(i)
        if conn is None or not conn.alive:
            continue
        if op in ("sub", "sub_meta"):
            hub.receive(conn, SubscribeFrame(channel, rid, op == "sub_meta"), now)
        elif op == "unsub":
            hub.receive(conn, UnsubscribeFrame(channel, rid), now)
        elif op == "pub":
            hub.receive(conn, PublishFrame(channel, data, rid), now)
        elif op == "send":
            hub.receive(conn, SendFrame(f"p{j}", data, rid), now)
        elif op == "send_gone":
            hub.receive(conn, SendFrame("nobody", data, rid), now)
        elif op == "ping":
            hub.receive(conn, PingFrame(rid), now)
        elif op == "raw":
            hub.receive(conn, decode_client_frame(raw), now)
        elif op == "tick":
            now += 0.02
            hub.tick(now)
        elif op == "drop":
            hub.disconnect(conn, now)
        elif op == "remote_join":
            entry = (
                {"peerId": f"r{j}"}
                if metas[j] is None
                else {"peerId": f"r{j}", "metadata": metas[j]}
            )
            hub.remote_presence("app", channel, True, f"r{j}", dumps(entry), now)
        elif op == "remote_leave":
            hub.remote_presence("app", channel, False, f"r{j}", "", now)
        elif op == "remote_msg":
            meta_json = None if metas[j] is None else dumps(metas[j])
            hub.remote_message("app", channel, f"r{j}", meta_json, to_wire_bytes(dumps(data)), now)
        elif op == "remote_direct":
            meta_json = None if metas[j] is None else dumps(metas[j])
            hub.remote_direct("app", f"p{i}", f"r{j}", meta_json, to_wire_bytes(dumps(data)), now)
    hub.tick(now + 1.0)
    assert sink.kinds["WelcomeFrame"] == len(metas)


def test_the_check_covers_every_frame_the_hub_builds() -> None:
    """One fixed script writes each kind of frame, so the property above meets them all."""
    sink = CheckingSink()
    hub = Hub(ServerConfig(presence_window=0.01, rate_burst=10_000), sink)
    meta = {"name": "ä", "n": 1.5}
    a = hub.connect("pa", Principal("app", ALL, ChannelScope(["*"]), peer_metadata=meta), None, 1.0)
    b = hub.connect("pb", Principal("app", ALL, ChannelScope(["*"])), None, 1.0)
    assert isinstance(a, Conn) and isinstance(b, Conn)
    hub.receive(b, SubscribeFrame("c", "s1", True), 1.0)
    hub.receive(a, SubscribeFrame("c", "s2"), 1.0)
    hub.receive(a, PublishFrame("c", {"x": [1, "é", None]}, "p1"), 1.0)
    hub.receive(a, SendFrame("pb", [True, 2.5], "d1"), 1.0)
    hub.receive(a, SendFrame("zz", 1, "d2"), 1.0)
    hub.receive(a, PingFrame("q"), 1.0)
    hub.receive(a, PingFrame(None), 1.0)
    hub.remote_presence("app", "c", True, "rx", dumps({"peerId": "rx", "metadata": meta}), 1.0)
    hub.receive(a, UnsubscribeFrame("c", "u1"), 1.0)
    hub.tick(2.0)
    assert set(sink.kinds) == {
        "WelcomeFrame",
        "AckFrame",
        "ErrorFrame",
        "MessageFrame",
        "DirectFrame",
        "PresenceFrame",
        "PongFrame",
    }, sink.kinds
