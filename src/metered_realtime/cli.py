"""The ``metered-realtime`` command: serve, keys, token, demo, and the admin actions
(apps, peers, drain, config: see ``admin_cli``)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .admin_cli import add_parsers as add_admin_parsers
from .admin_cli import config_command
from .admin_cli import run as run_admin

DEV_APP = "dev"
DEV_LABEL = "dev"


class _JsonFormatter(logging.Formatter):
    """One JSON object a line; the exception (``exc``) and stack included, all scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        from ._scrub import scrub

        entry: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        exc = record.exc_text
        if record.exc_info and record.exc_info[0] is not None and not exc:
            exc = self.formatException(record.exc_info)
        if exc:
            entry["exc"] = scrub(exc)
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(entry)


class _TextFormatter(logging.Formatter):
    """The human-readable line for a terminal, scrubbed like the JSON one."""

    def format(self, record: logging.LogRecord) -> str:
        from ._scrub import scrub

        return scrub(super().format(record))


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if not sys.stderr.isatty():
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The handshake logger prints request lines, which carry credentials.
    logging.getLogger("websockets").setLevel(logging.WARNING)


def _add_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the server")
    p.add_argument("--host", default=None, help="address to bind (default localhost)")
    p.add_argument("--port", type=int, default=None, help="port (default 8080; 0 = any free)")
    p.add_argument("--db", default=None, help="SQLite store path or postgresql:// URL")
    p.add_argument("--config", default=None, help="TOML settings file")
    p.add_argument("--dev", action="store_true", help="create a dev app and key, print them")
    p.add_argument("--max-message-size", type=int, default=None, dest="max_message_size")
    p.add_argument("--max-connections-per-app", type=int, default=None)
    p.add_argument(
        "--max-connections",
        type=_optional_int,
        default=None,
        help="WebSocket connections this process holds; more are refused with HTTP 503 "
        "(default 10000; 'none' = no cap)",
    )
    p.add_argument(
        "--ip-connect-rate",
        type=_optional_float,
        default=None,
        help="new connections a second per client address (IPv6: per /64), burst "
        "ip_connect_burst; more are refused with HTTP 429 (default 20; 'none' = off)",
    )
    p.add_argument("--ice-urls", default=None, help="comma-separated stun:/turn: URLs")
    p.add_argument(
        "--admin-token",
        default=None,
        help="enables the admin API under /admin/. Prefer the METERED_REALTIME_ADMIN_TOKEN "
        "environment variable: other local users can read a process's command line",
    )
    p.add_argument(
        "--admin-host", default=None, help="address of the admin listener (default 127.0.0.1)"
    )
    p.add_argument(
        "--admin-port",
        type=int,
        default=None,
        help="serve /admin/ and /metrics only on this port (0 = any free one), not the public one",
    )
    p.add_argument(
        "--redis", default=None, help="redis://HOST:PORT/DB: join a cluster of servers over Redis"
    )
    p.add_argument(
        "--workers",
        default="1",
        help="N processes sharing the port (needs --redis); 'auto' = one per core",
    )
    p.add_argument(
        "--tls-cert",
        default=None,
        help="PEM certificate chain: serve wss:// and https:// (the admin listener too)",
    )
    p.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert (unencrypted)")
    p.add_argument(
        "--trusted-proxy",
        action="append",
        default=None,
        dest="trusted_proxies",
        metavar="CIDR",
        help="a reverse proxy whose X-Forwarded-For names the client (repeatable)",
    )
    p.add_argument("--reuse-port", action="store_true", default=None, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="info")


