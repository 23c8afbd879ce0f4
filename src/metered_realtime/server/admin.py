"""The HTTP routes: health, readiness, metrics, and the admin API under ``/admin/``.

Every admin route needs ``Authorization: Bearer <admin_token>``; with no admin token
configured the admin API is off. The token is checked on the request's head, before any
body is read. With ``metrics_token`` set, ``/metrics`` wants ``Authorization: Bearer`` with
it. With ``admin_port`` set, the admin API and ``/metrics`` are served only on that
listener (the public port answers 404); ``/healthz`` and ``/readyz`` are on both. Secrets
appear only in the response that creates them.

In a cluster any node answers for all of them: live state is gathered from every node
(``ClusterAdmin`` runs each node's part), and a change to keys or apps makes every node
reload them at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import console, openapi
from .broker.node import NODE_ID_LENGTH
from .front import Handler, HttpRequest, HttpResponse, Router
from .rates import SAMPLE_INTERVAL, RateRing
from .store import ALL_PERMISSIONS, DEFAULT_KEY_PERMISSIONS, PublishableKey, Store

if TYPE_CHECKING:
    from .app import Server


REF_PREFIX = "pkref_"


def key_ref(key: str) -> str:
    """A publishable key's reference: names it in a revoke without being it (listings mask
    the key itself, so a console or script could not otherwise revoke one it did not make)."""
    return REF_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:20]


def resolve_ref(store: Store, key: str) -> str:
    """The publishable key a ``ref`` names (anything else is returned as it is)."""
    if key.startswith(REF_PREFIX):
        return next((k.key for k in store.list_publishable_keys() if key_ref(k.key) == key), key)
    return key


def key_json(key: PublishableKey) -> dict[str, Any]:
    """A publishable key as the admin API lists it (masked)."""
    return {
        "key": key.masked,
        "ref": key_ref(key.key),
        "app": key.app_id,
        "permissions": sorted(key.permissions),
        "channels": list(key.channel_patterns),
        "origins": list(key.allowed_origins),
        "revoked": key.revoked,
        "label": key.label,
    }


def keys_json(store: Store, app_id: str) -> dict[str, Any]:
    """An app's keys as the admin API lists them: publishable ones masked, secret ones by id."""
    return {
        "publishable": [key_json(k) for k in store.list_publishable_keys(app_id)],
        "secret": [{"id": k.id, "revoked": k.revoked} for k in store.list_secret_keys(app_id)],
    }


def _bearer(request: HttpRequest, expected: str) -> bool:
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {expected}".encode())


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{name} must be a list of non-empty strings")
    return value


class ClusterAdmin:
    """One node's part of an admin operation; the result is JSON, sent back to the asker."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.rates = RateRing()

    def sample(self, now: float) -> None:
        """Record the hub's counters for the rates the console charts."""
        stats = self.server.hub.stats
        self.rates.record(now, stats.frames_received, stats.deliveries, stats.closes)

    async def sample_forever(self) -> None:
        """Sample every ``SAMPLE_INTERVAL`` seconds until cancelled."""
        while True:
            self.sample(time.time())
            await asyncio.sleep(SAMPLE_INTERVAL)

    def handle(self, op: str, args: Any) -> Any:
        """Run ``op`` on this node."""
        hub = self.server.hub
        only = args.get("app") if isinstance(args, dict) else None
        if op == "connections":
            return [
                {"peerId": c.peer_id, "app": c.app.id, "channels": sorted(c.subs)}
                for c in hub.conns.values()
                if only is None or c.app.id == only
            ]
        if op == "channels":
            return [
                [app.id, name, len(channel.subs), len(channel.members)]
                for app in hub.apps.values()
                if only is None or app.id == only
                for name, channel in app.channels.items()
                if channel.subs
            ]
        if op == "apps":
            return {app.id: len(app.peers) for app in hub.apps.values() if app.peers}
        if op == "members":
            members = hub.local_state(str(args.get("app")), str(args.get("channel")))
            return [json.loads(entry) for entry in members.values()]
        if op == "stats":
            return {
                "connections": len(hub.conns),
                "channels": sum(len(app.channels) for app in hub.apps.values()),
                "apps": sum(1 for app in hub.apps.values() if app.peers),
                "interval": SAMPLE_INTERVAL,
                "samples": self.rates.series(),
            }
        if op == "disconnect":
            for app in hub.apps.values():
                conn = app.peers.get(str(args.get("peer")))
                if conn is not None:
                    hub.close(conn, 4020, "admin disconnect", time.time())
                    return True
            return False
        if op == "reload":
            return self.server.reload_keys()
        if op == "drain":
            if not self.server.draining:
                self.server.spawn(self.server.drain())
            return True
        if op == "node":
            return {
                "connections": len(hub.conns),
                "draining": self.server.draining,
                "pid": os.getpid(),
                "port": self.server.port,
            }
        raise ValueError(f"unknown admin operation {op!r}")


