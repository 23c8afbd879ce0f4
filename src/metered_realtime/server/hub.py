"""The pure core of the server: apps, connections, channels, presence and routing.

No sockets, no asyncio, no clock: every call takes ``now`` and writes its output
frames (already encoded, encoded once per fan-out) to a ``Sink``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..protocol import (
    ClientFrame,
    Malformed,
    PingFrame,
    PublishFrame,
    SendFrame,
    SubscribeFrame,
    UnsubscribeFrame,
    dumps,
    is_reserved_channel,
    to_wire_bytes,
)
from .auth import Principal, Refusal
from .config import ServerConfig


class Sink(Protocol):
    """Where the hub's output goes. Implementations must not call back into the hub."""

    def send(self, conn: Conn, payload: bytes) -> None: ...

    def fanout(self, conns: Iterable[Conn], payload: bytes) -> None: ...

    def close(self, conn: Conn, code: int, reason: str) -> None: ...


class Conn:
    """One live connection as the hub sees it."""

    __slots__ = (
        "alive",
        "app",
        "entry",
        "handle",
        "id",
        "last_refill",
        "meta_json",
        "peer_id",
        "peer_json",
        "pending",
        "principal",
        "sender_meta_subs",
        "subs",
        "tokens",
    )

    def __init__(
        self,
        conn_id: int,
        peer_id: str,
        principal: Principal,
        app: AppState,
        handle: Any,
        now: float,
    ) -> None:
        self.id = conn_id
        self.peer_id = peer_id
        self.principal = principal
        self.app = app
        self.handle = handle
        self.alive = True
        self.peer_json = to_wire_bytes(dumps(peer_id))
        self.subs: dict[str, bool] = {}
        self.sender_meta_subs = 0
        self.pending: set[Channel] = set()
        self.tokens = 0.0
        self.last_refill = now
        meta = principal.peer_metadata
        self.meta_json: str | None = dumps(meta) if meta else None
        entry = '{"peerId":' + dumps(peer_id)
        if meta is not None:
            entry += ',"metadata":' + dumps(meta)
        self.entry = entry + "}"

    @property
    def presence(self) -> bool:
        """Whether this connection sees presence and is announced to others."""
        return "presence" in self.principal.permissions

    def __repr__(self) -> str:
        return f"Conn(id={self.id}, peer_id={self.peer_id!r}, app={self.app.id!r})"


@dataclass(eq=False, slots=True)
class Channel:
    """One channel of one app: subscribers, announced members and pending deltas."""

    app: AppState
    name: str
    name_json: str
    subs: dict[Conn, bool] = field(default_factory=dict)
    members: dict[Conn, int] = field(default_factory=dict)
    events: list[tuple[int, bool, Conn]] = field(default_factory=list)
    seq: int = 0
    due: float | None = None
    blob: str | None = ""


@dataclass(eq=False, slots=True)
class AppState:
    """Per-tenant routing state."""

    id: str
    peers: dict[str, Conn] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    quota_used: int = 0
    quota_reset_at: float = 0.0


_QUOTA_MESSAGE = "message quota exhausted"


@dataclass(slots=True)
class HubStats:
    """Counters read by the metrics endpoint; increments are plain integer additions."""

    connections_total: int = 0
    frames_received: int = 0
    deliveries: int = 0
    closes: dict[int, int] = field(default_factory=dict)
    refusals: dict[int, int] = field(default_factory=dict)

    def count(self, table: dict[int, int], code: int) -> None:
        table[code] = table.get(code, 0) + 1