def _add_keys(sub: Any) -> None:
    keys = sub.add_parser("keys", help="manage apps and keys").add_subparsers(
        dest="keys_cmd", required=True
    )
    create = keys.add_parser("create", help="create a key (and the app if it is new)")
    create.add_argument("--app", default=DEV_APP, help="app name or id")
    create.add_argument("--secret", action="store_true", help="create a secret key instead")
    create.add_argument(
        "--allow", action="append", default=[], help="permission to add, e.g. --allow send"
    )
    create.add_argument(
        "--permissions", default=None, help="comma-separated permission set (replaces defaults)"
    )
    create.add_argument("--channels", default="*", help="comma-separated channel patterns")
    create.add_argument("--origins", default="", help="comma-separated allowed Origins")
    create.add_argument("--label", default="")
    create.add_argument("--db", default="metered-realtime.db")
    lst = keys.add_parser("list", help="list apps and keys (secrets masked)")
    lst.add_argument("--db", default="metered-realtime.db")
    lst.add_argument("--app", default=None, help="one app's keys, as JSON (name or id)")
    lst.add_argument("--remote", default=None, metavar="URL", help="through a running server")
    revoke = keys.add_parser(
        "revoke", help="revoke a publishable key (or its listed ref) or a secret key id"
    )
    revoke.add_argument("key")
    revoke.add_argument("--db", default="metered-realtime.db")


def _add_token(sub: Any) -> None:
    p = sub.add_parser("token", help="mint a JWT from a secret key")
    p.add_argument("--key-id", required=True, help="secret key id (sk_id_...)")
    p.add_argument("--secret", required=True, help="the secret (sk_live_...)")
    p.add_argument("--channels", default=None, help="comma-separated patterns (default all)")
    p.add_argument("--permissions", default=None, help="comma-separated (default all)")
    p.add_argument("--peer-metadata", default=None, help="JSON object")
    p.add_argument("--metadata", default=None, help="JSON object")
    p.add_argument("--ttl", type=float, default=3600.0, help="seconds")
    p.add_argument("--sub", default=None)


def _add_demo(sub: Any) -> None:
    from .demo import add_arguments

    p = sub.add_parser(
        "demo", help="embedded server + two Python peers: data, a data channel and a tone"
    )
    add_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``metered-realtime`` command."""
    parser = argparse.ArgumentParser(prog="metered-realtime")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_serve(sub)
    _add_keys(sub)
    _add_token(sub)
    _add_demo(sub)
    add_admin_parsers(sub)
    return parser


def _optional_int(value: str) -> int | str:
    return "none" if value.lower() == "none" else int(value)


def _optional_float(value: str) -> float | str:
    return "none" if value.lower() == "none" else float(value)


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _resolve_app(store: Any, name_or_id: str) -> Any:
    return store.get_app(name_or_id) or store.find_app(name_or_id) or store.create_app(name_or_id)


def _dev_key(store: Any) -> Any:
    from .server.store import ALL_PERMISSIONS

    app = _resolve_app(store, DEV_APP)
    for key in store.list_publishable_keys(app.id):
        if key.label == DEV_LABEL and not key.revoked and key.permissions == ALL_PERMISSIONS:
            return key
    return store.create_publishable_key(app.id, permissions=ALL_PERMISSIONS, label=DEV_LABEL)


def _serve_flags(args: argparse.Namespace) -> dict[str, Any]:
    from .server.settings import ENV_PREFIX

    flags = {
        "host": args.host,
        "port": args.port,
        "db": args.db,
        "max_message_size": args.max_message_size,
        "max_connections_per_app": args.max_connections_per_app,
        "max_connections": args.max_connections,
        "ip_connect_rate": args.ip_connect_rate,
        "ice_urls": args.ice_urls,
        "admin_token": args.admin_token,
        "admin_host": args.admin_host,
        "admin_port": args.admin_port,
        "redis": args.redis,
        "reuse_port": args.reuse_port,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "trusted_proxies": args.trusted_proxies,
    }
    if args.host is None and ENV_PREFIX + "HOST" not in os.environ:
        flags["host"] = "localhost"
    return flags


def _warn_admin_token_on_argv(args: argparse.Namespace) -> None:
    if args.admin_token is not None and not args.quiet:
        logging.getLogger("metered_realtime.server").warning(
            "the admin token was given with --admin-token, where other local users can read "
            "it (ps, /proc/<pid>/cmdline): set the METERED_REALTIME_ADMIN_TOKEN environment "
            "variable instead"
        )


def _print_admin_url(config: Any, port: int) -> None:
    host = config.admin_host
    shown = f"[{host}]" if ":" in host else host
    print(f"admin-url: {'https' if config.tls_cert else 'http'}://{shown}:{port}", flush=True)


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _worker_count(value: str) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        raise SystemExit("--workers must be a number or 'auto'") from None
    if count < 1:
        raise SystemExit("--workers must be at least 1")
    return count


def _serve_workers(args: argparse.Namespace, argv: Sequence[str], workers: int) -> int:
    """Run ``workers`` server processes on one port (SO_REUSEPORT); forward signals; wait."""
    import subprocess

    from .server.settings import load_config
    from .server.store import open_store, random_base62

    config = load_config(_serve_flags(args), toml_path=args.config)
    if config.redis is None:
        print("--workers needs --redis: the processes form a cluster", file=sys.stderr)
        return 2
    if config.tls_cert is not None and config.tls_key is not None:
        from .server.tls import server_tls_context

        server_tls_context(config.tls_cert, config.tls_key)  # each worker would fail alike
    _warn_admin_token_on_argv(args)
    port = config.port
    if port == 0:
        port = _free_port(config.host)
    admin_port = config.admin_port
    if admin_port == 0:
        admin_port = _free_port(config.admin_host)
    env = dict(os.environ)
    if args.dev:
        store = open_store(config.db)
        key = _dev_key(store)
        store.close()
        token = config.admin_token or random_base62(32)
        env["METERED_REALTIME_ADMIN_TOKEN"] = token
        _print_dev(config, port, key, token)
    else:
        _print_url(config, port)
    if admin_port is not None:
        _print_admin_url(config, admin_port)
    passed = [a for a in argv if a != "--dev"]
    command = [sys.executable, "-m", "metered_realtime.cli", *passed]
    command += ["--workers", "1", "--reuse-port", "--port", str(port), "--quiet"]
    if admin_port is not None:
        command += ["--admin-port", str(admin_port)]
    children = [subprocess.Popen(command, env=env) for _ in range(workers)]

    def forward(signum: int, frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes, default=0)


def _shown(host: str) -> str:
    return "localhost" if host in ("localhost", "127.0.0.1", "::1") else host


def _ws_url(config: Any, port: int) -> str:
    return f"{'wss' if config.tls_cert else 'ws'}://{_shown(config.host)}:{port}/v1"


def _print_url(config: Any, port: int) -> None:
    print(f"url: {_ws_url(config, port)}", flush=True)


def _print_dev(config: Any, port: int, key: Any, admin_token: str) -> None:
    _print_url(config, port)
    print(f"app: {key.app_id}", flush=True)
    print(f"key: {key.key}", flush=True)
    print(f"admin-token: {admin_token}", flush=True)
    print(f"connect: {_ws_url(config, port)}?key={key.key}", flush=True)


async def _exit_with_parent(stop: asyncio.Event) -> None:
    """A worker drains when the ``--workers`` parent is gone (even killed with SIGKILL)."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    stop.set()


