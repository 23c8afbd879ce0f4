"""TURN REST API credentials, as coturn's ``use-auth-secret`` mode checks them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from .config import ServerConfig


def turn_credential(secret: str, username: str) -> str:
    """``base64(HMAC-SHA1(secret, username))``."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def ice_servers(config: ServerConfig, peer_id: str, now: float) -> list[dict[str, Any]] | None:
    """Fresh ICE servers for one welcome, or None when none are configured."""
    if not config.ice_urls:
        return None
    stun = [u for u in config.ice_urls if u.lower().startswith(("stun:", "stuns:"))]
    turn = [u for u in config.ice_urls if u.lower().startswith(("turn:", "turns:"))]
    servers: list[dict[str, Any]] = []
    if stun:
        servers.append({"urls": stun})
    if turn and config.turn_secret:
        username = f"{int(now + config.turn_ttl)}:{peer_id}"
        servers.append(
            {
                "urls": turn,
                "username": username,
                "credential": turn_credential(config.turn_secret, username),
            }
        )
    return servers


def welcome_metadata(
    config: ServerConfig, jwt_metadata: dict[str, Any] | None, peer_id: str, now: float
) -> dict[str, Any] | None:
    """The welcome ``metadata``: the JWT bag, plus configured ICE servers unless it has its own."""
    servers = ice_servers(config, peer_id, now)
    if servers is None or (jwt_metadata is not None and "iceServers" in jwt_metadata):
        return jwt_metadata
    merged = dict(jwt_metadata or {})
    merged["iceServers"] = servers
    return merged
