"""Fuzzing the pure hub: hostile frames from many connections, checked against a model.

Every frame goes through the real decoder (random text, binary, non-finite numbers,
runaway nesting, wrong types, oversize data, valid frames with odd values) and then into
``Hub.receive``. A small model of what the protocol requires
says which answers are allowed for each frame, and a strict sink checks everything the hub writes:

- every frame is UTF-8 JSON an SDK accepts (``decode_server_frame``), strict (no NaN or
  Infinity), of a known server type, at most the 1 MiB client cap, and a relayed ``data``
  never exceeds ``maxMessageSize``;
- a frame carrying a valid ``requestId`` gets exactly one ``ack``/``error`` (``pong`` for a
  ping) with that id, and only an error code the spec names for what was sent;
- a connection is closed only with 1009 (its ``data`` was too big), 4011 (it exceeded the
  rate) or 4002 (its token expired), never anything else, and the hub never raises;
- acked messages reach exactly the subscribers of the channel, acked directs exactly their
  target, with ``fromMetadata`` exactly when requested; nothing crosses apps;
- after everyone leaves, no table of the hub keeps an entry.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metered_realtime.protocol import (
    ERROR_CODES,
    Malformed,
    PingFrame,
    PublishFrame,
    SendFrame,
    SubscribeFrame,
    UnsubscribeFrame,
    decode_client_frame,
    decode_server_frame,
    encode_client_frame,
    is_reserved_channel,
    payload_size,
)
from metered_realtime.protocol.limits import CLIENT_INBOUND_FRAME_CAP
from metered_realtime.server.auth import ChannelScope, Principal
from metered_realtime.server.config import ServerConfig
from metered_realtime.server.hub import Conn, Hub

SERVER_TYPES = {"welcome", "ack", "error", "message", "direct", "presence", "going_away", "pong"}
MAX_SIZE = 300  # a small maxMessageSize, so that oversize data is easy to reach
CHANNELS = [
    "a",
    "b",
    "a-1",
    "d",
    "e",
    "_metered/x",
    "_System/y",
    "c" * 256,
    "é\U0001f600",
    "\ud800",
]
ALL = frozenset({"subscribe", "publish", "presence", "send"})
STATS: Counter[str] = Counter()  # what the fuzzing reached (see test_zz_coverage)


def strict_json(raw: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} written to a client")

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


class StrictSink:
    """Checks every frame the hub writes and keeps each connection's frames in order."""

    def __init__(self) -> None:
        self.frames: dict[int, list[dict[str, Any]]] = {}
        self.closed: dict[int, int] = {}

    def _check(self, payload: bytes) -> dict[str, Any]:
        assert isinstance(payload, bytes)
        assert len(payload) <= CLIENT_INBOUND_FRAME_CAP
        frame = strict_json(payload)
        assert isinstance(frame, dict) and frame.get("type") in SERVER_TYPES, frame
        decoded = decode_server_frame(payload.decode("utf-8"))
        assert not isinstance(decoded, Malformed), (decoded, payload[:200])
        if frame["type"] in ("message", "direct"):
            assert payload_size(frame["data"]) <= MAX_SIZE
        if frame["type"] == "error":
            assert frame["code"] in ERROR_CODES and isinstance(frame.get("message"), str)
        return frame

    def send(self, conn: Conn, payload: bytes) -> None:
        assert conn.id not in self.closed, "frame written after close"
        self.frames.setdefault(conn.id, []).append(self._check(payload))

    def fanout(self, conns: Any, payload: bytes) -> None:
        frame = self._check(payload)
        for conn in conns:
            assert conn.id not in self.closed, "frame written after close"
            self.frames.setdefault(conn.id, []).append(frame)

    def close(self, conn: Conn, code: int, reason: str) -> None:
        assert conn.id not in self.closed, "closed twice"
        self.closed[conn.id] = code


# --- what connections are -------------------------------------------------------------

principals = st.builds(
    lambda app, perms, scope, meta, ttl: (app, perms, scope, meta, ttl),
    st.sampled_from(["app1", "app1", "app1", "app2"]),
    st.sampled_from(
        [ALL, ALL, ALL, ALL - {"send"}, ALL - {"presence"}, frozenset({"subscribe"}), frozenset()]
    ),
    st.sampled_from([["*"], ["*"], ["*"], ["a*"], ["b", "_metered/x"], ["*-1"]]),
    st.none() | st.sampled_from([{"name": "x"}, {"n": [1, 2.5, None]}, {}]),
    st.sampled_from([None, None, None, 0.5, 3.0]),
)