class Hub:
    """Routing for every app of one node."""

    def __init__(self, config: ServerConfig, sink: Sink) -> None:
        self.config = config
        self.sink = sink
        self.apps: dict[str, AppState] = {}
        self.conns: dict[int, Conn] = {}
        self._ids = itertools.count(1)
        self._presence_due: list[tuple[float, int, Channel]] = []
        self._expiries: list[tuple[int, int]] = []
        self._tie = itertools.count()
        self.stats = HubStats()

    # --- connections ------------------------------------------------------

    def connect(
        self,
        peer_id: str,
        principal: Principal,
        handle: Any,
        now: float,
        welcome_metadata: dict[str, Any] | None = None,
    ) -> Conn | Refusal:
        """Admit a connection and send its welcome, or refuse it (4010) before welcome."""
        app = self.apps.get(principal.app_id)
        if app is None:
            app = self.apps[principal.app_id] = AppState(principal.app_id)
        limit = self.config.max_connections_per_app
        if limit is not None and len(app.peers) >= limit:
            self.stats.count(self.stats.refusals, 4010)
            return Refusal(4010, "over concurrent connection limit")
        conn = Conn(next(self._ids), peer_id, principal, app, handle, now)
        conn.tokens = self.config.rate_burst
        self.stats.connections_total += 1
        app.peers[peer_id] = conn
        self.conns[conn.id] = conn
        if principal.expires_at is not None:
            heapq.heappush(self._expiries, (principal.expires_at, conn.id))
        welcome: dict[str, Any] = {
            "type": "welcome",
            "peerId": peer_id,
            "expiresAt": principal.expires_at,
            "serverTime": int(now * 1000),
            "maxMessageSize": self.config.max_message_size,
        }
        if welcome_metadata is not None:
            welcome["metadata"] = welcome_metadata
        self.sink.send(conn, to_wire_bytes(dumps(welcome)))
        return conn

    def disconnect(self, conn: Conn, now: float) -> None:
        """Forget a connection: every channel it was in hears it left. Idempotent."""
        if not conn.alive:
            return
        conn.alive = False
        for name in list(conn.subs):
            self._unsubscribe(conn, name, now)
        conn.pending.clear()
        app = conn.app
        if app.peers.get(conn.peer_id) is conn:
            del app.peers[conn.peer_id]
        self.conns.pop(conn.id, None)
        # Expiry entries of gone connections are dropped lazily; keep the heap within twice
        # the live connections so churn under long-lived tokens cannot grow it without bound.
        if len(self._expiries) > 2 * len(self.conns) + 64:
            self._expiries = [e for e in self._expiries if e[1] in self.conns]
            heapq.heapify(self._expiries)

    def close(self, conn: Conn, code: int, reason: str, now: float) -> None:
        """Close a connection from the server side and forget it."""
        if conn.alive:
            self.stats.count(self.stats.closes, code)
            self.sink.close(conn, code, reason)
            self.disconnect(conn, now)

    def close_app(self, app_id: str, code: int, reason: str, now: float) -> int:
        """Close every connection of an app (suspension). Returns how many were closed."""
        app = self.apps.get(app_id)
        if app is None:
            return 0
        victims = list(app.peers.values())
        for conn in victims:
            self.close(conn, code, reason, now)
        return len(victims)

    def broadcast_all(self, payload: bytes) -> None:
        """Send one frame to every live connection (used for going_away)."""
        self.sink.fanout(list(self.conns.values()), payload)

    # --- inbound ----------------------------------------------------------

    def receive(self, conn: Conn, frame: ClientFrame | Malformed, now: float) -> None:
        """Handle one decoded client frame."""
        if not conn.alive:
            return
        self.stats.frames_received += 1
        cfg = self.config
        conn.tokens = min(
            cfg.rate_burst, conn.tokens + (now - conn.last_refill) * cfg.rate_per_second
        )
        conn.last_refill = now
        if conn.tokens < 1.0:
            self.close(conn, 4011, "over message rate", now)
            return
        conn.tokens -= 1.0
        if isinstance(frame, Malformed):
            self._error(conn, frame.code, frame.request_id, frame.reason)
        elif isinstance(frame, PublishFrame):
            self._publish(conn, frame, now)
        elif isinstance(frame, SendFrame):
            self._send(conn, frame, now)
        elif isinstance(frame, SubscribeFrame):
            self._subscribe(conn, frame, now)
        elif isinstance(frame, UnsubscribeFrame):
            self._ack(conn, frame.request_id)
            if frame.channel in conn.subs:
                self._unsubscribe(conn, frame.channel, now)
        elif isinstance(frame, PingFrame):
            pong = '{"type":"pong"}'
            if frame.request_id is not None:
                pong = '{"type":"pong","requestId":' + dumps(frame.request_id) + "}"
            self.sink.send(conn, to_wire_bytes(pong))

    def _ack(self, conn: Conn, request_id: str | None) -> None:
        if request_id is not None:
            self.sink.send(
                conn, to_wire_bytes('{"type":"ack","requestId":' + dumps(request_id) + "}")
            )

    def _error(self, conn: Conn, code: str, request_id: str | None, message: str) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code}
        if request_id is not None:
            frame["requestId"] = request_id
        frame["message"] = message
        self.sink.send(conn, to_wire_bytes(dumps(frame)))

    def _channel_refusal(self, conn: Conn, channel: str, permission: str) -> tuple[str, str] | None:
        if is_reserved_channel(channel):
            return "channel_reserved", "channel uses a reserved prefix"
        if permission not in conn.principal.permissions:
            return "action_not_permitted", f"credential lacks the {permission} permission"
        if not conn.principal.scope.allows(channel):
            return "channel_not_authorized", "channel outside the credential's scope"
        return None

    def _over_quota(self, app: AppState, now: float) -> bool:
        quota = self.config.app_message_quota
        if quota is None:
            return False
        if now >= app.quota_reset_at:
            app.quota_used = 0
            app.quota_reset_at = now + self.config.quota_period
        if app.quota_used >= quota:
            return True
        app.quota_used += 1
        return False

    def _admit(self, conn: Conn, data: Any, request_id: str | None, now: float) -> bytes | None:
        """Encoded ``data`` ready to route, or None once refused.

        Oversize closes the connection with 1009; an exhausted quota is an error frame.
        Before anything from ``conn`` is routed, its pending joins are announced.
        """
        encoded = to_wire_bytes(dumps(data))
        if len(encoded) > self.config.max_message_size:
            self.close(conn, 1009, "message too big", now)
            return None
        if self._over_quota(conn.app, now):
            self._error(conn, "over_message_quota", request_id, _QUOTA_MESSAGE)
            return None
        self._flush_pending_of(conn, now)
        return encoded

    def _flush_pending_of(self, conn: Conn, now: float) -> None:
        # Nobody may hear from X before hearing that X joined.
        if conn.pending:
            for channel in list(conn.pending):
                self._flush(channel, now)

    def _publish(self, conn: Conn, frame: PublishFrame, now: float) -> None:
        refusal = self._channel_refusal(conn, frame.channel, "publish")
        if refusal is not None:
            self._error(conn, refusal[0], frame.request_id, refusal[1])
            return
        data = self._admit(conn, frame.data, frame.request_id, now)
        if data is None:
            return
        channel = conn.app.channels.get(frame.channel)
        if channel is not None and channel.subs:
            head = (
                b'{"type":"message","channel":'
                + to_wire_bytes(channel.name_json)
                + b',"from":'
                + conn.peer_json
                + b',"data":'
                + data
            )
            plain = head + b"}"
            if conn.meta_json is None:
                self.sink.fanout(channel.subs, plain)
            else:
                rich = head + b',"fromMetadata":' + to_wire_bytes(conn.meta_json) + b"}"
                self.sink.fanout([c for c, meta in channel.subs.items() if not meta], plain)
                self.sink.fanout([c for c, meta in channel.subs.items() if meta], rich)
            self.stats.deliveries += len(channel.subs)
        self._ack(conn, frame.request_id)

    def _send(self, conn: Conn, frame: SendFrame, now: float) -> None:
        if "send" not in conn.principal.permissions:
            self._error(
                conn,
                "action_not_permitted",
                frame.request_id,
                "credential lacks the send permission",
            )
            return
        target = conn.app.peers.get(frame.to)
        if target is None or not target.alive:
            self._error(conn, "peer_not_found", frame.request_id, "no such peer")
            return
        data = self._admit(conn, frame.data, frame.request_id, now)
        if data is None:
            return
        payload = b'{"type":"direct","from":' + conn.peer_json + b',"data":' + data
        if conn.meta_json is not None and target.sender_meta_subs > 0:
            payload += b',"fromMetadata":' + to_wire_bytes(conn.meta_json)
        self.sink.send(target, payload + b"}")
        self.stats.deliveries += 1
        self._ack(conn, frame.request_id)

    # --- subscriptions and presence --------------------------------------

    def _subscribe(self, conn: Conn, frame: SubscribeFrame, now: float) -> None:
        name = frame.channel
        refusal = self._channel_refusal(conn, name, "subscribe")
        if refusal is not None:
            self._error(conn, refusal[0], frame.request_id, refusal[1])
            return
        already = name in conn.subs
        if not already and len(conn.subs) >= self.config.max_subscriptions:
            self._error(conn, "channel_limit_exceeded", frame.request_id, "too many subscriptions")
            return
        app = conn.app
        channel = app.channels.get(name)
        if channel is None:
            channel = app.channels[name] = Channel(app, name, dumps(name))
        flag = frame.include_sender_metadata
        if already:
            conn.sender_meta_subs += int(flag) - int(conn.subs[name])
        else:
            conn.sender_meta_subs += int(flag)
        conn.subs[name] = flag
        channel.subs[conn] = flag
        snapshot: str | None = None
        if conn.presence:
            if already:
                snapshot = ",".join(c.entry for c in channel.members if c is not conn)
            else:
                if any(c is conn and not j for _, j, c in channel.events):
                    # A leave then a join in one window would cancel out; keep both visible.
                    self._flush(channel, now)
                snapshot = self._members_blob(channel)
                self._add_event(channel, True, conn, now)
                conn.pending.add(channel)
                channel.blob = (channel.blob + "," + conn.entry) if channel.blob else conn.entry
            channel.members[conn] = channel.seq
        self._ack(conn, frame.request_id)
        if snapshot is not None:
            self.sink.send(
                conn,
                to_wire_bytes(
                    '{"type":"presence","channel":'
                    + channel.name_json
                    + ',"joined":['
                    + snapshot
                    + '],"left":[]}'
                ),
            )

    def _members_blob(self, channel: Channel) -> str:
        if channel.blob is None:
            channel.blob = ",".join(c.entry for c in channel.members)
        return channel.blob

    def _unsubscribe(self, conn: Conn, name: str, now: float) -> None:
        flag = conn.subs.pop(name)
        conn.sender_meta_subs -= int(flag)
        channel = conn.app.channels[name]
        del channel.subs[conn]
        if channel.members.pop(conn, None) is not None:
            channel.blob = None
            self._add_event(channel, False, conn, now)
        if not channel.subs and not channel.events:
            del conn.app.channels[name]

    def _add_event(self, channel: Channel, joined: bool, conn: Conn, now: float) -> None:
        channel.seq += 1
        channel.events.append((channel.seq, joined, conn))
        if len(channel.events) >= self.config.presence_flush_events:
            self._flush(channel, now)
        elif channel.due is None:
            channel.due = now + self.config.presence_window
            heapq.heappush(self._presence_due, (channel.due, next(self._tie), channel))

    def _flush(self, channel: Channel, now: float) -> None:
        """Send a channel's pending presence deltas, each member the part it has not seen."""
        events = channel.events
        channel.events = []
        channel.due = None
        if not events:
            return
        for _, joined, conn in events:
            if joined:
                conn.pending.discard(channel)
        first_seq = events[0][0]
        groups: dict[int, list[Conn]] = {}
        for member, snap_seq in channel.members.items():
            groups.setdefault(snap_seq if snap_seq >= first_seq else 0, []).append(member)
        for snap_seq, recipients in groups.items():
            payload = self._delta_frame(channel, events, snap_seq)
            if payload is not None:
                self.sink.fanout(recipients, payload)
        if not channel.subs and channel.app.channels.get(channel.name) is channel:
            del channel.app.channels[channel.name]

    @staticmethod
    def _delta_frame(
        channel: Channel, events: list[tuple[int, bool, Conn]], after: int
    ) -> bytes | None:
        # A member's own events never fall after its snapshot, so it is never its own entry.
        first: dict[Conn, bool] = {}
        last: dict[Conn, bool] = {}
        for seq, joined, conn in events:
            if seq <= after:
                continue
            first.setdefault(conn, joined)
            last[conn] = joined
        joined_entries: list[str] = []
        left_entries: list[str] = []
        for conn, ends_joined in last.items():
            was_known = not first[conn]
            if ends_joined and not was_known:
                joined_entries.append(conn.entry)
            elif was_known and not ends_joined:
                left_entries.append(conn.entry)
        if not joined_entries and not left_entries:
            return None
        return to_wire_bytes(
            '{"type":"presence","channel":'
            + channel.name_json
            + ',"joined":['
            + ",".join(joined_entries)
            + '],"left":['
            + ",".join(left_entries)
            + "]}"
        )

    # --- time -------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Flush presence windows that are due and close connections whose token expired."""
        due = self._presence_due
        while due and due[0][0] <= now:
            when, _, channel = heapq.heappop(due)
            if channel.due == when:
                self._flush(channel, now)
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, conn_id = heapq.heappop(expiries)
            conn = self.conns.get(conn_id)
            if conn is not None:
                self.close(conn, 4002, "token expired", now)

    @property
    def has_deadlines(self) -> bool:
        """Whether any presence window or token expiry is pending (cheap: no heap clean-up)."""
        return bool(self._presence_due or self._expiries)

    def next_deadline(self) -> float | None:
        """When ``tick`` next has work, or None."""
        due = self._presence_due
        while due and due[0][2].due != due[0][0]:
            heapq.heappop(due)
        candidates = []
        if due:
            candidates.append(due[0][0])
        if self._expiries:
            candidates.append(float(self._expiries[0][0]))
        return min(candidates) if candidates else None
