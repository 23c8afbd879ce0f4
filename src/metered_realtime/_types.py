"""Small shared types: ICE server entries, state names, aliases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "IceServerConfig",
    "MeteredPeerState",
    "PeerConnectionState",
    "SignallingClientState",
    "StreamMetadata",
    "TokenProviderFn",
]

SignallingClientState = Literal["idle", "connecting", "connected", "reconnecting", "closed"]
MeteredPeerState = Literal["idle", "joining", "joined", "reconnecting", "leaving", "closed"]
PeerConnectionState = Literal["idle", "connecting", "connected", "reconnecting", "closed"]

StreamMetadata = dict[str, Any]
"""Metadata attached to a stream or track: a plain dict (``role``, ``label`` by convention)."""

TokenProviderFn = Callable[[], Awaitable[str] | str]
"""A zero-argument callable returning a JWT, or an awaitable of one (sync or async)."""


@dataclass(frozen=True, slots=True)
class IceServerConfig:
    """One STUN/TURN server from ``welcome.metadata.iceServers``.

    ``urls`` keeps the welcome's shape: a string stays a string, a list becomes a tuple.
    ``credential`` is kept out of ``repr()`` so that logging the object never leaks it.
    """

    urls: str | tuple[str, ...]
    username: str | None = None
    credential: str | None = field(default=None, repr=False)
