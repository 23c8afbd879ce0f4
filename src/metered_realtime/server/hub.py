"""The pure core of the server: apps, connections, channels, presence and routing.

No sockets, no asyncio, no clock: every call takes ``now`` and writes its output
frames (already encoded, encoded once per fan-out) to a ``Sink``.

In a cluster the hub also talks to a ``Bus``: what local connections do is told to the
other nodes, and what the other nodes tell arrives through the ``remote_*`` methods.
Members on other nodes are ``RemoteMember`` entries, so a snapshot lists the whole
channel. With no bus (one node) none of that code runs.

Presence frames stay within the SDKs' 1 MiB inbound cap (docs/self-hosting.md): a channel's
entries may add up to at most ``presence_budget`` bytes (a presence subscribe that would pass
it is refused), and a delta, or in a cluster race a snapshot, that would carry more is split
over several frames (see ``_presence_frames``).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeAlias

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
from ..protocol.limits import CLIENT_INBOUND_FRAME_CAP
from .auth import Principal, Refusal
from .config import ServerConfig


class Sink(Protocol):
    """Where the hub's output goes. Implementations must not call back into the hub."""

    def send(self, conn: Conn, payload: bytes) -> None: ...

    def fanout(self, conns: Iterable[Conn], payload: bytes) -> None: ...

    def close(self, conn: Conn, code: int, reason: str) -> None: ...


class Bus(Protocol):
    """What the hub tells the other nodes of a cluster (see ``broker/``).

    Every call only queues: the adapter sends in call order, so one node's presence
    events, messages and directs reach every other node in the order they happened.
    """

    node: str

    def publish(
        self, app_id: str, channel: str, sender: str, meta_json: str | None, data: bytes
    ) -> None:
        """A message published on a channel by a local connection."""

    def presence(self, app_id: str, channel: str, joined: bool, peer_id: str, entry: str) -> None:
        """A local member joined or left a channel."""

    def watch(self, app_id: str, channel: str) -> None:
        """A channel got its first local subscriber: listen, learn its members, then
        call ``Hub.sync_done``."""

    def unwatch(self, app_id: str, channel: str) -> None:
        """A channel lost its last local subscriber."""

    def direct(
        self,
        conn: Conn,
        request_id: str | None,
        to: str,
        meta_json: str | None,
        data: bytes,
        now: float,
    ) -> bool:
        """Route a ``send`` to a peer of another node; False when no live node owns ``to``.

        The outcome comes back through ``Hub.direct_result``.
        """


class RemoteMember:
    """A presence member that lives on another node.

    ``unannounced`` holds the channels whose deltas do not yet show it joined: they are
    flushed before any message from it is delivered here.
    """

    __slots__ = ("channels", "entry", "peer_id", "unannounced", "wire")

    def __init__(self, peer_id: str, entry: str) -> None:
        self.peer_id = peer_id
        self.entry = entry
        self.wire = to_wire_bytes(entry)
        self.channels: set[Channel] = set()
        self.unannounced: set[Channel] = set()

    def __repr__(self) -> str:
        return f"RemoteMember({self.peer_id!r})"


