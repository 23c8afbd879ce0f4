"""``config example`` and ``config check``: every setting as commented TOML, and the
effective settings with their secrets masked."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from urllib.parse import urlsplit

from .config import ServerConfig

MASK = "********"

DESCRIPTIONS: dict[str, str] = {
    "host": "Address the WebSocket and HTTP port binds.",
    "port": "Port of /v1, the probes and (without admin_port) /admin/ and /metrics; 0 = any.",
    "db": "SQLite file path or postgresql:// URL where apps and keys live.",
    "max_message_size": "Largest client frame payload, in bytes.",
    "envelope_room": "Bytes a frame may carry beyond max_message_size (its JSON envelope).",
    "max_subscriptions": "Channels one connection may subscribe to.",
    "rate_per_second": "Client frames a second per connection (token bucket refill).",
    "rate_burst": "Client frames a connection may send at once (token bucket size).",
    "max_connections_per_app": "Open connections per app over the whole cluster; unset = no cap.",
    "app_message_quota": "Messages an app may publish per quota_period; unset = no quota.",
    "quota_period": "Seconds over which app_message_quota counts.",
    "outbound_buffer_limit": "Bytes queued to one slow client before it is closed with 1008.",
    "peer_metadata_limit": "Largest peer metadata, in bytes of JSON.",
    "presence_window": "Seconds presence changes are batched into one frame (at most 0.05).",
    "presence_flush_events": "Presence changes that flush a batch before its window ends.",
    "presence_budget": "Bytes of presence entries one snapshot or delta frame may carry.",
    "ws_ping_interval": "Seconds between WebSocket pings; unset = no pings.",
    "ws_ping_timeout": "Seconds a ping may wait for its pong before the connection is closed.",
    "drain_grace": "Seconds between going_away and the 1001 closes of a drain.",
    "drain_timeout": "Seconds a drain waits for connections to close before it stops.",
    "going_away_retry_ms": "retryAfterMs sent in going_away.",
    "ice_urls": "STUN/TURN URLs offered to peers in welcome.",
    "turn_secret": "coturn static-auth-secret, for time-limited TURN credentials.",
    "turn_ttl": "Seconds a TURN credential lives.",
    "admin_token": "Bearer token of /admin/ and /console; unset = no admin API.",
    "redis": "redis://HOST:PORT/DB: join a cluster of servers over Redis.",
    "redis_prefix": "Prefix of this cluster's Redis keys and channels.",
    "reuse_port": "Share the port with other processes (SO_REUSEPORT; --workers sets it).",
    "store_refresh": "Seconds between re-reads of apps and keys from the store.",
    "jwt_leeway": "Seconds of clock skew allowed on a token's exp and nbf.",
    "max_connections": "WebSocket connections this process holds (HTTP 503 beyond).",
    "ip_connect_rate": "New connections a second per client address (HTTP 429 beyond).",
    "ip_connect_burst": "New connections a client address may open at once.",
    "ip_connect_exempt": "Networks never rate-limited (CIDR).",
    "ip_table_size": "Client addresses the rate limiter tracks at once.",
    "handshake_timeout": "Seconds a client has to finish its upgrade or HTTP request.",
    "max_token_length": "Longest ?token= accepted (4001 'token too long' beyond).",
    "admin_host": "Address of the admin listener.",
    "admin_port": "Serve /admin/, /console and /metrics only on this port; unset = public port.",
    "metrics_token": "Bearer token /metrics wants; unset = open.",
    "tls_cert": "PEM certificate chain: serve https:// and wss:// (with tls_key).",
    "tls_key": "PEM private key of tls_cert.",
    "trusted_proxies": "Reverse proxies whose X-Forwarded-For names the client (CIDR).",
}
"""One line for each setting; a test checks every ``ServerConfig`` field has one."""


def is_secret(field: dataclasses.Field[Any]) -> bool:
    """Secrets are the fields kept out of the config's repr."""
    return not field.repr


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def example() -> str:
    """A commented TOML file with every setting at its default; unset ones commented out."""
    lines = [
        "# metered-realtime server settings (serve --config FILE).",
        "# Environment variables METERED_REALTIME_<SETTING> and flags override them.",
        "[server]",
    ]
    for field in dataclasses.fields(ServerConfig):
        default = field.default_factory() if callable(field.default_factory) else field.default
        lines.append("")
        lines.append(f"# {DESCRIPTIONS[field.name]}")
        if is_secret(field):
            lines.append("# Prefer the environment variable: keep secrets out of files.")
        if default is None:
            lines.append(f'# {field.name} = "..."')
        else:
            lines.append(f"{field.name} = {_toml(default)}")
    return "\n".join(lines) + "\n"


def _fits(kind: str, value: Any) -> bool:
    if kind == "None":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "tuple[str, ...]":
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    raise AssertionError(f"no check for {kind}")  # a new kind of setting


def type_errors(config: ServerConfig) -> list[str]:
    """Settings whose value is not of the setting's type (``port = "80"`` from a file)."""
    return [
        f"{field.name} must be {field.type}, not {getattr(config, field.name)!r}"
        for field in dataclasses.fields(config)
        if not any(
            _fits(kind, getattr(config, field.name)) for kind in str(field.type).split(" | ")
        )
    ]


def _without_password(url: str) -> str:
    # A database URL may carry its password.
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":" + MASK + "@", 1)
    return parts._replace(netloc=netloc).geturl()


def effective(config: ServerConfig) -> str:
    """The settings in force, one ``name = value`` line each, secrets masked."""
    lines = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None:
            lines.append(f"# {field.name} is unset")
        elif is_secret(field):
            lines.append(f'{field.name} = "{MASK}"')
        elif isinstance(value, str) and "://" in value:
            lines.append(f"{field.name} = {_toml(_without_password(value))}")
        else:
            lines.append(f"{field.name} = {_toml(value)}")
    return "\n".join(lines) + "\n"
