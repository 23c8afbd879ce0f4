"""The admin actions on the command line: ``apps``, ``peers disconnect``, ``drain``,
``keys list --app`` and ``config``.

Each action works on the local store (``--db``) or, with ``--remote URL``, through the admin
API of a running server (any node of a cluster), with the admin token taken from
``METERED_REALTIME_ADMIN_TOKEN``. Answers are printed as one JSON object, the admin API's
own, so a script reads the same thing either way. Live state (peers, draining) exists only
in a running server: those actions need ``--remote``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit

TOKEN_ENV = "METERED_REALTIME_ADMIN_TOKEN"
DEFAULT_DB = "metered-realtime.db"
REMOTE_TIMEOUT = 30.0


class AdminError(Exception):
    """An action failed; the message is for the operator, ``code`` the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Remote:
    """The admin API of a running server."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AdminError(f"--remote wants an http(s)://HOST:PORT URL, not {url!r}", 2)
        self._base = url.rstrip("/")
        self._token = token

    def __repr__(self) -> str:
        return f"Remote({self._base!r})"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; its JSON answer, or AdminError with the server's error message."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=REMOTE_TIMEOUT) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AdminError(f"{exc.code}: {_error_text(exc.read())}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise AdminError(f"cannot reach {self._base}: {exc}") from None

    def app_id(self, name_or_id: str) -> str:
        for app in self.call("GET", "/admin/apps")["apps"]:
            if name_or_id in (app["id"], app["name"]):
                return str(app["id"])
        raise AdminError(f"no such app: {name_or_id}")

    def list_apps(self) -> Any:
        return self.call("GET", "/admin/apps")

    def create_app(self, name: str) -> Any:
        return self.call("POST", "/admin/apps", {"name": name})

    def set_suspended(self, app: str, suspended: bool) -> Any:
        action = "suspend" if suspended else "resume"
        return self.call("POST", f"/admin/apps/{_seg(self.app_id(app))}/{action}")

    def keys(self, app: str) -> Any:
        return self.call("GET", f"/admin/apps/{_seg(self.app_id(app))}/keys")

    def disconnect(self, peer: str) -> Any:
        return self.call("POST", f"/admin/peers/{_seg(peer)}/disconnect")

    def drain(self, node: str | None) -> Any:
        if node is None:
            return self.call("POST", "/admin/drain")
        return self.call("POST", f"/admin/nodes/{_seg(node)}/drain")


class Local:
    """The store itself. Running servers see a change within ``store_refresh``."""

    def __init__(self, db: str) -> None:
        from .server.store import open_store

        self.store = open_store(db)

    def close(self) -> None:
        self.store.close()

    def _app(self, name_or_id: str) -> Any:
        app = self.store.get_app(name_or_id) or self.store.find_app(name_or_id)
        if app is None:
            raise AdminError(f"no such app: {name_or_id}")
        return app

    def list_apps(self) -> Any:
        return {
            "apps": [
                {"id": a.id, "name": a.name, "suspended": a.suspended}
                for a in self.store.list_apps()
            ]
        }

    def create_app(self, name: str) -> Any:
        app = self.store.create_app(name)
        return {"id": app.id, "name": app.name, "suspended": app.suspended}

    def set_suspended(self, app: str, suspended: bool) -> Any:
        self.store.set_suspended(self._app(app).id, suspended)
        return {"suspended": suspended}

    def keys(self, app: str) -> Any:
        from .server.admin import keys_json

        return keys_json(self.store, self._app(app).id)

    def disconnect(self, peer: str) -> Any:
        raise AdminError("peers disconnect needs --remote URL: only a running server has peers", 2)

    def drain(self, node: str | None) -> Any:
        raise AdminError("drain needs --remote URL: it asks a running server to drain", 2)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace")[:200]


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, help="SQLite store path or postgresql:// URL")
    parser.add_argument(
        "--remote",
        default=None,
        metavar="URL",
        help=f"act through a running server's admin API (token from ${TOKEN_ENV})",
    )


def add_parsers(sub: Any) -> None:
    """The ``apps``, ``peers``, ``drain`` and ``config`` commands."""
    apps = sub.add_parser("apps", help="create, list, suspend and resume apps")
    apps_sub = apps.add_subparsers(dest="apps_cmd", required=True)
    create = apps_sub.add_parser("create", help="create an app")
    create.add_argument("name")
    _add_target(create)
    _add_target(apps_sub.add_parser("list", help="list apps (with live connections: --remote)"))
    for action in ("suspend", "resume"):
        p = apps_sub.add_parser(action, help=f"{action} an app (by name or id)")
        p.add_argument("app")
        _add_target(p)
    peers = sub.add_parser("peers", help="act on live peers").add_subparsers(
        dest="peers_cmd", required=True
    )
    disconnect = peers.add_parser("disconnect", help="close a peer's connection with 4020")
    disconnect.add_argument("peer")
    _add_target(disconnect)
    drain = sub.add_parser("drain", help="drain the node --remote names (or --node, any node)")
    drain.add_argument("--node", default=None, help="the id of the node to drain")
    _add_target(drain)
    config = sub.add_parser("config", help="check or write a settings file").add_subparsers(
        dest="config_cmd", required=True
    )
    check = config.add_parser("check", help="validate a TOML file; print the effective settings")
    check.add_argument("file")
    config.add_parser("example", help="print a commented TOML file with every setting")


def _target(args: argparse.Namespace) -> Remote | Local:
    if args.remote is None:
        return Local(args.db)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise AdminError(f"--remote needs the admin token in ${TOKEN_ENV}", 2)
    return Remote(args.remote, token)


def _act(target: Remote | Local, args: argparse.Namespace) -> Any:
    if args.cmd == "apps":
        if args.apps_cmd == "create":
            return target.create_app(args.name)
        if args.apps_cmd == "list":
            return target.list_apps()
        return target.set_suspended(args.app, args.apps_cmd == "suspend")
    if args.cmd == "peers":
        return target.disconnect(args.peer)
    if args.cmd == "drain":
        return target.drain(args.node)
    return target.keys(args.app)


def run(args: argparse.Namespace) -> int:
    """Run an admin action (``keys list --app`` included); print its JSON answer."""
    try:
        target = _target(args)
        try:
            answer = _act(target, args)
        finally:
            if isinstance(target, Local):
                target.close()
    except (AdminError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code if isinstance(exc, AdminError) else 1
    print(json.dumps(answer))
    return 0


def config_command(args: argparse.Namespace) -> int:
    """``config example`` prints every setting; ``config check FILE`` validates one."""
    from .server.config_text import effective, example, type_errors
    from .server.settings import load_config

    if args.config_cmd == "example":
        print(example(), end="")
        return 0
    try:
        config = load_config({}, toml_path=args.file)
    except (OSError, ValueError, TypeError) as exc:
        # tomllib's TOMLDecodeError is a ValueError; TypeError: a value of the wrong type.
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 1
    wrong = type_errors(config)
    for problem in wrong:
        print(f"error: {args.file}: {problem}", file=sys.stderr)
    if wrong:
        return 1
    print(effective(config), end="")
    return 0