async def _serve(args: argparse.Namespace) -> int:
    from .server.app import Server
    from .server.settings import load_config
    from .server.store import open_store, random_base62

    config = load_config(_serve_flags(args), toml_path=args.config)
    _warn_admin_token_on_argv(args)
    if args.dev and not config.admin_token:
        config = dataclasses.replace(config, admin_token=random_base62(32))
    store = open_store(config.db)
    server = Server(config, store)
    await server.start()
    # Thousands of long-lived connection objects make every full collection a pause of
    # 100-200 ms (seen as the 5k-subscriber p99); collect young objects less often, full
    # ones rarely, and keep start-up objects out of the scan.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    if args.dev:
        assert config.admin_token is not None
        _print_dev(config, server.port, _dev_key(store), config.admin_token)
    elif not args.quiet:
        _print_url(config, server.port)
    if server.admin_port is not None and not args.quiet:
        _print_admin_url(config, server.admin_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.reuse_port:
        server.spawn(_exit_with_parent(stop))
    signalled = asyncio.ensure_future(stop.wait())
    # A drain asked for through the admin API ends the process too, once it is done.
    stopped = asyncio.ensure_future(server.stopped.wait())
    await asyncio.wait([signalled, stopped], return_when=asyncio.FIRST_COMPLETED)
    if not server.stopped.is_set():
        logging.getLogger("metered_realtime.server").info("draining")
        await server.drain()
    signalled.cancel()
    stopped.cancel()
    store.close()
    return 0


def _key_grants(args: argparse.Namespace) -> tuple[list[str], set[str]] | str:
    """The channel patterns and permissions ``keys create`` grants, or why they are refused.

    An explicitly empty list is an error, never the default: ``--channels ""`` must not
    grant every channel, nor ``--permissions ""`` the default set.
    """
    from .server.store import ALL_PERMISSIONS, DEFAULT_KEY_PERMISSIONS

    channels = _csv(args.channels)
    if not channels:
        return "--channels needs at least one pattern ('*' grants every channel)"
    listed = _csv(args.permissions)
    if listed is not None and not listed:
        choices = ", ".join(sorted(ALL_PERMISSIONS))
        return f"--permissions needs at least one of {choices} (omit it for the defaults)"
    perms = set(DEFAULT_KEY_PERMISSIONS if listed is None else listed) | set(args.allow)
    unknown = perms - ALL_PERMISSIONS
    if unknown:
        return f"unknown permissions: {', '.join(sorted(unknown))}"
    return channels, perms


def _keys(args: argparse.Namespace) -> int:
    from .server.store import open_store

    if args.keys_cmd == "list" and (args.app is not None or args.remote is not None):
        if args.app is None:
            print("error: keys list --remote needs --app", file=sys.stderr)
            return 2
        return run_admin(args)
    store = open_store(args.db)
    try:
        if args.keys_cmd == "create":
            grants = None if args.secret else _key_grants(args)
            if isinstance(grants, str):
                print(f"error: {grants}", file=sys.stderr)
                return 2
            app = _resolve_app(store, args.app)
            if grants is None:
                sk = store.create_secret_key(app.id)
                print(json.dumps({"app": app.id, "key_id": sk.id, "secret": sk.secret}))
                return 0
            channels, perms = grants
            pk = store.create_publishable_key(
                app.id,
                permissions=perms,
                channel_patterns=channels,
                allowed_origins=_csv(args.origins) or [],
                label=args.label,
            )
            print(json.dumps({"app": app.id, "key": pk.key, "permissions": sorted(perms)}))
            return 0
        if args.keys_cmd == "list":
            for app in store.list_apps():
                print(f"app {app.id} {app.name}{' (suspended)' if app.suspended else ''}")
                for pk in store.list_publishable_keys(app.id):
                    state = "revoked" if pk.revoked else "active"
                    granted = ",".join(sorted(pk.permissions))
                    patterns = ",".join(pk.channel_patterns)
                    print(f"  pk {pk.masked} {state} permissions={granted} channels={patterns}")
                for sk in store.list_secret_keys(app.id):
                    print(f"  sk {sk.id} {'revoked' if sk.revoked else 'active'}")
            return 0
        from .server.admin import resolve_ref

        if store.revoke(resolve_ref(store, args.key)):
            print("revoked")
            return 0
        print("no such key", file=sys.stderr)
        return 1
    finally:
        store.close()


def _token(args: argparse.Namespace) -> int:
    from .tokens import mint_token

    try:
        token = mint_token(
            args.key_id,
            args.secret,
            channels=_csv(args.channels),
            permissions=_csv(args.permissions),
            peer_metadata=json.loads(args.peer_metadata) if args.peer_metadata else None,
            metadata=json.loads(args.metadata) if args.metadata else None,
            ttl=args.ttl,
            sub=args.sub,
        )
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _run_serve(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    workers = _worker_count(args.workers)
    _setup_logging(args.log_level)
    if workers > 1:
        return _serve_workers(args, sys.argv[1:] if argv is None else argv, workers)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(args))
    return uvloop.run(_serve(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metered-realtime`` command."""
    args = build_parser().parse_args(argv)
    if args.cmd == "serve":
        from .server.tls import TlsSetupError

        try:
            return _run_serve(args, argv)
        except TlsSetupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.cmd == "keys":
        return _keys(args)
    if args.cmd in ("apps", "peers", "drain"):
        return run_admin(args)
    if args.cmd == "config":
        return config_command(args)
    if args.cmd == "demo":
        from .demo import main as demo_main

        return demo_main(args)
    return _token(args)


if __name__ == "__main__":
    sys.exit(main())
