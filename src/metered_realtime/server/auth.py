"""Credentials to principals: publishable keys, HS256 JWTs, permissions, channel patterns."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

import jwt

from ..protocol import dumps, parse_json, to_wire_bytes
from .store import ALL_PERMISSIONS, Store

if TYPE_CHECKING:
    from .keycache import KeyCache


def glob_match(pattern: str, name: str) -> bool:
    """True when ``pattern`` matches all of ``name``; ``*`` is any run of characters.

    No other character is special. Linear-time in practice (at worst O(len(name) *
    len(pattern)) through ``str.find``), never backtracking: the first segment must be a
    prefix, the last a suffix, and each middle segment is taken at its leftmost occurrence
    after the previous one, which is always a match when any match exists.
    """
    if "*" not in pattern:
        return pattern == name
    first, *middle, last = pattern.split("*")
    if len(first) + len(last) > len(name):
        return False
    if not name.startswith(first) or not name.endswith(last):
        return False
    pos, end = len(first), len(name) - len(last)
    for segment in middle:
        if not segment:
            continue
        found = name.find(segment, pos, end)
        if found < 0:
            return False
        pos = found + len(segment)
    return True


class ChannelScope:
    """Channel patterns: literal names, ``*`` matching any run of characters."""

    __slots__ = ("_any", "_globs", "_literals", "_patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self._patterns = tuple(patterns)
        self._any = "*" in self._patterns
        self._literals = frozenset(p for p in self._patterns if "*" not in p)
        self._globs = tuple(dict.fromkeys(p for p in self._patterns if "*" in p))

    @property
    def empty(self) -> bool:
        """True when no channel at all is granted."""
        return not self._patterns

    def allows(self, channel: str) -> bool:
        """True when some pattern matches the whole channel name."""
        if self._any or channel in self._literals:
            return True
        return any(glob_match(p, channel) for p in self._globs)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a connection is: its app, what it may do, and its token-asserted metadata.

    ``expires_at`` is the token's ``exp`` (what the welcome reports); ``closes_at`` is when
    the server closes the connection with 4002: ``exp`` plus the clock-skew leeway, rounded
    up to the second. It defaults to ``expires_at``.
    """

    app_id: str
    permissions: frozenset[str]
    scope: ChannelScope = field(repr=False)
    peer_metadata: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = field(default=None, repr=False)
    expires_at: int | None = None
    credential_id: str = ""
    closes_at: int | None = None

    def __post_init__(self) -> None:
        if self.closes_at is None and self.expires_at is not None:
            object.__setattr__(self, "closes_at", self.expires_at)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A credential that must be refused: closed with ``code`` before the welcome."""

    code: int
    reason: str


DEFAULT_LEEWAY = 60.0
"""Seconds of clock skew allowed between the token issuer and this server."""

MAX_TIMESTAMP = 253402300799
"""9999-12-31T23:59:59Z: a later ``exp``/``iat``/``nbf`` is refused as out of range."""

MAX_CLAIM_DEPTH = 32
"""Deepest nesting of ``metadata``/``peerMetadata``: always far within what JSON encoding
(which recurses) handles wherever the server writes them into a frame."""

_JWS = jwt.PyJWS(algorithms=["HS256"])

# What a hostile token can make PyJWT (or the claims checks) raise besides its own errors.
_DECODE_ERRORS = (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError)


def authenticate(
    store: Store | KeyCache,
    *,
    key: str | None,
    token: str | None,
    origin: str | None,
    now: float,
    peer_metadata_limit: int = 4096,
    leeway: float = DEFAULT_LEEWAY,
) -> Principal | Refusal:
    """Resolve the query-string credential into a Principal, or say why it is refused.

    ``leeway`` is the clock skew, in seconds, tolerated on a JWT's ``iat``, ``nbf`` and
    ``exp``: a token is accepted from ``iat``/``nbf`` minus the leeway until ``exp`` plus
    the leeway, and a connection it opened is closed (4002) at ``exp`` plus the leeway.
    """
    if (key is None) == (token is None):
        return Refusal(4001, "exactly one of key or token is required")
    if key is not None:
        principal = _from_key(store, key, origin)
    else:
        assert token is not None
        principal = _from_token(store, token, now, peer_metadata_limit, leeway)
    if isinstance(principal, Refusal):
        return principal
    app = store.get_app(principal.app_id)
    if app is None:
        return Refusal(4001, "unknown app")
    if app.suspended:
        return Refusal(4012, "account suspended")
    return principal


def _from_key(store: Store | KeyCache, key: str, origin: str | None) -> Principal | Refusal:
    record = store.get_publishable_key(key)
    if record is None or record.revoked:
        return Refusal(4001, "invalid key")
    if record.allowed_origins and origin not in record.allowed_origins:
        return Refusal(4001, "origin not allowed")
    return Principal(
        app_id=record.app_id,
        permissions=record.permissions,
        scope=ChannelScope(record.channel_patterns),
        credential_id=record.credential_ref,
    )


def _from_token(
    store: Store | KeyCache, token: str, now: float, meta_limit: int, leeway: float
) -> Principal | Refusal:
    # PyJWT checks the header and the signature only; the claims are parsed and checked
    # here, so that no value in them (NaN, 1e400, a list where a number belongs) can raise.
    try:
        header = jwt.get_unverified_header(token)
    except _DECODE_ERRORS:
        return Refusal(4001, "malformed token")
    kid = header.get("kid")
    if header.get("alg") != "HS256" or not isinstance(kid, str):
        return Refusal(4001, "token must be HS256 with a kid")
    secret_key = store.get_secret_key(kid)
    if secret_key is None or secret_key.revoked:
        return Refusal(4001, "unknown signing key")
    try:
        payload = _JWS.decode(token, secret_key.secret, algorithms=["HS256"])
    except _DECODE_ERRORS:
        return Refusal(4001, "invalid token")
    claims = parse_json(payload) if isinstance(payload, bytes) else None
    if not isinstance(claims, dict):
        return Refusal(4001, "token claims must be a JSON object of finite numbers")
    times: dict[str, float] = {}
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if value is None and name != "exp":
            continue
        if not _is_timestamp(value):
            return Refusal(4001, f"{name} must be a number of seconds")
        times[name] = value
    for name in ("iat", "nbf"):
        if name in times and times[name] > now + leeway:
            return Refusal(4001, f"token not valid yet ({name} is in the future)")
    exp = times["exp"]
    if exp + leeway <= now:
        return Refusal(4002, "token expired")
    return _claims_principal(
        secret_key.app_id, kid, claims, int(exp), math.ceil(exp + leeway), meta_limit
    )


def _is_timestamp(value: object) -> TypeGuard[int | float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return -MAX_TIMESTAMP <= value <= MAX_TIMESTAMP


def _json_size(value: object) -> int | None:
    """Bytes of ``value`` as compact JSON, or None when it is nested deeper than
    ``MAX_CLAIM_DEPTH`` or cannot be written as JSON at all."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_CLAIM_DEPTH:
                return None
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    try:
        return len(to_wire_bytes(dumps(value)))
    except (ValueError, TypeError, RecursionError):
        return None