# --- what connections send -------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3)
    ),
    max_leaves=8,
)


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


data_values = st.one_of(
    json_values,
    st.integers(MAX_SIZE - 4, MAX_SIZE + 2).map(lambda n: "x" * n),  # around the size cap
    st.integers(MAX_SIZE // 2 - 2, MAX_SIZE // 2 + 1).map(lambda n: "é" * n),  # UTF-8 bytes
    st.sampled_from([10**400, -(10**300), 1e-400, "\ud800", "\x00"]),
    st.sampled_from([20, 510, 600, 6000]).map(nested),  # 600: past MAX_NESTING; 6000: past
    # what the JSON encoder can write (such a frame is handed to the hub as an object)
)
request_ids = st.none() | st.sampled_from(["r", "x" * 128]) | st.text(min_size=1, max_size=10)


@st.composite
def structured(draw: st.DrawFn, peer_ids: list[str]) -> str | Any:
    """A protocol frame, valid in shape, with values anywhere in their ranges: its text,
    or the frame itself when its data is nested too deep for any JSON encoder to write."""
    rid = draw(request_ids)
    kind = draw(
        st.sampled_from(["subscribe", "subscribe", "unsubscribe", "publish", "send", "ping"])
    )
    channel = draw(st.sampled_from(CHANNELS))
    if kind == "subscribe":
        frame: Any = SubscribeFrame(channel, rid, draw(st.booleans()))
    elif kind == "unsubscribe":
        frame = UnsubscribeFrame(channel, rid)
    elif kind == "publish":
        frame = PublishFrame(channel, draw(data_values), rid)
    elif kind == "send":
        to = draw(st.sampled_from(peer_ids) if draw(st.integers(0, 4)) else st.just("nobody"))
        frame = SendFrame(to, draw(data_values), rid)
    else:
        frame = PingFrame(rid)
    try:
        return encode_client_frame(frame)
    except (ValueError, RecursionError):
        return frame


hostile_objects = st.dictionaries(
    st.sampled_from(["type", "channel", "to", "data", "requestId", "includeSenderMetadata", "x"]),
    st.one_of(json_values, st.sampled_from(["subscribe", "publish", "send", "ping", "a", ""])),
    max_size=6,
)


@st.composite
def raw_frames(draw: st.DrawFn, peer_ids: list[str]) -> str | bytes | Any:
    """What one connection puts on the wire."""
    kind = draw(st.integers(0, 11))
    if kind <= 4 or kind >= 10:
        return draw(structured(peer_ids))
    if kind == 5:
        return json.dumps(draw(hostile_objects))
    if kind == 6:
        text = draw(structured(peer_ids))
        if not isinstance(text, str):
            return text
        return text[: draw(st.integers(0, len(text)))]  # truncated
    if kind == 7:
        token = draw(st.sampled_from(["NaN", "-Infinity", "1e400", "[" * 5000]))
        rid = draw(st.sampled_from(["", ',"requestId":"nf"']))
        return '{"type":"publish","channel":"a","data":' + token + rid + "}"
    if kind == 8:
        return draw(st.binary(max_size=20))
    return draw(st.text(max_size=20))


# --- the model ------------------------------------------------------------------------


class Model:
    """What the spec says about one connection."""

    def __init__(self, conn: Conn, spec: tuple[Any, ...], now: float, burst: float) -> None:
        self.conn = conn
        self.app, self.perms, patterns, self.meta, ttl = spec
        self.scope = ChannelScope(patterns)
        self.subs: dict[str, bool] = {}
        self.tokens = burst
        self.last = now
        self.closes_at = None if ttl is None else math.ceil(now + ttl)

    @property
    def sender_meta(self) -> bool:
        return any(self.subs.values())


def refusals(model: Model, channel: str, action: str) -> set[str]:
    out = set()
    if is_reserved_channel(channel):
        out.add("channel_reserved")
    if action not in model.perms:
        out.add("action_not_permitted")
    if not model.scope.allows(channel):
        out.add("channel_not_authorized")
    return out


def encodable(data: Any) -> int | None:
    try:
        return payload_size(data)
    except (ValueError, RecursionError):
        return None


ops = st.lists(
    st.tuples(
        st.sampled_from(["connect", "frame", "frame", "frame", "frame", "frame", "drop", "tick"]),
        st.integers(0, 3),
        st.sampled_from([0.0, 0.001, 0.004, 0.03, 0.6]),
        st.data(),
        st.sampled_from([1, 1, 1, 1, 10]),  # 10: a burst of frames from one connection
    ),
    min_size=10,
    max_size=80,
)


def expand(script: list[tuple[Any, ...]]) -> Any:
    for op, slot, step, data, repeat in script:
        yield op, slot, step, data
        if op == "frame":
            for _ in range(repeat - 1):
                yield op, slot, 0.0, data


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    ops,
    st.floats(0.0, 0.05),
    st.sampled_from([None, 2, 20]),
    st.sampled_from([(50.0, 5.0), (1000.0, 1000.0)]),
)
def test_hub_answers_every_hostile_frame_as_specified(script, window, quota, rate):
    STATS["examples"] += 1
    sink = StrictSink()
    cfg = ServerConfig(
        max_message_size=MAX_SIZE,
        max_subscriptions=3,
        presence_window=window,
        app_message_quota=quota,
        rate_per_second=rate[0],
        rate_burst=rate[1],
    )
    hub = Hub(cfg, sink)
    now = 1000.0
    models: dict[int, Model] = {}  # slot -> live connection
    used: dict[str, int] = {"app1": 0, "app2": 0}  # the message quota, per app
    counter = 0

    def alive() -> list[Model]:
        return [m for m in models.values() if m.conn.alive]

    for op, slot, step, data in expand(script):
        now += step
        counter += 1
        if op == "connect" or slot not in models:
            if slot in models:
                continue
            spec = data.draw(principals)
            app, perms, patterns, meta, ttl = spec
            pid = f"p{counter}"
            principal = Principal(
                app,
                perms,
                ChannelScope(patterns),
                peer_metadata=meta,
                expires_at=None if ttl is None else math.ceil(now + ttl),
            )
            conn = hub.connect(pid, principal, None, now)
            assert isinstance(conn, Conn)
            (welcome,) = sink.frames[conn.id]
            assert welcome["peerId"] == pid and welcome["maxMessageSize"] == MAX_SIZE
            models[slot] = Model(conn, spec, now, cfg.rate_burst)
            continue
        model = models[slot]
        conn = model.conn
        if op == "drop":
            hub.disconnect(conn, now)
            del models[slot]
            continue
        if op == "tick":
            hub.tick(now)
            for s, m in list(models.items()):
                if m.closes_at is not None and m.closes_at <= now:
                    assert sink.closed.get(m.conn.id) == 4002 and not m.conn.alive
                    STATS["closed 4002"] += 1
                    del models[s]
            continue
        # --- one frame ------------------------------------------------------------------
        peer_ids = [m.conn.peer_id for m in models.values()]
        raw = data.draw(raw_frames(peer_ids))
        frame = decode_client_frame(raw) if isinstance(raw, (str, bytes)) else raw
        before = {m.conn.id: len(sink.frames.get(m.conn.id, [])) for m in models.values()}
        STATS["frames"] += 1
        hub.receive(conn, frame, now)
        new = {cid: sink.frames.get(cid, [])[n:] for cid, n in before.items()}
        mine = new[conn.id]
        rid = frame.request_id
        # The rate limit: a token bucket of rate_burst, refilled at rate_per_second.
        model.tokens = min(cfg.rate_burst, model.tokens + (now - model.last) * cfg.rate_per_second)
        model.last = now
        if model.tokens < 1.0:
            assert sink.closed.get(conn.id) == 4011 and mine == [], (raw, mine)
            STATS["closed 4011"] += 1
            del models[slot]
            continue
        model.tokens -= 1.0
        assert conn.alive or sink.closed.get(conn.id) == 1009, sink.closed.get(conn.id)
        # Allowed answers, and what each does to the model.
        allowed: set[Any] = set()
        data_size: int | None = None
        targets: list[Model] = []
        if isinstance(frame, Malformed):
            allowed = {frame.code}
        elif isinstance(frame, PingFrame):
            pong = {"type": "pong"} if rid is None else {"type": "pong", "requestId": rid}
            assert mine == [pong], mine
            continue
        elif isinstance(frame, UnsubscribeFrame):
            allowed = {"ack"}
        elif isinstance(frame, SubscribeFrame):
            allowed = refusals(model, frame.channel, "subscribe")
            if frame.channel not in model.subs and len(model.subs) >= cfg.max_subscriptions:
                allowed.add("channel_limit_exceeded")
            allowed = allowed or {"ack"}
        else:
            assert isinstance(frame, (PublishFrame, SendFrame))
            if isinstance(frame, PublishFrame):
                allowed = refusals(model, frame.channel, "publish")
            else:
                if "send" not in model.perms:
                    allowed.add("action_not_permitted")
                targets = [m for m in alive() if m.conn.peer_id == frame.to and m.app == model.app]
                if not targets:
                    allowed.add("peer_not_found")
            data_size = encodable(frame.data)
            if data_size is None:
                allowed.add("malformed_message")
            elif data_size > MAX_SIZE:
                allowed.add(1009)
            if quota is not None and used[model.app] >= quota:
                allowed.add("over_message_quota")
            allowed = allowed or {"ack"}
        # What happened.
        replies = [f for f in mine if f["type"] in ("ack", "error")]
        if not conn.alive:
            outcome: Any = sink.closed[conn.id]
            assert replies == [], replies
            del models[slot]
        elif replies:
            assert len(replies) == 1, replies
            reply = replies[0]
            outcome = reply["code"] if reply["type"] == "error" else "ack"
            assert reply.get("requestId") == rid, (reply, rid)
            assert reply["type"] == "error" or rid is not None  # no ack without an id
        else:
            assert rid is None, f"no answer to {raw!r}"
            outcome = "ack"  # accepted silently: an id-less request gets no ack
        assert outcome in allowed, (raw, outcome, allowed)
        STATS[f"{type(frame).__name__}->{outcome}"] += 1
        if outcome == "ack":
            apply_effects(frame, model, mine, new, alive(), targets, used)
        # Whatever else was written: presence, only to members of that channel, never self.
        for m in alive():
            for f in new[m.conn.id]:
                if f["type"] == "presence":
                    ids = {e["peerId"] for e in f["joined"] + f["left"]}
                    assert m.conn.peer_id not in ids
                    assert "presence" in m.perms and f["channel"] in m.subs, (f, m.subs)
    # Everyone leaves: no table keeps anything.
    for m in list(models.values()):
        hub.disconnect(m.conn, now)
    hub.tick(now + 10)
    assert hub.conns == {}
    for app in hub.apps.values():
        assert app.peers == {} and app.channels == {} and app.remote_peers == {}
    assert len(hub._expiries) <= 64
    assert hub.next_deadline() is None
    assert set(sink.closed.values()) <= {1009, 4011, 4002}


