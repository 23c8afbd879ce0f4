"""The HTTP routes: health, readiness, metrics, and the admin API under ``/admin/``.

Every admin route needs ``Authorization: Bearer <admin_token>``; with no admin token
configured the admin API is off. Secrets appear only in the response that creates them.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .front import Handler, HttpRequest, HttpResponse, Router
from .store import ALL_PERMISSIONS, DEFAULT_KEY_PERMISSIONS, PublishableKey

if TYPE_CHECKING:
    from .app import Server


def _key_json(key: PublishableKey) -> dict[str, Any]:
    return {
        "key": key.masked,
        "app": key.app_id,
        "permissions": sorted(key.permissions),
        "channels": list(key.channel_patterns),
        "origins": list(key.allowed_origins),
        "revoked": key.revoked,
        "label": key.label,
    }


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{name} must be a list of non-empty strings")
    return value


class AdminApi:
    """Handlers bound to one server."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def routes(self) -> Router:
        """The router for every plain-HTTP path."""
        router = Router()
        router.add("GET", "/healthz", self.healthz)
        router.add("GET", "/readyz", self.readyz)
        router.add("GET", "/metrics", self.metrics)
        admin: list[tuple[str, str, Handler]] = [
            ("GET", "/admin/apps", self.list_apps),
            ("POST", "/admin/apps", self.create_app),
            ("GET", "/admin/apps/{app}/keys", self.list_keys),
            ("POST", "/admin/apps/{app}/keys", self.create_key),
            ("POST", "/admin/apps/{app}/suspend", self.suspend),
            ("POST", "/admin/apps/{app}/resume", self.resume),
            ("DELETE", "/admin/keys/{key}", self.revoke),
            ("GET", "/admin/connections", self.connections),
            ("GET", "/admin/channels", self.channels),
            ("POST", "/admin/peers/{peer}/disconnect", self.disconnect),
            ("POST", "/admin/drain", self.drain),
        ]
        for method, path, handler in admin:
            router.add(method, path, self._guard(handler))
        return router

    def _guard(self, handler: Handler) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
        async def guarded(request: HttpRequest) -> HttpResponse:
            expected = self.server.config.admin_token
            if not expected:
                return HttpResponse.json(404, {"error": "the admin API is not enabled"})
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
                return HttpResponse.json(401, {"error": "admin token required"})
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
        return HttpResponse.text(200, "ready\n")

    async def metrics(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, self.server.metrics.render(), "text/plain; version=0.0.4")

    # --- apps and keys --------------------------------------------------------

    def _app(self, app_id: str) -> str:
        if self.server.store.get_app(app_id) is None:
            raise KeyError(f"no such app: {app_id}")
        return app_id

    async def list_apps(self, request: HttpRequest) -> HttpResponse:
        hub_apps = self.server.hub.apps
        apps = [
            {
                "id": app.id,
                "name": app.name,
                "suspended": app.suspended,
                "connections": len(hub_apps[app.id].peers) if app.id in hub_apps else 0,
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
        return HttpResponse.json(201, {"id": app.id, "name": app.name, "suspended": False})

    async def list_keys(self, request: HttpRequest) -> HttpResponse:
        store = self.server.store
        app_id = self._app(request.params["app"])
        return HttpResponse.json(
            200,
            {
                "publishable": [_key_json(k) for k in store.list_publishable_keys(app_id)],
                "secret": [
                    {"id": k.id, "revoked": k.revoked} for k in store.list_secret_keys(app_id)
                ],
            },
        )

    async def create_key(self, request: HttpRequest) -> HttpResponse:
        store = self.server.store
        app_id = self._app(request.params["app"])
        body = request.json()
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        kind = body.get("type", "publishable")
        if kind == "secret":
            secret = store.create_secret_key(app_id)
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
        return HttpResponse.json(201, {**_key_json(key), "key": key.key})

    async def revoke(self, request: HttpRequest) -> HttpResponse:
        if not self.server.store.revoke(request.params["key"]):
            raise KeyError("no such key")
        return HttpResponse.json(200, {"revoked": True})

    async def suspend(self, request: HttpRequest) -> HttpResponse:
        app_id = self._app(request.params["app"])
        self.server.store.set_suspended(app_id, True)
        closed = self.server.hub.close_app(app_id, 4012, "account suspended", time.time())
        return HttpResponse.json(200, {"suspended": True, "closed": closed})

    async def resume(self, request: HttpRequest) -> HttpResponse:
        self.server.store.set_suspended(self._app(request.params["app"]), False)
        return HttpResponse.json(200, {"suspended": False})

    # --- live state -------------------------------------------------------------

    async def connections(self, request: HttpRequest) -> HttpResponse:
        only = request.query.get("app", [None])[0]
        conns = [
            {"peerId": c.peer_id, "app": c.app.id, "channels": sorted(c.subs)}
            for c in self.server.hub.conns.values()
            if only is None or c.app.id == only
        ]
        return HttpResponse.json(200, {"connections": conns})

    async def channels(self, request: HttpRequest) -> HttpResponse:
        only = request.query.get("app", [None])[0]
        channels = [
            {
                "app": app.id,
                "channel": name,
                "subscribers": len(channel.subs),
                "members": len(channel.members),
            }
            for app in self.server.hub.apps.values()
            if only is None or app.id == only
            for name, channel in app.channels.items()
        ]
        return HttpResponse.json(200, {"channels": channels})

    async def disconnect(self, request: HttpRequest) -> HttpResponse:
        peer = request.params["peer"]
        hub = self.server.hub
        for app in hub.apps.values():
            conn = app.peers.get(peer)
            if conn is not None:
                hub.close(conn, 4020, "admin disconnect", time.time())
                return HttpResponse.json(200, {"disconnected": peer})
        raise KeyError(f"no such peer: {peer}")

    async def drain(self, request: HttpRequest) -> HttpResponse:
        if not self.server.draining:
            self.server.spawn(self.server.drain())
        return HttpResponse.json(202, {"draining": True})