class AdminApi:
    """Handlers bound to one server."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def routes(self, *, admin: bool = True) -> Router:
        """The router for plain HTTP: probes always; ``/metrics`` and the admin API when
        ``admin`` (the public port's router leaves them out when they have a listener of
        their own)."""
        router = Router()
        router.add("GET", "/healthz", self.healthz)
        router.add("GET", "/readyz", self.readyz)
        if not admin:
            return router
        router.add("GET", "/metrics", self.metrics)
        router.gate("/metrics", self._metrics_gate)
        router.gate("/admin/", self._admin_gate)
        router.gate("/console", self._console_gate)
        router.gate("/console/", self._console_gate)
        router.add("GET", "/console", console.page)
        router.add("GET", "/console/{file}", console.asset)
        handlers: list[tuple[str, str, Handler]] = [
            ("GET", "/admin/openapi.json", self.openapi),
            ("GET", "/admin/apps", self.list_apps),
            ("POST", "/admin/apps", self.create_app),
            ("GET", "/admin/apps/{app}/keys", self.list_keys),
            ("POST", "/admin/apps/{app}/keys", self.create_key),
            ("POST", "/admin/apps/{app}/suspend", self.suspend),
            ("POST", "/admin/apps/{app}/resume", self.resume),
            ("DELETE", "/admin/keys/{key}", self.revoke),
            ("GET", "/admin/connections", self.connections),
            ("GET", "/admin/channels", self.channels),
            ("GET", "/admin/members", self.members),
            ("GET", "/admin/stats", self.stats),
            ("POST", "/admin/peers/{peer}/disconnect", self.disconnect),
            ("POST", "/admin/drain", self.drain),
            ("GET", "/admin/nodes", self.nodes),
            ("POST", "/admin/nodes/{node}/drain", self.drain_node),
        ]
        for method, path, handler in handlers:
            router.add(method, path, self._guard(handler))
        return router

    def _admin_gate(self, request: HttpRequest) -> HttpResponse | None:
        expected = self.server.config.admin_token
        if not expected:
            return HttpResponse.json(404, {"error": "the admin API is not enabled"})
        if not _bearer(request, expected):
            return HttpResponse.json(401, {"error": "admin token required"})
        return None

    def _console_gate(self, request: HttpRequest) -> HttpResponse | None:
        # The page itself holds no secret (it asks for the token); without an admin API
        # there is nothing for it to show.
        if not self.server.config.admin_token:
            return HttpResponse.json(404, {"error": "the admin API is not enabled"})
        return None

    def _metrics_gate(self, request: HttpRequest) -> HttpResponse | None:
        expected = self.server.config.metrics_token
        if expected is not None and not _bearer(request, expected):
            return HttpResponse.json(401, {"error": "metrics token required"})
        return None

    def _guard(self, handler: Handler) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
        # The router's gate has checked the token already (on the head).
        async def guarded(request: HttpRequest) -> HttpResponse:
            try:
                return await handler(request)
            except ValueError as exc:
                return HttpResponse.json(400, {"error": str(exc)})
            except KeyError as exc:
                return HttpResponse.json(
                    404, {"error": str(exc.args[0]) if exc.args else "not found"}
                )

        return guarded

    # --- probes -------------------------------------------------------------

    async def healthz(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse.text(200, "ok\n")

    async def readyz(self, request: HttpRequest) -> HttpResponse:
        if self.server.draining:
            return HttpResponse.text(503, "draining\n")
        broker = self.server.broker
        if broker is not None and not broker.connected:
            return HttpResponse.text(503, "cluster unreachable (redis)\n")
        return HttpResponse.text(200, "ready\n")

    async def metrics(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, self.server.metrics.render(), "text/plain; version=0.0.4")

    async def openapi(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse.json(200, openapi.document())

    # --- apps and keys --------------------------------------------------------

    def _app(self, app_id: str) -> str:
        if self.server.store.get_app(app_id) is None:
            raise KeyError(f"no such app: {app_id}")
        return app_id

    async def _everywhere(self, op: str, args: Any = None) -> list[Any]:
        return list((await self.server.gather(op, args or {})).values())

    async def _changed(self) -> int:
        """Keys or apps changed: every node reloads them now. Returns sessions closed."""
        return sum(int(n) for n in await self._everywhere("reload"))

    async def list_apps(self, request: HttpRequest) -> HttpResponse:
        counts: dict[str, int] = {}
        for per_node in await self._everywhere("apps"):
            for app_id, n in per_node.items():
                counts[app_id] = counts.get(app_id, 0) + n
        apps = [
            {
                "id": app.id,
                "name": app.name,
                "suspended": app.suspended,
                "connections": counts.get(app.id, 0),
            }
            for app in self.server.store.list_apps()
        ]
        return HttpResponse.json(200, {"apps": apps})

    async def create_app(self, request: HttpRequest) -> HttpResponse:
        body = request.json()
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError("name is required")
        app = self.server.store.create_app(name)
        await self._changed()
        return HttpResponse.json(201, {"id": app.id, "name": app.name, "suspended": False})

    async def list_keys(self, request: HttpRequest) -> HttpResponse:
        app_id = self._app(request.params["app"])
        return HttpResponse.json(200, keys_json(self.server.store, app_id))

    async def create_key(self, request: HttpRequest) -> HttpResponse:
        store = self.server.store
        app_id = self._app(request.params["app"])
        body = request.json()
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        kind = body.get("type", "publishable")
        if kind == "secret":
            secret = store.create_secret_key(app_id)
            await self._changed()
            return HttpResponse.json(201, {"id": secret.id, "secret": secret.secret})
        if kind != "publishable":
            raise ValueError("type must be publishable or secret")
        permissions = set(
            _strings(body.get("permissions", sorted(DEFAULT_KEY_PERMISSIONS)), "permissions")
        )
        if not permissions <= ALL_PERMISSIONS:
            raise ValueError(f"unknown permissions: {sorted(permissions - ALL_PERMISSIONS)}")
        key = store.create_publishable_key(
            app_id,
            permissions=permissions,
            channel_patterns=_strings(body.get("channels", ["*"]), "channels"),
            allowed_origins=_strings(body.get("origins", []), "origins"),
            label=str(body.get("label", "")),
        )
        await self._changed()
        return HttpResponse.json(201, {**key_json(key), "key": key.key})

    async def revoke(self, request: HttpRequest) -> HttpResponse:
        store = self.server.store
        if not store.revoke(resolve_ref(store, request.params["key"])):
            raise KeyError("no such key")
        closed = await self._changed()
        return HttpResponse.json(200, {"revoked": True, "closed": closed})

    async def suspend(self, request: HttpRequest) -> HttpResponse:
        app_id = self._app(request.params["app"])
        self.server.store.set_suspended(app_id, True)
        closed = await self._changed()
        return HttpResponse.json(200, {"suspended": True, "closed": closed})

    async def resume(self, request: HttpRequest) -> HttpResponse:
        self.server.store.set_suspended(self._app(request.params["app"]), False)
        await self._changed()
        return HttpResponse.json(200, {"suspended": False})

    # --- live state -------------------------------------------------------------

    async def connections(self, request: HttpRequest) -> HttpResponse:
        only = request.query.get("app", [None])[0]
        per_node = await self.server.gather("connections", {"app": only})
        conns = [
            {**conn, "node": node} for node, listed in sorted(per_node.items()) for conn in listed
        ]
        return HttpResponse.json(200, {"connections": conns})

    async def channels(self, request: HttpRequest) -> HttpResponse:
        only = request.query.get("app", [None])[0]
        totals: dict[tuple[str, str], list[int]] = {}
        for listed in await self._everywhere("channels", {"app": only}):
            for app_id, name, subscribers, members in listed:
                total = totals.setdefault((app_id, name), [0, 0])
                total[0] += subscribers
                total[1] += members
        channels = [
            {"app": app_id, "channel": name, "subscribers": subs, "members": members}
            for (app_id, name), (subs, members) in sorted(totals.items())
        ]
        return HttpResponse.json(200, {"channels": channels})

    async def members(self, request: HttpRequest) -> HttpResponse:
        app_id = self._app(request.query.get("app", [""])[0])
        channel = request.query.get("channel", [""])[0]
        if not channel:
            raise ValueError("channel is required")
        per_node = await self.server.gather("members", {"app": app_id, "channel": channel})
        listed = [
            {**member, "node": node}
            for node, members in sorted(per_node.items())
            for member in members
        ]
        return HttpResponse.json(200, {"members": listed})

    async def stats(self, request: HttpRequest) -> HttpResponse:
        per_node = await self.server.gather("stats", {})
        listed = [{"node": node, **info} for node, info in sorted(per_node.items())]
        return HttpResponse.json(200, {"nodes": listed, "self": self.server.node_id})

    async def disconnect(self, request: HttpRequest) -> HttpResponse:
        peer = request.params["peer"]
        # In a cluster a peer id starts with the id of the node that holds it.
        owner = None if self.server.broker is None else peer[:NODE_ID_LENGTH]
        done = await self.server.gather("disconnect", {"peer": peer}, owner)
        if any(done.values()):
            return HttpResponse.json(200, {"disconnected": peer})
        raise KeyError(f"no such peer: {peer}")

    async def drain(self, request: HttpRequest) -> HttpResponse:
        if not self.server.draining:
            self.server.spawn(self.server.drain())
        return HttpResponse.json(202, {"draining": True, "node": self.server.node_id})

    async def nodes(self, request: HttpRequest) -> HttpResponse:
        per_node = await self.server.gather("node", {})
        listed = [{"id": node, **info} for node, info in sorted(per_node.items())]
        return HttpResponse.json(200, {"nodes": listed, "self": self.server.node_id})

    async def drain_node(self, request: HttpRequest) -> HttpResponse:
        node = request.params["node"]
        done = await self.server.gather("drain", {}, node)
        if not done:
            raise KeyError(f"no such node: {node}")
        return HttpResponse.json(202, {"draining": True, "node": node})