def apply_effects(
    frame: Any,
    model: Model,
    mine: list[dict[str, Any]],
    new: dict[int, list[dict[str, Any]]],
    alive: list[Model],
    targets: list[Model],
    used: dict[str, int],
) -> None:
    """An accepted frame: update the model and check what reached whom."""
    rid = frame.request_id
    if isinstance(frame, SubscribeFrame):
        model.subs[frame.channel] = frame.include_sender_metadata
        if rid is not None:
            at = mine.index({"type": "ack", "requestId": rid})
            if "presence" in model.perms:
                snap = mine[at + 1]  # the snapshot follows the ack at once
                assert snap["type"] == "presence" and snap["channel"] == frame.channel
                assert snap["left"] == []
            else:
                assert len(mine) == at + 1
    elif isinstance(frame, UnsubscribeFrame):
        model.subs.pop(frame.channel, None)
    elif isinstance(frame, (PublishFrame, SendFrame)):
        used[model.app] += 1
        if isinstance(frame, PublishFrame):
            kind = "message"
            expected = {m.conn.id for m in alive if frame.channel in m.subs and m.app == model.app}
        else:
            kind = "direct"
            expected = {targets[0].conn.id}
        got = {cid for cid, fs in new.items() for f in fs if f["type"] == kind}
        assert got == expected, (kind, got, expected)
        for m in alive:
            if m.conn.id not in expected:
                continue
            (delivered,) = [f for f in new[m.conn.id] if f["type"] == kind]
            assert delivered["from"] == model.conn.peer_id
            assert json.dumps(delivered["data"], sort_keys=True) == json.dumps(
                frame.data, sort_keys=True
            )
            if kind == "message":
                assert delivered["channel"] == frame.channel
                wants = m.subs[frame.channel]
            else:
                wants = m.sender_meta
            if wants and model.meta:
                assert delivered["fromMetadata"] == model.meta
            else:
                assert "fromMetadata" not in delivered
