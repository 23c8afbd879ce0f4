"""Server configuration: every limit of docs/server-reference.md, with its default."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..protocol.limits import CLIENT_INBOUND_FRAME_CAP

PRESENCE_ENVELOPE_ROOM = 4096
"""Bytes kept for a presence frame's envelope: ``type``, the channel name as JSON (at most
3,074 bytes: 256 characters, each at most 12 bytes when escaped) and the brackets."""

MAX_PRESENCE_BUDGET = CLIENT_INBOUND_FRAME_CAP - PRESENCE_ENVELOPE_ROOM
"""1,044,480: the largest ``presence_budget`` that keeps every presence frame within the
SDKs' 1 MiB inbound cap."""

PRESENCE_ENTRY_ROOM = 256
"""Bytes of a presence entry beyond its metadata: ``{"peerId":"…","metadata":…}``."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Settings of one server process. Durations are seconds, sizes bytes."""

    host: str = "127.0.0.1"
    port: int = 8080
    db: str = "metered-realtime.db"
    max_message_size: int = 65536
    envelope_room: int = 4096
    max_subscriptions: int = 100
    rate_per_second: float = 200.0
    rate_burst: float = 400.0
    max_connections_per_app: int | None = None
    app_message_quota: int | None = None
    quota_period: float = 86400.0
    outbound_buffer_limit: int = 4 * 1024 * 1024
    peer_metadata_limit: int = 4096
    presence_window: float = 0.02
    presence_flush_events: int = 512
    # Bytes of a channel's presence entries (each entry's compact JSON plus one separator)
    # that a snapshot or one delta frame may carry; see docs/self-hosting.md.
    presence_budget: int = MAX_PRESENCE_BUDGET
    ws_ping_interval: float | None = 30.0
    ws_ping_timeout: float | None = 30.0
    drain_grace: float = 2.0
    drain_timeout: float = 30.0
    going_away_retry_ms: int = 1000
    ice_urls: tuple[str, ...] = field(default_factory=tuple)
    turn_secret: str | None = field(default=None, repr=False)
    turn_ttl: float = 86400.0
    admin_token: str | None = field(default=None, repr=False)
    redis: str | None = field(default=None, repr=False)
    redis_prefix: str = "mr"
    reuse_port: bool = False
    store_refresh: float = 1.0
    jwt_leeway: float = 60.0
    # The front door (docs/self-hosting.md, "Resource limits"): WebSocket connections per
    # node (HTTP 503 beyond it), new connections per client address (token bucket, HTTP 429;
    # IPv6 counted per /64; the networks in ip_connect_exempt are never limited), how many
    # addresses are tracked, the time a client has to finish its request or upgrade, and
    # the longest ?token= accepted (close 4001 "token too long" beyond it).
    max_connections: int | None = 10000
    ip_connect_rate: float | None = 20.0
    ip_connect_burst: float = 40.0
    ip_connect_exempt: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    ip_table_size: int = 65536
    handshake_timeout: float = 10.0
    max_token_length: int = 16384
    # A separate listener for /admin/ and /metrics (None: they share the public port), and
    # a bearer token /metrics wants (None: open).
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None
    metrics_token: str | None = field(default=None, repr=False)
    # TLS on both listeners (PEM files; both or neither), and the reverse proxies whose
    # X-Forwarded-For names the client (docs/self-hosting.md, "Behind a reverse proxy").
    tls_cert: str | None = None
    tls_key: str | None = None
    trusted_proxies: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.max_message_size <= 0:
            raise ValueError("max_message_size must be positive")
        if self.max_subscriptions <= 0:
            raise ValueError("max_subscriptions must be positive")
        if self.rate_per_second <= 0 or self.rate_burst < 1:
            raise ValueError("rate_per_second must be positive and rate_burst at least 1")
        if not 0 <= self.presence_window <= 0.05:
            raise ValueError("presence_window must be between 0 and 0.05 s")
        if not self.peer_metadata_limit + PRESENCE_ENTRY_ROOM <= self.presence_budget:
            raise ValueError("presence_budget must hold one member with the largest peer metadata")
        if self.presence_budget > MAX_PRESENCE_BUDGET:
            raise ValueError(
                f"presence_budget must be at most {MAX_PRESENCE_BUDGET} bytes (1 MiB less "
                f"{PRESENCE_ENVELOPE_ROOM} for the frame envelope), the SDKs' inbound frame cap"
            )
        if self.outbound_buffer_limit <= 0:
            raise ValueError("outbound_buffer_limit must be positive")
        if self.redis is not None and not self.redis.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("redis must be a redis://, rediss:// or unix:// URL")
        if not 0 < self.store_refresh <= 3600:
            raise ValueError("store_refresh must be between 0 and 3600 s")
        if not 0 <= self.jwt_leeway < float("inf"):
            raise ValueError("jwt_leeway must be a finite number of seconds, at least 0")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("max_connections must be at least 1 (or none for no cap)")
        if self.ip_connect_rate is not None and not 0 < self.ip_connect_rate < float("inf"):
            raise ValueError("ip_connect_rate must be a positive number (or none to turn it off)")
        if not 1 <= self.ip_connect_burst < float("inf"):
            raise ValueError("ip_connect_burst must be at least 1")
        for network in (*self.ip_connect_exempt, *self.trusted_proxies):
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        if self.ip_table_size < 1:
            raise ValueError("ip_table_size must be at least 1")
        if not 0 < self.handshake_timeout <= 3600:
            raise ValueError("handshake_timeout must be between 0 and 3600 s")
        if not 256 <= self.max_token_length <= 1024 * 1024:
            raise ValueError("max_token_length must be between 256 bytes and 1 MiB")
        if self.admin_port is not None and not 0 <= self.admin_port <= 65535:
            raise ValueError("admin_port must be a port number (0 = any free one)")
        if self.metrics_token == "":
            raise ValueError("metrics_token must not be empty (leave it unset for open /metrics)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both, or neither")
