"""The OpenAPI 3.1 document of the HTTP routes, served at ``/admin/openapi.json``.

It is written here by hand, one entry per route; tests/server/test_openapi.py compares its
paths and methods with the router's, so a route added without its entry (or an entry left
behind by a removed route) fails the suite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .. import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(key: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {key: {"type": "array", "items": item}}}


_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
    "App": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "suspended": {"type": "boolean"},
            "connections": {"type": "integer", "description": "open, over every node"},
        },
    },
    "PublishableKey": {
        "type": "object",
        "properties": {
            "key": {"type": "string", "description": "masked, except in the creating answer"},
            "ref": {"type": "string", "description": "names the key in DELETE /admin/keys/"},
            "app": {"type": "string"},
            "permissions": _STRINGS,
            "channels": _STRINGS,
            "origins": _STRINGS,
            "revoked": {"type": "boolean"},
            "label": {"type": "string"},
        },
    },
    "NewKey": {
        "type": "object",
        "properties": {
            "type": {"enum": ["publishable", "secret"], "default": "publishable"},
            "permissions": _STRINGS,
            "channels": _STRINGS,
            "origins": _STRINGS,
            "label": {"type": "string"},
        },
    },
    "Connection": {
        "type": "object",
        "properties": {
            "peerId": {"type": "string"},
            "app": {"type": "string"},
            "channels": _STRINGS,
            "node": {"type": "string"},
        },
    },
    "Channel": {
        "type": "object",
        "properties": {
            "app": {"type": "string"},
            "channel": {"type": "string"},
            "subscribers": {"type": "integer"},
            "members": {"type": "integer"},
        },
    },
    "Member": {
        "type": "object",
        "properties": {
            "peerId": {"type": "string"},
            "metadata": {"description": "the peer's metadata, any JSON value"},
            "node": {"type": "string"},
        },
    },
    "Node": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "connections": {"type": "integer"},
            "draining": {"type": "boolean"},
            "pid": {"type": "integer"},
            "port": {"type": "integer"},
        },
    },
    "NodeStats": {
        "type": "object",
        "properties": {
            "node": {"type": "string"},
            "connections": {"type": "integer"},
            "channels": {"type": "integer"},
            "apps": {"type": "integer", "description": "apps with an open connection"},
            "interval": {"type": "number", "description": "seconds between samples"},
            "samples": {
                "type": "array",
                "description": "oldest first, a bounded ring over the last minutes",
                "items": {
                    "type": "object",
                    "properties": {
                        "t": {"type": "number", "description": "Unix time"},
                        "in": {"type": "number", "description": "client frames a second"},
                        "out": {"type": "number", "description": "deliveries a second"},
                        "closes": {
                            "type": "object",
                            "description": "close code to closes in the interval",
                            "additionalProperties": {"type": "integer"},
                        },
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class Operation:
    """One documented route: what it does, what it takes, what it answers."""

    summary: str
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    status: int = 200
    body: dict[str, Any] | None = None
    query: tuple[str, ...] = ()
    auth: str | None = "adminToken"
    content_type: str = "application/json"


_APP_LIST = _list_of("apps", _ref("App"))
_ACCEPTED = {"type": "object", "properties": {"draining": {}, "node": {"type": "string"}}}

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/healthz"): Operation("Liveness: 200 while the process runs", auth=None),
    ("GET", "/readyz"): Operation("Readiness: 503 while draining or cut off from Redis", auth=None),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics of this node", auth="metricsToken", content_type="text/plain"
    ),
    ("GET", "/console"): Operation(
        "The web console (its data needs the admin token)", auth=None, content_type="text/html"
    ),
    ("GET", "/console/{file}"): Operation(
        "A static file of the web console", auth=None, content_type="text/plain"
    ),
    ("GET", "/admin/openapi.json"): Operation("This document"),
    ("GET", "/admin/apps"): Operation("Apps with their open connections", _APP_LIST),
    ("POST", "/admin/apps"): Operation(
        "Create an app",
        _ref("App"),
        201,
        {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
    ),
    ("GET", "/admin/apps/{app}/keys"): Operation(
        "An app's keys, secrets masked",
        {
            "type": "object",
            "properties": {
                "publishable": {"type": "array", "items": _ref("PublishableKey")},
                "secret": {"type": "array", "items": {"type": "object"}},
            },
        },
    ),
    ("POST", "/admin/apps/{app}/keys"): Operation(
        "Create a key; the answer is the only place its secret appears",
        _ref("PublishableKey"),
        201,
        _ref("NewKey"),
    ),
    ("POST", "/admin/apps/{app}/suspend"): Operation(
        "Suspend an app: its sessions close with 4012, new ones are refused"
    ),
    ("POST", "/admin/apps/{app}/resume"): Operation("Resume a suspended app"),
    ("DELETE", "/admin/keys/{key}"): Operation(
        "Revoke a publishable key (the key or its ref) or a secret key (its id); its "
        "sessions close with 4001"
    ),
    ("GET", "/admin/connections"): Operation(
        "Open connections on every node",
        _list_of("connections", _ref("Connection")),
        query=("app",),
    ),
    ("GET", "/admin/channels"): Operation(
        "Channels with subscribers, over every node",
        _list_of("channels", _ref("Channel")),
        query=("app",),
    ),
    ("GET", "/admin/members"): Operation(
        "A channel's announced members with their metadata, over every node",
        _list_of("members", _ref("Member")),
        query=("app", "channel"),
    ),
    ("POST", "/admin/peers/{peer}/disconnect"): Operation("Close a peer's connection with 4020"),
    ("POST", "/admin/drain"): Operation("Drain the node that answers", _ACCEPTED, 202),
    ("GET", "/admin/nodes"): Operation("The nodes of the cluster", _list_of("nodes", _ref("Node"))),
    ("POST", "/admin/nodes/{node}/drain"): Operation("Drain one node", _ACCEPTED, 202),
    ("GET", "/admin/stats"): Operation(
        "Live counts and per-second rates of every node", _list_of("nodes", _ref("NodeStats"))
    ),
}


def _operation(path: str, op: Operation) -> dict[str, Any]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    params += [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in op.query
    ]
    schema = op.response if op.content_type == "application/json" else {"type": "string"}
    out: dict[str, Any] = {
        "summary": op.summary,
        "responses": {
            str(op.status): {"description": "OK", "content": {op.content_type: {"schema": schema}}},
            "default": {
                "description": "400 bad input, 401 no token, 404 unknown",
                "content": {"application/json": {"schema": _ref("Error")}},
            },
        },
        "security": [] if op.auth is None else [{op.auth: []}],
    }
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"content": {"application/json": {"schema": op.body}}}
    return out


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), op in OPERATIONS.items():
        paths.setdefault(path, {})[method.lower()] = _operation(path, op)
    bearer = {"type": "http", "scheme": "bearer"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "metered-realtime server: admin API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"adminToken": bearer, "metricsToken": bearer},
        },
    }
