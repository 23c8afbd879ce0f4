"""The sans-I/O half of a cluster node: the hub's ``Bus``, and what arrives from other nodes.

Everything a node says travels as a publish on a named stream:

- ``{prefix}:c:{app}:{channel}``: messages and presence events of one channel; only nodes
  with a local subscriber of that channel listen, so a message costs one publish for the
  whole cluster however many nodes and subscribers receive it;
- ``{prefix}:n:{node}``: what is meant for one node (directs, their outcome, member lists,
  admin replies);
- ``{prefix}:all``: what every node hears (member-list requests, admin requests).

A node sends on one ordered connection and listens on one, so what one node says reaches
each other node in the order it was said: a member's ``joined`` before its messages.

A payload is a JSON array (the header), a newline, and a body of raw bytes (message data or
an entry, already compact JSON, which holds no raw newline).

A transport (``memory.py`` in one process, ``redis.py`` over Redis) moves the ``Action``
values this class emits and hands what it receives to ``receive``.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...protocol import dumps, to_wire_bytes
from ..hub import Conn, Hub

log = logging.getLogger("metered_realtime.server.cluster")

NODE_ID_LENGTH = 4
SYNC_TIMEOUT = 1.0
DIRECT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Publish:
    """Send ``payload`` on stream ``name``."""

    name: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Listen:
    """Start (``on``) or stop listening to stream ``name``."""

    name: str
    on: bool


Action = Publish | Listen
RequestHandler = Callable[[str, Any], Any]
ReplyHandler = Callable[[str, str, Any], None]


@dataclass(slots=True)
class _SyncWait:
    request_id: str
    nodes: set[str]
    deadline: float
    stream: str
    asked: bool = False


@dataclass(slots=True)
class BrokerStats:
    """Counters for ``/metrics``."""

    published: int = 0
    received: int = 0
    lost: int = 0
    reconnects: int = 0
    lag: float = 0.0
    dropped_directs: int = 0


def _payload(header: list[Any], body: bytes = b"") -> bytes:
    return to_wire_bytes(dumps(header)) + b"\n" + body


class ClusterNode:
    """One node's view of the cluster; the hub's ``Bus``. No I/O, no clock of its own."""

    def __init__(
        self, hub: Hub, node: str, emit: Callable[[Action], None], prefix: str = "mr"
    ) -> None:
        self.hub = hub
        self.node = node
        self.prefix = prefix
        self._emit = emit
        self.live: set[str] = set()
        # While the transport is down nobody can be asked: subscribes go ahead at once.
        self.offline = False
        self.stats = BrokerStats()
        self.on_request: RequestHandler = lambda op, args: None
        self.on_reply: ReplyHandler = lambda request_id, node, result: None
        self._channels: dict[str, tuple[str, str]] = {}
        self._syncs: dict[str, _SyncWait] = {}
        self._pending_listens: dict[str, int] = {}
        self._directs: dict[int, tuple[int, str | None, float, str]] = {}
        self._ids = itertools.count(1)
        self.all_stream = f"{prefix}:all"
        self.node_stream = self.stream_of(node)
        hub.bus = self

    # --- names ------------------------------------------------------------------

    def stream_of(self, node: str) -> str:
        """The stream one node listens to for what is meant for it alone."""
        return f"{self.prefix}:n:{node}"

    def _channel_stream(self, app_id: str, channel: str) -> str:
        return f"{self.prefix}:c:{app_id}:{channel}"

    def _request_id(self) -> str:
        return f"{self.node}.{next(self._ids)}"

    def send(self, name: str, header: list[Any], body: bytes = b"") -> None:
        """Publish one payload."""
        self.stats.published += 1
        self._emit(Publish(name, _payload(header, body)))

    def start(self) -> list[str]:
        """The streams every node listens to from the start."""
        return [self.all_stream, self.node_stream]

    def hello(self) -> None:
        """Tell every node this one is here, before its heartbeat is next read."""
        self.send(self.all_stream, ["h", self.node])

    # --- Bus: what the hub says ---------------------------------------------------

    def publish(
        self, app_id: str, channel: str, sender: str, meta_json: str | None, data: bytes
    ) -> None:
        header = ["m", sender] if meta_json is None else ["m", sender, meta_json]
        self.send(self._channel_stream(app_id, channel), header, data)

    def presence(self, app_id: str, channel: str, joined: bool, peer_id: str, entry: str) -> None:
        self.send(
            self._channel_stream(app_id, channel),
            ["p", int(joined), peer_id],
            to_wire_bytes(entry),
        )

    def watch(self, app_id: str, channel: str) -> None:
        stream = self._channel_stream(app_id, channel)
        self._channels[stream] = (app_id, channel)
        self._syncs[stream] = _SyncWait(self._request_id(), set(), 0.0, stream)
        self._pending_listens[stream] = self._pending_listens.get(stream, 0) + 1
        self._emit(Listen(stream, True))

    def unwatch(self, app_id: str, channel: str) -> None:
        stream = self._channel_stream(app_id, channel)
        self._channels.pop(stream, None)
        self._syncs.pop(stream, None)
        self._pending_listens[stream] = self._pending_listens.get(stream, 0) + 1
        self._emit(Listen(stream, False))

    def direct(
        self,
        conn: Conn,
        request_id: str | None,
        to: str,
        meta_json: str | None,
        data: bytes,
        now: float,
    ) -> bool:
        owner = to[:NODE_ID_LENGTH]
        if owner not in self.live:
            return False
        token = next(self._ids)
        self._directs[token] = (conn.id, request_id, now + DIRECT_TIMEOUT, owner)
        self.send(
            self.stream_of(owner),
            ["d", conn.app.id, to, conn.peer_id, meta_json, token, self.node],
            data,
        )
        return True

    # --- transport events ---------------------------------------------------------

    def listening(self, name: str, now: float) -> None:
        """The transport confirms a ``Listen(name, True)`` (in the order they were asked)."""
        left = self._pending_listens.get(name, 0) - 1
        if left > 0:
            self._pending_listens[name] = left
            return
        self._pending_listens.pop(name, None)
        wait = self._syncs.get(name)
        if wait is not None and not wait.asked:
            self._ask_members(wait, now)

    def unlistened(self, name: str) -> None:
        """The transport confirms a ``Listen(name, False)``."""
        left = self._pending_listens.get(name, 0) - 1
        if left > 0:
            self._pending_listens[name] = left
        else:
            self._pending_listens.pop(name, None)

    def _ask_members(self, wait: _SyncWait, now: float) -> None:
        app_id, channel = self._channels[wait.stream]
        wait.asked = True
        wait.nodes = self.live - {self.node}
        wait.deadline = now + SYNC_TIMEOUT
        if not wait.nodes or self.offline:
            self._sync_finished(wait.stream, now)
            return
        self.send(self.all_stream, ["q", self.node, app_id, channel, wait.request_id])

    def _sync_finished(self, stream: str, now: float) -> None:
        self._syncs.pop(stream, None)
        target = self._channels.get(stream)
        if target is not None:
            self.hub.sync_done(target[0], target[1], now)

    def receive(self, name: str, payload: bytes, now: float) -> None:
        """One payload from stream ``name``; bad payloads are logged and dropped."""
        self.stats.received += 1
        head, _, body = payload.partition(b"\n")
        try:
            header = json.loads(head)
            kind = header[0]
            if name in self._channels:
                self._on_channel(name, kind, header, body, now)
            elif kind == "d":
                self._on_direct(header, body, now)
            elif kind == "r":
                self._on_direct_result(header)
            elif kind == "s":
                self._on_state(header, body, now)
            elif kind == "q":
                self._on_members_request(header)
            elif kind == "a":
                self._on_request(header, body)
            elif kind == "A":
                self.on_reply(header[1], header[2], json.loads(body))
            elif kind == "l":
                self.stats.lag = max(0.0, now - float(header[1]))
            elif kind == "h":
                self.live.add(header[1])
        except (ValueError, IndexError, TypeError, KeyError):
            log.warning("dropped a malformed cluster payload on %s", name)

    def _on_channel(self, name: str, kind: str, header: list[Any], body: bytes, now: float) -> None:
        app_id, channel = self._channels[name]
        if kind == "m":
            sender = header[1]
            if sender.startswith(self.node):
                return
            meta = header[2] if len(header) > 2 else None
            self.hub.remote_message(app_id, channel, sender, meta, body, now)
        elif kind == "p":
            peer_id = header[2]
            if not peer_id.startswith(self.node):
                entry = body.decode("utf-8")
                self.hub.remote_presence(app_id, channel, bool(header[1]), peer_id, entry, now)
        elif kind == "s":
            self._apply_state(app_id, channel, header[1], body, now)

    def _apply_state(self, app_id: str, channel: str, node: str, body: bytes, now: float) -> None:
        if node == self.node:
            return
        entries = {peer: dumps(entry) for peer, entry in json.loads(body).items()}
        self.hub.remote_state(app_id, channel, node, entries, now)

    def _on_members_request(self, header: list[Any]) -> None:
        _, node, app_id, channel, request_id = header
        if node == self.node:
            return
        self.send(
            self.stream_of(node),
            ["s", self.node, app_id, channel, request_id],
            self._members_body(app_id, channel),
        )

    def _members_body(self, app_id: str, channel: str) -> bytes:
        """This node's members of a channel as one JSON object, peer id to presence entry."""
        members = self.hub.local_state(app_id, channel)
        return to_wire_bytes("{" + ",".join(dumps(p) + ":" + e for p, e in members.items()) + "}")

    def _on_state(self, header: list[Any], body: bytes, now: float) -> None:
        _, node, app_id, channel, request_id = header
        stream = self._channel_stream(app_id, channel)
        if stream not in self._channels:
            return
        self._apply_state(app_id, channel, node, body, now)
        wait = self._syncs.get(stream)
        if wait is not None and wait.request_id == request_id:
            wait.nodes.discard(node)
            if not wait.nodes:
                self._sync_finished(stream, now)

    def _on_direct(self, header: list[Any], body: bytes, now: float) -> None:
        _, app_id, to, sender, meta, token, origin = header
        delivered = self.hub.remote_direct(app_id, to, sender, meta, body, now)
        self.send(self.stream_of(origin), ["r", token, int(delivered)])

    def _on_direct_result(self, header: list[Any]) -> None:
        pending = self._directs.pop(header[1], None)
        if pending is not None:
            self.hub.direct_result(pending[0], pending[1], bool(header[2]))

    # --- admin requests across the cluster ------------------------------------------

    def request(self, op: str, args: Any, node: str | None = None) -> str:
        """Ask every node (or one) to run admin operation ``op``; replies reach ``on_reply``."""
        request_id = self._request_id()
        stream = self.all_stream if node is None else self.stream_of(node)
        self.send(stream, ["a", self.node, request_id, op], to_wire_bytes(dumps(args)))
        return request_id

    def _on_request(self, header: list[Any], body: bytes) -> None:
        _, origin, request_id, op = header
        result = self.on_request(op, json.loads(body))
        self.send(
            self.stream_of(origin),
            ["A", request_id, self.node],
            to_wire_bytes(dumps(result)),
        )

    # --- membership of the cluster and time --------------------------------------------

    def set_live(self, nodes: set[str], now: float) -> None:
        """The nodes currently alive (self included); the others' members leave."""
        gone = self.live - nodes - {self.node}
        self.live = set(nodes) | {self.node}
        if gone:
            self._fail_directs(lambda owner, deadline: owner in gone)
        for node in gone:
            log.info("node %s is gone; its members leave", node)
            self.hub.node_gone(node, now)
            for stream, wait in list(self._syncs.items()):
                if wait.asked and node in wait.nodes:
                    wait.nodes.discard(node)
                    if not wait.nodes:
                        self._sync_finished(stream, now)

    def tick(self, now: float) -> None:
        """Give up on member lists and directs that did not come back in time."""
        for stream, wait in list(self._syncs.items()):
            if wait.asked and wait.deadline <= now:
                log.warning("no member list from %s in time", sorted(wait.nodes))
                self._sync_finished(stream, now)
        if self._directs:
            self._fail_directs(lambda owner, deadline: deadline <= now)

    def _fail_directs(self, which: Callable[[str, float], bool]) -> None:
        doomed = [
            t for t, (_, _, deadline, owner) in self._directs.items() if which(owner, deadline)
        ]
        for token in doomed:
            conn_id, request_id, _, _ = self._directs.pop(token)
            self.stats.dropped_directs += 1
            self.hub.direct_result(conn_id, request_id, False)

    def recover(self, now: float) -> None:
        """After the transport reconnected: listen again, re-announce and re-learn members.

        Other nodes may have declared this node gone, and events published while the
        transport was down are lost, so this node pushes its full member lists and asks
        everyone for theirs.
        """
        self._pending_listens.clear()
        for name in self.start():
            self._emit(Listen(name, True))
        for stream, (app_id, channel) in self._channels.items():
            self._pending_listens[stream] = self._pending_listens.get(stream, 0) + 1
            self._emit(Listen(stream, True))
            self.send(stream, ["s", self.node], self._members_body(app_id, channel))
            wait = self._syncs.get(stream)
            if wait is None:
                wait = self._syncs[stream] = _SyncWait(self._request_id(), set(), 0.0, stream)
            wait.asked = False

    def fail_pending(self, now: float) -> None:
        """The transport is down: directs in flight will not come back."""
        self._fail_directs(lambda owner, deadline: True)