def _claims_principal(
    app_id: str,
    kid: str,
    claims: dict[str, Any],
    exp: int,
    closes_at: int,
    meta_limit: int,
) -> Principal | Refusal:
    channels = claims.get("channels", ["*"])
    if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
        return Refusal(4001, "channels must be a list of patterns")
    if not channels:
        return Refusal(4003, "token grants no channel")
    permissions = claims.get("permissions", sorted(ALL_PERMISSIONS))
    if (
        not isinstance(permissions, list)
        or not all(isinstance(p, str) for p in permissions)
        or not set(permissions) <= ALL_PERMISSIONS
    ):
        return Refusal(4001, "permissions must be a subset of subscribe/publish/presence/send")
    peer_metadata = claims.get("peerMetadata")
    if peer_metadata is not None:
        if not isinstance(peer_metadata, dict):
            return Refusal(4001, "peerMetadata must be an object")
        size = _json_size(peer_metadata)
        if size is None or size > meta_limit:
            return Refusal(4001, "peerMetadata too large")
    metadata = claims.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or _json_size(metadata) is None):
        return Refusal(4001, "metadata must be an object")
    return Principal(
        app_id=app_id,
        permissions=frozenset(permissions),
        scope=ChannelScope(channels),
        peer_metadata=peer_metadata,
        metadata=metadata,
        expires_at=exp,
        credential_id=kid,
        closes_at=closes_at,
    )
