"""Process wiring: the WebSocket endpoint, HTTP routes, timers and graceful drain."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from ..protocol import decode_client_frame, dumps, to_wire_bytes
from .admin import AdminApi, ClusterAdmin
from .auth import Refusal, authenticate
from .broker.node import NODE_ID_LENGTH
from .config import ServerConfig
from .forwarded import TrustedProxies
from .front import ConnectRateLimiter, FrontConnection
from .hub import Conn, Hub
from .keycache import KeyCache
from .logs import websockets_logger
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
        self.hub = Hub(
            config, CorkedSink(config.outbound_buffer_limit, self.evict_slow, self.spawn)
        )
        self.broker: RedisBroker | None = None
        self._node_admin = ClusterAdmin(self)
        self.node_id = random_base62(NODE_ID_LENGTH)
        self.draining = False
        self.stopped = asyncio.Event()
        self._ws: WsServer | None = None
        self._admin_ws: WsServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._evicting: set[Conn] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.port: int = config.port
        self.admin_port: int | None = None
        self.metrics = Metrics(self)
        api = AdminApi(self)
        separate = config.admin_port is not None
        self._connection_class = type(
            "ServerFrontConnection",
            (FrontConnection,),
            {
                "router": api.routes(admin=not separate),
                # A token may be percent-encoded (at most 3 bytes a character).
                "line_limit": 3 * config.max_token_length + LINE_ROOM,
            },
        )
        self._admin_class = type(
            "AdminFrontConnection", (FrontConnection,), {"router": api.routes(), "websocket": False}
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
        self._upgrades: set[ServerConnection] = set()
        self._proxies = TrustedProxies(config.trusted_proxies)
        # Read now, so a bad certificate or key stops the server before it binds.
        self._tls: dict[str, Any] = {}
        if config.tls_cert is not None and config.tls_key is not None:
            self._tls = {
                "ssl": server_tls_context(config.tls_cert, config.tls_key),
                "ssl_handshake_timeout": config.handshake_timeout,
            }

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
        self._ws = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            create_connection=self._connection_class,
            logger=websockets_logger(),
            max_size=cfg.max_message_size + cfg.envelope_room,
            compression=None,
            ping_interval=cfg.ws_ping_interval,
            ping_timeout=cfg.ws_ping_timeout,
            close_timeout=5,
            max_queue=16,
            open_timeout=cfg.handshake_timeout,
            reuse_port=cfg.reuse_port or None,
            **self._tls,
        )
        sockets = list(self._ws.sockets)
        self.port = sockets[0].getsockname()[1]
        log.info("listening on %s:%d", cfg.host, self.port)
        if cfg.admin_port is not None:
            # The same front door, plain HTTP only: no connection is ever upgraded here.
            try:
                self._admin_ws = await serve(
                    self._handle,
                    cfg.admin_host,
                    cfg.admin_port,
                    create_connection=self._admin_class,
                    logger=websockets_logger(),
                    open_timeout=cfg.handshake_timeout,
                    reuse_port=cfg.reuse_port or None,
                    **self._tls,
                )
            except OSError:
                self._ws.close()
                raise
            self.admin_port = next(iter(self._admin_ws.sockets)).getsockname()[1]
            log.info("admin API on %s:%d", cfg.admin_host, self.admin_port)

    async def stop(self) -> None:
        """Close every connection (1001), leave the cluster and stop at once."""
        for listener in (self._ws, self._admin_ws):
            if listener is not None:
                listener.close()
                await listener.wait_closed()
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
        if self._ws is not None and cfg.reuse_port:
            # Let the other processes on this port take the new connections.
            self._ws.server.close()
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
                [asyncio.ensure_future(ws.wait_closed()) for ws in closing],
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
            front = cast(FrontConnection, conn.handle)
            log.warning("evicting slow consumer %s from %s", conn.peer_id, front.client_host)
            asyncio.get_running_loop().call_soon(self._evict, conn)

    def _evict(self, conn: Conn) -> None:
        self._evicting.discard(conn)
        self.hub.close(conn, 1008, "slow consumer", time.time())
        self._reschedule()

    # --- HTTP -------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        # Only ``GET /v1`` reaches websockets; the rest is answered by the admin routes.
        # Refusals here cost no handshake: the SDKs retry an HTTP error on reconnect.
        if self.draining:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
        peer = connection.remote_address
        host = peer[0] if isinstance(peer, tuple) else str(peer or "")
        if self._proxies:
            host = self._proxies.client_address(host, request.headers.get_all("X-Forwarded-For"))
        cast(FrontConnection, connection).client_host = host
        if self._limiter is not None and not self._limiter.allow(host):
            return self._refuse(connection, HTTPStatus.TOO_MANY_REQUESTS, "connecting too often")
        limit = self.config.max_connections
        if limit is not None and len(self._upgrades) >= limit:
            return self._refuse(connection, HTTPStatus.SERVICE_UNAVAILABLE, "server full")
        self._upgrades.add(connection)
        connection.connection_lost_waiter.add_done_callback(
            lambda _: self._upgrades.discard(connection)
        )
        return None

    def _refuse(self, connection: ServerConnection, status: HTTPStatus, text: str) -> Response:
        self.hub.stats.count(self.hub.stats.refusals, status.value)
        host = cast(FrontConnection, connection).client_host
        log.debug("refused a connection from %s: %s", host, text)
        response = connection.respond(status, text + "\n")
        response.headers["Retry-After"] = "1"
        return response

    # --- WebSocket --------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        front = cast(FrontConnection, ws)
        target = front.target if front.target is not None else request.path
        query = parse_qs(urlsplit(target).query, keep_blank_values=True)
        keys, tokens = query.get("key", []), query.get("token", [])
        now = time.time()
        if front.oversized or any(len(t) > self.config.max_token_length for t in tokens):
            # Refused after the upgrade, so the SDKs see 4001 and stop (a dropped
            # connection, or an HTTP error, they would retry forever).
            self.hub.stats.count(self.hub.stats.refusals, 4001)
            await ws.close(4001, "token too long" if tokens else "request line too long")
            return
        if len(keys) + len(tokens) != 1:
            await ws.close(4001, "exactly one of key or token is required")
            return
        principal = authenticate(
            self.keys,
            key=keys[0] if keys else None,
            token=tokens[0] if tokens else None,
            origin=request.headers.get("Origin"),
            now=now,
            peer_metadata_limit=self.config.peer_metadata_limit,
            leeway=self.config.jwt_leeway,
        )
        if isinstance(principal, Refusal):
            self.hub.stats.count(self.hub.stats.refusals, principal.code)
            await ws.close(principal.code, principal.reason)
            return
        limit = self.config.max_connections_per_app
        if (
            limit is not None
            and self.broker is not None
            and not await self.broker.admit(principal.app_id, limit)
        ):
            self.hub.stats.count(self.hub.stats.refusals, 4010)
            await ws.close(4010, "over concurrent connection limit")
            return
        app_peers = self.hub.apps.get(principal.app_id)
        peer_id = self._peer_id()
        while app_peers is not None and peer_id in app_peers.peers:
            peer_id = self._peer_id()
        conn = self.hub.connect(
            peer_id,
            principal,
            ws,
            now,
            welcome_metadata(self.config, principal.metadata, peer_id, now),
        )
        if isinstance(conn, Refusal):
            await ws.close(conn.code, conn.reason)
            return
        log.debug("peer %s connected from %s", peer_id, front.client_host)
        self._reschedule()
        hub = self.hub

        def receive(message: str | bytes) -> None:
            hub.receive(conn, decode_client_frame(message), time.time())
            if hub.has_deadlines:
                self._reschedule()

        # Not kept for the connection's life: the credential's copies (a JWT may be KiBs).
        del target, query, keys, tokens
        front.target = None
        try:
            front.deliver_to(receive)
            await ws.wait_closed()
        finally:
            hub.disconnect(conn, time.time())
            self._reschedule()
            if limit is not None and self.broker is not None:
                await self.broker.release(principal.app_id)

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
