"""Credentials to principals: publishable keys, HS256 JWTs, permissions, channel patterns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

from ..protocol import dumps, to_wire_bytes
from .store import ALL_PERMISSIONS, Store


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
    """Who a connection is: its app, what it may do, and its token-asserted metadata."""

    app_id: str
    permissions: frozenset[str]
    scope: ChannelScope = field(repr=False)
    peer_metadata: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = field(default=None, repr=False)
    expires_at: int | None = None
    credential_id: str = ""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A credential that must be refused: closed with ``code`` before the welcome."""

    code: int
    reason: str


def authenticate(
    store: Store,
    *,
    key: str | None,
    token: str | None,
    origin: str | None,
    now: float,
    peer_metadata_limit: int = 4096,
) -> Principal | Refusal:
    """Resolve the query-string credential into a Principal, or say why it is refused."""
    if (key is None) == (token is None):
        return Refusal(4001, "exactly one of key or token is required")
    if key is not None:
        principal = _from_key(store, key, origin)
    else:
        assert token is not None
        principal = _from_token(store, token, now, peer_metadata_limit)
    if isinstance(principal, Refusal):
        return principal
    app = store.get_app(principal.app_id)
    if app is None:
        return Refusal(4001, "unknown app")
    if app.suspended:
        return Refusal(4012, "account suspended")
    return principal


def _from_key(store: Store, key: str, origin: str | None) -> Principal | Refusal:
    record = store.get_publishable_key(key)
    if record is None or record.revoked:
        return Refusal(4001, "invalid key")
    if record.allowed_origins and origin not in record.allowed_origins:
        return Refusal(4001, "origin not allowed")
    return Principal(
        app_id=record.app_id,
        permissions=record.permissions,
        scope=ChannelScope(record.channel_patterns),
        credential_id=record.masked,
    )


def _from_token(store: Store, token: str, now: float, meta_limit: int) -> Principal | Refusal:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return Refusal(4001, "malformed token")
    kid = header.get("kid")
    if header.get("alg") != "HS256" or not isinstance(kid, str):
        return Refusal(4001, "token must be HS256 with a kid")
    secret_key = store.get_secret_key(kid)
    if secret_key is None or secret_key.revoked:
        return Refusal(4001, "unknown signing key")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret_key.secret,
            algorithms=["HS256"],
            options={"require": ["exp"], "verify_exp": False, "verify_aud": False},
        )
    except jwt.PyJWTError:
        return Refusal(4001, "invalid token")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        return Refusal(4001, "exp must be a number")
    if exp <= now:
        return Refusal(4002, "token expired")
    return _claims_principal(secret_key.app_id, kid, claims, int(exp), meta_limit)


def _claims_principal(
    app_id: str, kid: str, claims: dict[str, Any], exp: int, meta_limit: int
) -> Principal | Refusal:
    channels = claims.get("channels", ["*"])
    if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
        return Refusal(4001, "channels must be a list of patterns")
    if not channels:
        return Refusal(4003, "token grants no channel")
    permissions = claims.get("permissions", sorted(ALL_PERMISSIONS))
    if not isinstance(permissions, list) or not set(permissions) <= ALL_PERMISSIONS:
        return Refusal(4001, "permissions must be a subset of subscribe/publish/presence/send")
    peer_metadata = claims.get("peerMetadata")
    if peer_metadata is not None:
        if not isinstance(peer_metadata, dict):
            return Refusal(4001, "peerMetadata must be an object")
        if len(to_wire_bytes(dumps(peer_metadata))) > meta_limit:
            return Refusal(4001, "peerMetadata too large")
    metadata = claims.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return Refusal(4001, "metadata must be an object")
    return Principal(
        app_id=app_id,
        permissions=frozenset(permissions),
        scope=ChannelScope(channels),
        peer_metadata=peer_metadata,
        metadata=metadata,
        expires_at=exp,
        credential_id=kid,
    )