class Conn:
    """One live connection as the hub sees it.

    ``subs`` maps each subscribed channel's name to its ``WantsSenderMetadata`` and
    ``sender_meta_subs`` counts the True ones; ``unannounced`` holds the channels whose
    deltas do not yet show this connection joined (flushed before it publishes or sends).
    """

    __slots__ = (
        "alive",
        "app",
        "blocked",
        "entry",
        "handle",
        "id",
        "last_refill",
        "meta_json",
        "peer_id",
        "peer_json",
        "principal",
        "sender_meta_subs",
        "subs",
        "tokens",
        "unannounced",
        "wire",
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
        self.subs: dict[str, WantsSenderMetadata] = {}
        self.sender_meta_subs = 0
        self.unannounced: set[Channel] = set()
        self.tokens = 0.0
        self.last_refill = now
        # Frames held while a subscribe waits for the cluster to report a channel's members.
        self.blocked: list[ClientFrame | Malformed] | None = None
        meta = principal.peer_metadata
        self.meta_json: str | None = dumps(meta) if meta else None
        entry = '{"peerId":' + dumps(peer_id)
        if meta is not None:
            entry += ',"metadata":' + dumps(meta)
        self.entry = entry + "}"
        # The entry as it goes on the wire, so presence frames are joined and measured as bytes.
        self.wire = to_wire_bytes(self.entry)

    @property
    def presence(self) -> bool:
        """Whether this connection sees presence and is announced to others."""
        return "presence" in self.principal.permissions

    def __repr__(self) -> str:
        return f"Conn(id={self.id}, peer_id={self.peer_id!r}, app={self.app.id!r})"


Member: TypeAlias = "Conn | RemoteMember"

WantsSenderMetadata: TypeAlias = bool
"""A subscription's ``includeSenderMetadata``: its messages carry ``fromMetadata``."""

SnapshotSeq: TypeAlias = int
"""The channel's presence sequence a member's snapshot included: it sees only later events."""


class PresenceEvent(NamedTuple):
    """A member joined or left a channel; held until the channel's window is flushed."""

    seq: int
    joined: bool
    member: Member


@dataclass(eq=False, slots=True)
class Channel:
    """One channel of one app: subscribers, announced members and pending deltas.

    ``member_entries`` is the members' wire entries joined with commas (a snapshot's body),
    kept up to date as members join and rebuilt after a leave (``None`` until then);
    ``entry_bytes`` is what the presence budget counts: each member's wire entry plus one.
    """

    app: AppState
    name: str
    name_json: str
    subs: dict[Conn, WantsSenderMetadata] = field(default_factory=dict)
    members: dict[Conn, SnapshotSeq] = field(default_factory=dict)
    """The local members (subscribers with the presence permission)."""
    remote: dict[str, RemoteMember] = field(default_factory=dict)
    """The members of other nodes, by peer id."""
    events: list[PresenceEvent] = field(default_factory=list)
    seq: int = 0
    due: float | None = None
    member_entries: bytes | None = b""
    waiting: list[tuple[Conn, SubscribeFrame]] | None = None
    entry_bytes: int = 0
    name_wire: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        self.name_wire = to_wire_bytes(self.name_json)

    def add_entry(self, wire: bytes) -> None:
        """Append a joining member's entry to ``member_entries`` (unless that is stale)."""
        if self.member_entries is not None:
            self.member_entries = self.member_entries + b"," + wire if self.member_entries else wire


@dataclass(eq=False, slots=True)
class AppState:
    """Per-tenant routing state."""

    id: str
    peers: dict[str, Conn] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    remote_peers: dict[str, RemoteMember] = field(default_factory=dict)
    quota_used: int = 0
    quota_reset_at: float = 0.0
    quota_others: int = 0  # what the other nodes of a cluster used this period


_QUOTA_MESSAGE = "message quota exhausted"

# A presence frame, assembled from bytes: head, channel, joined, mid, left, end.
_P_HEAD = b'{"type":"presence","channel":'
_P_JOINED = b',"joined":['
_P_MID = b'],"left":['
_P_END = b"]}"
_P_ENVELOPE = len(_P_HEAD) + len(_P_JOINED) + len(_P_MID) + len(_P_END)


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

    def __init__(self, config: ServerConfig, sink: Sink, bus: Bus | None = None) -> None:
        self.config = config
        self.sink = sink
        self.bus = bus
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
        if principal.closes_at is not None:
            heapq.heappush(self._expiries, (principal.closes_at, conn.id))
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
        conn.blocked = None
        for name in list(conn.subs):
            self._unsubscribe(conn, name, now)
        conn.unannounced.clear()
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
        return 0 if app is None else self._close_all(list(app.peers.values()), code, reason, now)

    def close_credential(self, credential_id: str, code: int, reason: str, now: float) -> int:
        """Close every connection opened with one key or signing key. Returns how many."""
        victims = [c for c in self.conns.values() if c.principal.credential_id == credential_id]
        return self._close_all(victims, code, reason, now)

    def _close_all(self, victims: list[Conn], code: int, reason: str, now: float) -> int:
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
        if conn.blocked is not None:
            conn.blocked.append(frame)
            return
        self._dispatch(conn, frame, now)

    def _dispatch(self, conn: Conn, frame: ClientFrame | Malformed, now: float) -> None:
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

    def roll_quota(self, app: AppState, now: float) -> None:
        """Start a new quota period for ``app`` when the current one is over."""
        if now >= app.quota_reset_at:
            period = self.config.quota_period
            app.quota_used = app.quota_others = 0
            # A cluster counts in periods aligned to the clock, so every node counts the same one.
            app.quota_reset_at = now + period if self.bus is None else (now // period + 1) * period

    def _over_quota(self, app: AppState, now: float) -> bool:
        quota = self.config.app_message_quota
        if quota is None:
            return False
        self.roll_quota(app, now)
        if app.quota_used + app.quota_others >= quota:
            return True
        app.quota_used += 1
        return False

    def _admit(self, conn: Conn, data: Any, request_id: str | None, now: float) -> bytes | None:
        """Encoded ``data`` ready to route, or None once refused.

        Oversize closes the connection with 1009; an exhausted quota is an error frame.
        Before anything from ``conn`` is routed, its pending joins are announced.
        """
        try:
            encoded = to_wire_bytes(dumps(data))
        except (ValueError, RecursionError):  # nested deeper than the encoder can recurse
            self._error(conn, "malformed_message", request_id, "data cannot be encoded")
            return None
        if len(encoded) > self.config.max_message_size:
            self.close(conn, 1009, "message too big", now)
            return None
        if self._over_quota(conn.app, now):
            self._error(conn, "over_message_quota", request_id, _QUOTA_MESSAGE)
            return None
        self._announce_joins_of(conn, now)
        return encoded

    def _announce_joins_of(self, conn: Conn, now: float) -> None:
        # Nobody may hear from X before hearing that X joined.
        if conn.unannounced:
            for channel in list(conn.unannounced):
                self._flush(channel, now)

    def _publish(self, conn: Conn, frame: PublishFrame, now: float) -> None:
        refusal = self._channel_refusal(conn, frame.channel, "publish")
        if refusal is not None:
            self._error(conn, refusal[0], frame.request_id, refusal[1])
            return
        data = self._admit(conn, frame.data, frame.request_id, now)
        if data is None:
            return
        if self.bus is not None:  # first, so the other nodes fan out while this one does
            self.bus.publish(conn.app.id, frame.channel, conn.peer_id, conn.meta_json, data)
        channel = conn.app.channels.get(frame.channel)
        if channel is not None and channel.subs:
            self._deliver(channel, conn.peer_json, conn.meta_json, data)
        self._ack(conn, frame.request_id)

    def _deliver(
        self, channel: Channel, peer_json: bytes, meta_json: str | None, data: bytes
    ) -> None:
        head = (
            b'{"type":"message","channel":'
            + to_wire_bytes(channel.name_json)
            + b',"from":'
            + peer_json
            + b',"data":'
            + data
        )
        plain = head + b"}"
        if meta_json is None:
            self.sink.fanout(channel.subs, plain)
        else:
            rich = head + b',"fromMetadata":' + to_wire_bytes(meta_json) + b"}"
            self.sink.fanout([c for c, meta in channel.subs.items() if not meta], plain)
            self.sink.fanout([c for c, meta in channel.subs.items() if meta], rich)
        self.stats.deliveries += len(channel.subs)

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
            bus = self.bus
            if bus is None or frame.to.startswith(bus.node):
                self._error(conn, "peer_not_found", frame.request_id, "no such peer")
                return
            data = self._admit(conn, frame.data, frame.request_id, now)
            if data is not None and not bus.direct(
                conn, frame.request_id, frame.to, conn.meta_json, data, now
            ):
                self._error(conn, "peer_not_found", frame.request_id, "no such peer")
            return
        data = self._admit(conn, frame.data, frame.request_id, now)
        if data is None:
            return
        self._deliver_direct(target, conn.peer_json, conn.meta_json, data)
        self._ack(conn, frame.request_id)

    def _deliver_direct(
        self, target: Conn, peer_json: bytes, meta_json: str | None, data: bytes
    ) -> None:
        payload = b'{"type":"direct","from":' + peer_json + b',"data":' + data
        if meta_json is not None and target.sender_meta_subs > 0:
            payload += b',"fromMetadata":' + to_wire_bytes(meta_json)
        self.sink.send(target, payload + b"}")
        self.stats.deliveries += 1

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
            if self.bus is not None:
                channel.waiting = []
                self.bus.watch(app.id, name)
        if channel.waiting is not None:
            # Until the cluster has told us the channel's members, this connection waits.
            channel.waiting.append((conn, frame))
            conn.blocked = []
            return
        if (
            conn.presence
            and not already
            and channel.entry_bytes + len(conn.wire) + 1 > self.config.presence_budget
        ):
            # Admitting this member would make the channel's snapshot too big for the SDKs.
            # Only this subscribe is refused: the connection and its other channels go on.
            self._error(conn, "channel_limit_exceeded", frame.request_id, "presence channel full")
            if not channel.subs and self.bus is None:
                self._release(channel)  # a channel made for this subscribe alone
            return
        flag = frame.include_sender_metadata
        if already:
            conn.sender_meta_subs += int(flag) - int(conn.subs[name])
        else:
            conn.sender_meta_subs += int(flag)
        conn.subs[name] = flag
        channel.subs[conn] = flag
        snapshot: list[bytes] | None = None
        if conn.presence:
            if already:
                snapshot = self._presence_frames(channel, self._member_wires(channel, conn), [])
            else:
                if any(c is conn and not j for _, j, c in channel.events):
                    # A leave then a join in one window would cancel out; keep both visible.
                    self._flush(channel, now)
                snapshot = self._snapshot(channel)
                self._add_event(channel, True, conn, now)
                conn.unannounced.add(channel)
                channel.add_entry(conn.wire)
                channel.entry_bytes += len(conn.wire) + 1
                if self.bus is not None:
                    self.bus.presence(app.id, name, True, conn.peer_id, conn.entry)
            channel.members[conn] = channel.seq
        self._ack(conn, frame.request_id)
        if snapshot is not None:
            # The first frame is the snapshot; more follow, as joined-only deltas, only when
            # cluster nodes admitted members concurrently past the budget.
            for payload in snapshot:
                self.sink.send(conn, payload)

    def _member_entries(self, channel: Channel) -> bytes:
        if channel.member_entries is None:
            channel.member_entries = b",".join(self._member_wires(channel))
        return channel.member_entries

    @staticmethod
    def _member_wires(channel: Channel, leave_out: Conn | None = None) -> list[bytes]:
        """Every member's wire entry, local then remote (without ``leave_out``)."""
        entries = [c.wire for c in channel.members if c is not leave_out]
        entries.extend(m.wire for m in channel.remote.values())
        return entries

    def _snapshot(self, channel: Channel) -> list[bytes]:
        """Every member of the channel, for a subscriber not yet among them."""
        body = self._member_entries(channel)
        if len(body) <= self._presence_room(channel):
            return [self._presence_frame(channel, body, b"")]
        return self._presence_frames(channel, self._member_wires(channel), [])

    def _presence_room(self, channel: Channel) -> int:
        """Bytes of entries, separators included, that one presence frame may carry.

        Frames are measured as UTF-8 bytes. The JavaScript SDK compares the decoded string's
        length in UTF-16 code units instead, and that is never larger: a code point takes
        1 to 3 UTF-8 bytes and 1 UTF-16 unit below U+10000, 4 bytes and 2 units above (and
        the escapes ``to_wire_bytes`` may write are ASCII, one byte and one unit each). So a
        frame of at most 1 MiB bytes is at most 1 MiB units too.
        """
        envelope = _P_ENVELOPE + len(channel.name_wire)
        return min(self.config.presence_budget, CLIENT_INBOUND_FRAME_CAP - envelope)

    @staticmethod
    def _presence_frame(channel: Channel, joined: bytes, left: bytes) -> bytes:
        return _P_HEAD + channel.name_wire + _P_JOINED + joined + _P_MID + left + _P_END

    def _presence_frames(
        self, channel: Channel, joined: list[bytes], left: list[bytes]
    ) -> list[bytes]:
        """``joined`` and ``left`` in as few frames as fit the room (at least one frame).

        A frame holds net changes (each peer at most once), so the SDKs may apply its parts
        in any order: splitting them over consecutive frames changes nothing they see.
        """
        room = self._presence_room(channel)
        if sum(map(len, joined)) + sum(map(len, left)) + len(joined) + len(left) <= room:
            return [self._presence_frame(channel, b",".join(joined), b",".join(left))]
        frames: list[bytes] = []
        parts: tuple[list[bytes], list[bytes]] = ([], [])
        used = 0
        for side, entries in enumerate((joined, left)):
            for entry in entries:
                cost = len(entry) + 1
                if cost > room:
                    # No frame the SDKs accept can hold it. Unreachable while every node
                    # uses the same peer_metadata_limit (config keeps the budget above it
                    # and a local member this big is refused); never send an oversized frame.
                    continue
                if used + cost > room and (parts[0] or parts[1]):
                    frames.append(
                        self._presence_frame(channel, b",".join(parts[0]), b",".join(parts[1]))
                    )
                    parts = ([], [])
                    used = 0
                parts[side].append(entry)
                used += cost
        if parts[0] or parts[1] or not frames:
            frames.append(self._presence_frame(channel, b",".join(parts[0]), b",".join(parts[1])))
        return frames

    def _unsubscribe(self, conn: Conn, name: str, now: float) -> None:
        flag = conn.subs.pop(name)
        conn.sender_meta_subs -= int(flag)
        app = conn.app
        channel = app.channels[name]
        del channel.subs[conn]
        if channel.members.pop(conn, None) is not None:
            channel.member_entries = None
            channel.entry_bytes -= len(conn.wire) + 1
            self._add_event(channel, False, conn, now)
            if self.bus is not None:
                self.bus.presence(app.id, name, False, conn.peer_id, conn.entry)
        if not channel.subs:
            self._release(channel)

    def _release(self, channel: Channel) -> None:
        """A channel with no local subscriber left: forget it once nothing is pending."""
        app = channel.app
        if channel.waiting or app.channels.get(channel.name) is not channel:
            return
        if self.bus is not None:
            # Nobody here listens any more; a later subscribe learns the members afresh.
            for member in list(channel.remote.values()):
                self._drop_remote(channel, member)
            self.bus.unwatch(app.id, channel.name)
        elif channel.events:
            return
        del app.channels[channel.name]

    def _add_event(self, channel: Channel, joined: bool, conn: Member, now: float) -> None:
        channel.seq += 1
        channel.events.append(PresenceEvent(channel.seq, joined, conn))
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
                conn.unannounced.discard(channel)
        first_seq = events[0][0]
        groups: dict[int, list[Conn]] = {}
        for member, snap_seq in channel.members.items():
            groups.setdefault(snap_seq if snap_seq >= first_seq else 0, []).append(member)
        for snap_seq, recipients in groups.items():
            for payload in self._delta_frames(channel, events, snap_seq):
                self.sink.fanout(recipients, payload)
        if not channel.subs:
            self._release(channel)

    def _delta_frames(
        self, channel: Channel, events: list[PresenceEvent], after: int
    ) -> list[bytes]:
        """The net change after sequence ``after``: no frame, one, or several when big."""
        # A member's own events never fall after its snapshot, so it is never its own entry.
        first: dict[Member, bool] = {}
        last: dict[Member, bool] = {}
        for seq, joined, conn in events:
            if seq <= after:
                continue
            first.setdefault(conn, joined)
            last[conn] = joined
        joined_entries: list[bytes] = []
        left_entries: list[bytes] = []
        for conn, ends_joined in last.items():
            was_known = not first[conn]
            if ends_joined and not was_known:
                joined_entries.append(conn.wire)
            elif was_known and not ends_joined:
                left_entries.append(conn.wire)
        if not joined_entries and not left_entries:
            return []
        return self._presence_frames(channel, joined_entries, left_entries)

    # --- the cluster: what other nodes report ----------------------------------

    def sync_done(self, app_id: str, name: str, now: float) -> None:
        """The members of a watched channel are known: admit the subscribes that waited."""
        app = self.apps.get(app_id)
        channel = app.channels.get(name) if app is not None else None
        if channel is None or channel.waiting is None:
            return
        waiting, channel.waiting = channel.waiting, None
        for conn, frame in waiting:
            if conn.alive:
                held = conn.blocked or []
                conn.blocked = None
                self._subscribe(conn, frame, now)
                self._replay(conn, held, now)
        if not channel.subs:
            self._release(channel)

    def _replay(self, conn: Conn, held: list[ClientFrame | Malformed], now: float) -> None:
        for index, frame in enumerate(held):
            if not conn.alive:
                return
            if conn.blocked is not None:  # blocked again, by another subscribe
                conn.blocked.extend(held[index:])
                return
            self._dispatch(conn, frame, now)

    def _remote_channel(self, app_id: str, name: str) -> Channel | None:
        app = self.apps.get(app_id)
        return app.channels.get(name) if app is not None else None

    def remote_message(
        self,
        app_id: str,
        name: str,
        sender: str,
        meta_json: str | None,
        data: bytes,
        now: float,
    ) -> None:
        """A message another node's connection published: frame it once for local subscribers."""
        channel = self._remote_channel(app_id, name)
        if channel is None or not channel.subs:
            return
        self._announce_joins_of_remote(channel.app, sender, now)
        self._deliver(channel, to_wire_bytes(dumps(sender)), meta_json, data)

    def remote_direct(
        self,
        app_id: str,
        to: str,
        sender: str,
        meta_json: str | None,
        data: bytes,
        now: float,
    ) -> bool:
        """A ``send`` from another node to a local peer. False when there is no such peer."""
        app = self.apps.get(app_id)
        target = app.peers.get(to) if app is not None else None
        if app is None or target is None or not target.alive:
            return False
        self._announce_joins_of_remote(app, sender, now)
        self._deliver_direct(target, to_wire_bytes(dumps(sender)), meta_json, data)
        return True

    def direct_result(self, conn_id: int, request_id: str | None, delivered: bool) -> None:
        """What became of a ``send`` routed to another node: ack it or say the peer is gone."""
        conn = self.conns.get(conn_id)
        if conn is None:
            return
        if delivered:
            self._ack(conn, request_id)
        else:
            self._error(conn, "peer_not_found", request_id, "no such peer")

    def _announce_joins_of_remote(self, app: AppState, sender: str, now: float) -> None:
        member = app.remote_peers.get(sender)
        if member is not None and member.unannounced:
            for channel in list(member.unannounced):
                self._flush(channel, now)

    def remote_presence(
        self, app_id: str, name: str, joined: bool, peer_id: str, entry: str, now: float
    ) -> None:
        """A member of another node joined or left a channel this node listens to."""
        channel = self._remote_channel(app_id, name)
        if channel is None:
            return
        if joined:
            self._add_remote(channel, peer_id, entry, now)
        else:
            member = channel.remote.get(peer_id)
            if member is not None:
                self._remove_remote(channel, member, now)

    def remote_state(
        self, app_id: str, name: str, node: str, entries: dict[str, str], now: float
    ) -> None:
        """Everything one node has in a channel: replaces what this node knew of it."""
        channel = self._remote_channel(app_id, name)
        if channel is None:
            return
        for peer_id, member in list(channel.remote.items()):
            if peer_id.startswith(node) and peer_id not in entries:
                self._remove_remote(channel, member, now)
        for peer_id, entry in entries.items():
            if peer_id not in channel.remote and peer_id.startswith(node):
                self._add_remote(channel, peer_id, entry, now)

    def node_gone(self, node: str, now: float) -> None:
        """A node stopped: each of its members leaves every channel here."""
        for app in self.apps.values():
            for peer_id, member in list(app.remote_peers.items()):
                if peer_id.startswith(node):
                    for channel in list(member.channels):
                        self._remove_remote(channel, member, now)

    def local_state(self, app_id: str, name: str) -> dict[str, str]:
        """This node's announced members of a channel, peer id to presence entry."""
        channel = self._remote_channel(app_id, name)
        if channel is None:
            return {}
        return {conn.peer_id: conn.entry for conn in channel.members}

    def watched(self) -> list[tuple[str, str]]:
        """Every (app, channel) with a local subscriber or a subscribe waiting."""
        return [(app.id, name) for app in self.apps.values() for name in app.channels]

    def _add_remote(self, channel: Channel, peer_id: str, entry: str, now: float) -> None:
        if peer_id in channel.remote:
            return
        app = channel.app
        member = app.remote_peers.get(peer_id)
        if member is None:
            member = app.remote_peers[peer_id] = RemoteMember(peer_id, entry)
        # Keep a leave and a rejoin in one window both visible. By peer id: the leave may have
        # dropped the member's last channel here, and with it the object the event holds.
        if any(m.peer_id == peer_id and not j for _, j, m in channel.events):
            self._flush(channel, now)
        channel.remote[peer_id] = member
        member.channels.add(channel)
        member.unannounced.add(channel)
        # Members admitted by other nodes are counted, never refused: they are in already.
        channel.entry_bytes += len(member.wire) + 1
        channel.add_entry(member.wire)
        self._add_event(channel, True, member, now)

    def _remove_remote(self, channel: Channel, member: RemoteMember, now: float) -> None:
        self._drop_remote(channel, member)
        self._add_event(channel, False, member, now)

    def _drop_remote(self, channel: Channel, member: RemoteMember) -> None:
        del channel.remote[member.peer_id]
        channel.member_entries = None
        channel.entry_bytes -= len(member.wire) + 1
        member.channels.discard(channel)
        member.unannounced.discard(channel)
        if not member.channels:
            app = channel.app
            if app.remote_peers.get(member.peer_id) is member:
                del app.remote_peers[member.peer_id]

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
