"""Process wiring: the WebSocket endpoint, HTTP routes, timers and graceful drain."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ..protocol import decode_client_frame, dumps, to_wire_bytes
from .admin import AdminApi, ClusterAdmin
from .auth import Principal, Refusal, authenticate
from .broker.node import NODE_ID_LENGTH
from .config import ServerConfig
from .endpoint import Endpoint, Listener, header_values
from .forwarded import TrustedProxies
from .front import ConnectRateLimiter, HttpResponse
from .hub import Conn, Hub
from .keycache import KeyCache
from .logs import endpoint_logger
from .metrics import Metrics
from .outbound import CorkedSink
from .store import Store, open_store, random_base62
from .tls import server_tls_context
from .turn import welcome_metadata

if TYPE_CHECKING:
    from .broker.redis import RedisBroker

log = logging.getLogger("metered_realtime.server")
PEER_ID_LENGTH = 20
LINE_ROOM = 1024
"""An upgrade's request line beyond its token: ``GET /v1?token=`` and the HTTP version."""


class Server:
    """One server node. ``await start()``, then ``await drain()`` or ``await stop()``."""

    def __init__(self, config: ServerConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store if store is not None else open_store(config.db)
        self._owns_store = store is None
        self.keys = KeyCache(self.store)
        self.hub = Hub(config, CorkedSink(config.outbound_buffer_limit, self.evict_slow))
        self.broker: RedisBroker | None = None
        self._node_admin = ClusterAdmin(self)
        self.node_id = random_base62(NODE_ID_LENGTH)
        self.draining = False
        self.stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._evicting: set[Conn] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.port: int = config.port
        self.admin_port: int | None = None
        self.metrics = Metrics(self)
        api = AdminApi(self)
        separate = config.admin_port is not None
        logger = endpoint_logger()
        self.listener = Listener(
            api.routes(admin=not separate),
            logger,
            handshake_timeout=config.handshake_timeout,
            # A token may be percent-encoded (at most 3 bytes a character).
            line_limit=3 * config.max_token_length + LINE_ROOM,
            max_size=config.max_message_size + config.envelope_room,
            admit=self._admit,
            opened=self._opened,
            closed=self._closed,
        )
        self.admin_listener: Listener | None = None
        if separate:
            # The same front door, plain HTTP only: no connection is ever upgraded here.
            self.admin_listener = Listener(
                api.routes(), logger, handshake_timeout=config.handshake_timeout, websocket=False
            )
        self._limiter = (
            None
            if config.ip_connect_rate is None
            else ConnectRateLimiter(
                config.ip_connect_rate,
                config.ip_connect_burst,
                max_entries=config.ip_table_size,
                exempt=config.ip_connect_exempt,
            )
        )
        # Upgrades admitted and not yet closed (what max_connections counts).
        self._upgrades = 0
        self._proxies = TrustedProxies(config.trusted_proxies)
        # Read now, so a bad certificate or key stops the server before it binds.
        self._tls: dict[str, Any] = {}
        if config.tls_cert is not None and config.tls_key is not None:
            self._tls = {
                "ssl": server_tls_context(config.tls_cert, config.tls_key),
                "ssl_handshake_timeout": config.handshake_timeout,
            }
        if config.reuse_port:
            self._tls["reuse_port"] = True

    # --- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        """Join the cluster (when Redis is configured), bind and start serving."""
        cfg = self.config
        if cfg.redis is not None:
            from .broker.redis import RedisBroker  # the redis extra is needed only here

            self.broker = RedisBroker(
                self.hub,
                cfg.redis,
                self.node_id,
                prefix=cfg.redis_prefix,
                on_input=self._reschedule,
                info={"host": cfg.host, "port": cfg.port, "pid": os.getpid()},
            )
            self.broker.node.on_request = self._node_admin.handle
            await self.broker.start()
        self.spawn(self._refresh_keys())
        self.spawn(self._node_admin.sample_forever())
        server = await self.listener.serve(cfg.host, cfg.port, **self._tls)
        if cfg.ws_ping_interval is not None:
            timeout = cfg.ws_ping_timeout
            self.listener.keepalive(
                cfg.ws_ping_interval, float("inf") if timeout is None else timeout
            )
        self.port = server.sockets[0].getsockname()[1]
        log.info("listening on %s:%d", cfg.host, self.port)
        if self.admin_listener is not None and cfg.admin_port is not None:
            try:
                admin = await self.admin_listener.serve(cfg.admin_host, cfg.admin_port, **self._tls)
            except OSError:
                await self.listener.close()
                raise
            self.admin_port = admin.sockets[0].getsockname()[1]
            log.info("admin API on %s:%d", cfg.admin_host, self.admin_port)

    async def stop(self) -> None:
        """Close every connection (1001), leave the cluster and stop at once."""
        await self.listener.close()
        if self.admin_listener is not None:
            await self.admin_listener.close()
        if self._timer is not None:
            self._timer.cancel()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:  # a drain asked for by the admin API runs stop() itself
                task.cancel()
        if self.broker is not None:
            await self.broker.stop()
        if self._owns_store:
            self.store.close()
        self.stopped.set()

    async def drain(self) -> None:
        """going_away to everyone, refuse new upgrades, close with 1001 after the grace period."""
        cfg = self.config
        self.draining = True
        if cfg.reuse_port:
            # Let the other processes on this port take the new connections.
            self.listener.stop_listening()
        going_away = to_wire_bytes(
            dumps({"type": "going_away", "retryAfterMs": cfg.going_away_retry_ms})
        )
        self.hub.broadcast_all(going_away)
        if self.hub.conns:
            await asyncio.sleep(cfg.drain_grace)
        now = time.time()
        closing = [c.handle for c in self.hub.conns.values()]
        for conn in list(self.hub.conns.values()):
            self.hub.close(conn, 1001, "server draining", now)
        if closing:
            await asyncio.wait(
                [asyncio.ensure_future(endpoint.wait_closed()) for endpoint in closing],
                timeout=cfg.drain_timeout,
            )
        await self.stop()

    def spawn(self, coro: Any) -> None:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def evict_slow(self, conn: Conn) -> None:
        """Close a connection whose outbound buffer passed the limit; others are unaffected."""
        # Every write of a fan-out may find the buffer over the limit before the close runs.
        if conn.alive and conn not in self._evicting:
            self._evicting.add(conn)
            endpoint: Endpoint = conn.handle
            log.warning("evicting slow consumer %s from %s", conn.peer_id, endpoint.client_host)
            asyncio.get_running_loop().call_soon(self._evict, conn)

    def _evict(self, conn: Conn) -> None:
        self._evicting.discard(conn)
        self.hub.close(conn, 1008, "slow consumer", time.time())
        self._reschedule()

    # --- upgrades -----------------------------------------------------------

    def _admit(self, endpoint: Endpoint, headers: list[tuple[bytes, bytes]]) -> HttpResponse | None:
        # Refusals here cost no handshake: the SDKs retry an HTTP error on reconnect.
        if self.draining:
            return HttpResponse.text(503, "draining\n")
        assert endpoint.transport is not None
        peer = endpoint.transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else str(peer or "")
        if self._proxies:
            host = self._proxies.client_address(host, header_values(headers, "x-forwarded-for"))
        endpoint.client_host = host
        if self._limiter is not None and not self._limiter.allow(host):
            return self._refuse(endpoint, 429, "connecting too often")
        limit = self.config.max_connections
        if limit is not None and self._upgrades >= limit:
            return self._refuse(endpoint, 503, "server full")
        self._upgrades += 1
        return None

    def _refuse(self, endpoint: Endpoint, status: int, text: str) -> HttpResponse:
        self.hub.stats.count(self.hub.stats.refusals, status)
        log.debug("refused a connection from %s: %s", endpoint.client_host, text)
        return HttpResponse.text(status, text + "\n")

    def _opened(self, endpoint: Endpoint, headers: list[tuple[bytes, bytes]]) -> None:
        target = endpoint.target or ""
        query = parse_qs(urlsplit(target).query, keep_blank_values=True)
        keys, tokens = query.get("key", []), query.get("token", [])
        origins = header_values(headers, "origin")
        endpoint.target = None  # the credential's copy (a JWT may be KiBs)
        now = time.time()
        if endpoint.oversized or any(len(t) > self.config.max_token_length for t in tokens):
            # Refused after the upgrade, so the SDKs see 4001 and stop (a dropped
            # connection, or an HTTP error, they would retry forever).
            self.hub.stats.count(self.hub.stats.refusals, 4001)
            endpoint.close(4001, "token too long" if tokens else "request line too long")
            return
        if len(keys) + len(tokens) != 1:
            endpoint.close(4001, "exactly one of key or token is required")
            return
        principal = authenticate(
            self.keys,
            key=keys[0] if keys else None,
            token=tokens[0] if tokens else None,
            origin=origins[0] if origins else None,
            now=now,
            peer_metadata_limit=self.config.peer_metadata_limit,
            leeway=self.config.jwt_leeway,
        )
        if isinstance(principal, Refusal):
            self.hub.stats.count(self.hub.stats.refusals, principal.code)
            endpoint.close(principal.code, principal.reason)
            return
        if self.config.max_connections_per_app is not None and self.broker is not None:
            self.spawn(self._admit_in_cluster(endpoint, principal))
            return
        self._connect(endpoint, principal, now)

    async def _admit_in_cluster(self, endpoint: Endpoint, principal: Principal) -> None:
        assert self.broker is not None and self.config.max_connections_per_app is not None
        admitted = await self.broker.admit(principal.app_id, self.config.max_connections_per_app)
        if not admitted:
            self.hub.stats.count(self.hub.stats.refusals, 4010)
            endpoint.close(4010, "over concurrent connection limit")
            return
        if not endpoint.is_open:
            await self.broker.release(principal.app_id)
            return
        self._connect(endpoint, principal, time.time())

    def _connect(self, endpoint: Endpoint, principal: Principal, now: float) -> None:
        app_peers = self.hub.apps.get(principal.app_id)
        peer_id = self._peer_id()
        while app_peers is not None and peer_id in app_peers.peers:
            peer_id = self._peer_id()
        conn = self.hub.connect(
            peer_id,
            principal,
            endpoint,
            now,
            welcome_metadata(self.config, principal.metadata, peer_id, now),
        )
        if isinstance(conn, Refusal):
            endpoint.close(conn.code, conn.reason)
            self._release(principal.app_id)
            return
        log.debug("peer %s connected from %s", peer_id, endpoint.client_host)
        endpoint.session = conn
        self._reschedule()
        hub = self.hub

        def receive(message: str | bytes) -> None:
            hub.receive(conn, decode_client_frame(message), time.time())
            if hub.has_deadlines:
                self._reschedule()

        endpoint.deliver_to(receive)

    def _closed(self, endpoint: Endpoint) -> None:
        self._upgrades -= 1
        session = endpoint.session
        endpoint.session = None
        if isinstance(session, Conn):
            self.hub.disconnect(session, time.time())
            self._reschedule()
            self._release(session.principal.app_id)

    def _release(self, app_id: str) -> None:
        # A connection counted against its app's cluster-wide limit is uncounted.
        if self.config.max_connections_per_app is not None and self.broker is not None:
            self.spawn(self.broker.release(app_id))

    def _peer_id(self) -> str:
        # In a cluster a peer id starts with its node's id, so a send finds the node at once.
        if self.broker is None:
            return random_base62(PEER_ID_LENGTH)
        return self.node_id + random_base62(PEER_ID_LENGTH - NODE_ID_LENGTH)

    # --- keys ---------------------------------------------------------------

    async def _refresh_keys(self) -> None:
        while True:
            await asyncio.sleep(self.config.store_refresh)
            try:
                self.reload_keys()
            except Exception:
                log.warning("could not reload keys from the store", exc_info=True)

    def reload_keys(self) -> int:
        """Re-read apps and keys; close sessions of what was revoked or suspended.

        Returns how many sessions were closed.
        """
        cut = self.keys.reload()
        now = time.time()
        closed = 0
        for app_id in cut.apps:
            closed += self.hub.close_app(app_id, 4012, "account suspended", now)
        for credential in cut.credentials:
            closed += self.hub.close_credential(credential, 4001, "credential revoked", now)
        if closed:
            self._reschedule()
        return closed

    async def gather(self, op: str, args: Any, node: str | None = None) -> dict[str, Any]:
        """Run an admin operation on every node of the cluster (or one): node id -> result."""
        if self.broker is None:
            if node is not None and node != self.node_id:
                return {}
            return {self.node_id: self._node_admin.handle(op, args)}
        return await self.broker.ask(op, args, node)

    # --- timers -----------------------------------------------------------

    def _reschedule(self) -> None:
        deadline = self.hub.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = deadline
        self._timer = loop.call_later(max(0.0, deadline - time.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.hub.tick(time.time())
        self._reschedule()
