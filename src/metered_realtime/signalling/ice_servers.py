"""``welcome.metadata.iceServers`` extraction, fail-closed."""

from __future__ import annotations

from typing import Any

from .._types import IceServerConfig
from ..protocol.limits import MAX_ICE_FIELD_LENGTH, MAX_ICE_SERVERS, MAX_ICE_URL_LENGTH

__all__ = ["parse_ice_servers"]

_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


def _valid_url(url: object) -> bool:
    return (
        isinstance(url, str)
        and 0 < len(url) <= MAX_ICE_URL_LENGTH
        and url.lower().startswith(_SCHEMES)
    )


def parse_ice_servers(metadata: dict[str, Any] | None) -> tuple[IceServerConfig, ...] | None:
    """The ICE server list of a welcome, or ``None`` when absent or anything is invalid."""
    if not isinstance(metadata, dict) or "iceServers" not in metadata:
        return None
    raw = metadata["iceServers"]
    if not isinstance(raw, list) or len(raw) > MAX_ICE_SERVERS:
        return None
    out: list[IceServerConfig] = []
    for entry in raw:
        if not isinstance(entry, dict):
            return None
        urls = entry.get("urls")
        shaped: str | tuple[str, ...]
        if isinstance(urls, str):
            shaped = urls
        elif isinstance(urls, list) and urls:
            shaped = tuple(urls)
        else:
            return None
        if not all(_valid_url(u) for u in ((shaped,) if isinstance(shaped, str) else shaped)):
            return None
        username = entry.get("username")
        credential = entry.get("credential")
        if username is not None and not isinstance(username, str):
            username = None
        if credential is not None and not isinstance(credential, str):
            credential = None
        if username is not None and len(username) > MAX_ICE_FIELD_LENGTH:
            return None
        if credential is not None and len(credential) > MAX_ICE_FIELD_LENGTH:
            return None
        out.append(IceServerConfig(shaped, username, credential))
    return tuple(out)
