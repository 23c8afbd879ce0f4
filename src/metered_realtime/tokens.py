"""Mint the JWTs the metered-realtime server accepts (for customer backends and tests)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

PERMISSIONS: frozenset[str] = frozenset({"subscribe", "publish", "presence", "send"})


def mint_token(
    secret_key_id: str,
    secret: str,
    *,
    channels: Iterable[str] | None = None,
    permissions: Iterable[str] | None = None,
    peer_metadata: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    ttl: float = 3600.0,
    sub: str | None = None,
    now: float | None = None,
) -> str:
    """Sign an HS256 JWT with a secret key (``kid`` = the key's public ``sk_id_`` id).

    ``channels`` and ``permissions`` left as ``None`` grant everything; ``ttl`` is in
    seconds and must be positive. Needs PyJWT (the ``auth`` or ``server`` extra).
    """
    try:
        import jwt
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("mint_token needs PyJWT: pip install 'metered-realtime[auth]'") from exc
    if not secret_key_id or not secret:
        raise ValueError("secret_key_id and secret are required")
    if not ttl > 0:
        raise ValueError("ttl must be a positive number of seconds")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {"iat": int(issued), "exp": int(issued + ttl)}
    if sub is not None:
        claims["sub"] = sub
    if channels is not None:
        claims["channels"] = list(channels)
    if permissions is not None:
        perms = list(permissions)
        unknown = set(perms) - PERMISSIONS
        if unknown:
            raise ValueError(f"unknown permissions: {sorted(unknown)}")
        claims["permissions"] = perms
    if peer_metadata is not None:
        claims["peerMetadata"] = dict(peer_metadata)
    if metadata is not None:
        claims["metadata"] = dict(metadata)
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": secret_key_id})
