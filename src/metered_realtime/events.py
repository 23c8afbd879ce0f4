"""Every event the SDK emits, as a frozen, slotted dataclass.

Dispatch is keyed by the exact class. Fields that refer to WebRTC objects
(``RemotePeer``, ``MediaStream``, aiortc tracks and channels) are typed ``Any`` so
this module never imports aiortc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ._types import IceServerConfig
from .protocol.frames import PresencePeer

__all__ = [
    "Connected",
    "ConnectionReset",
    "DCClose",
    "DCError",
    "DCMessage",
    "DCOpen",
    "Data",
    "DataChannelOpened",
    "Direct",
    "Disconnected",
    "Event",
    "FatalError",
    "GoingAway",
    "IceCandidateError",
    "Joined",
    "Left",
    "Message",
    "NegotiationError",
    "PeerJoined",
    "PeerLeft",
    "Presence",
    "ServerError",
    "StateChange",
    "StreamAdded",
    "StreamRemoved",
    "TokenProviderError",
    "Track",
    "TurnError",
]


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of all events (registering a handler for ``Event`` itself receives nothing)."""


# --- shared -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateChange(Event):
    from_: str
    to: str


# --- SignallingClient -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected(Event):
    peer_id: str
    server_time: int
    expires_at: int | None
    is_reconnect: bool
    max_message_size: int
    ice_servers: tuple[IceServerConfig, ...] | None = None


@dataclass(frozen=True, slots=True)
class Disconnected(Event):
    code: int
    reason: str
    will_reconnect: bool


@dataclass(frozen=True, slots=True)
class Message(Event):
    channel: str
    sender_peer_id: str
    data: Any
    sender_metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Direct(Event):
    sender_peer_id: str
    data: Any
    sender_metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Presence(Event):
    channel: str
    joined: tuple[PresencePeer, ...]
    left: tuple[PresencePeer, ...]


@dataclass(frozen=True, slots=True)
class ServerError(Event):
    code: str
    message: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class GoingAway(Event):
    retry_after_ms: int


@dataclass(frozen=True, slots=True)
class TokenProviderError(Event):
    consecutive_failures: int
    err: Exception


# --- MeteredPeer ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Joined(Event):
    peer_id: str
    channel: str


@dataclass(frozen=True, slots=True)
class Left(Event):
    peer_id: str | None
    channel: str | None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PeerJoined(Event):
    peer: Any  # RemotePeer


@dataclass(frozen=True, slots=True)
class PeerLeft(Event):
    peer: Any  # RemotePeer


@dataclass(frozen=True, slots=True)
class Data(Event):
    sender_peer_id: str
    data: Any
    kind: Literal["broadcast", "direct"]
    sender_metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class FatalError(Event):
    err: Exception


# --- RemotePeer -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Track(Event):
    track: Any  # aiortc MediaStreamTrack
    streams: tuple[Any, ...] = ()  # tuple[MediaStream, ...]
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StreamAdded(Event):
    stream: Any  # MediaStream
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StreamRemoved(Event):
    stream: Any  # MediaStream


@dataclass(frozen=True, slots=True)
class DataChannelOpened(Event):
    channel: Any  # aiortc RTCDataChannel


@dataclass(frozen=True, slots=True)
class NegotiationError(Event):
    err: Exception


@dataclass(frozen=True, slots=True)
class IceCandidateError(Event):
    err: Exception


@dataclass(frozen=True, slots=True)
class TurnError(Event):
    """No relay candidate: the TURN server refused the allocation (not a silent ICE failure)."""

    err: Exception  # TurnAllocationError


@dataclass(frozen=True, slots=True)
class ConnectionReset(Event):
    """A survivor's connection was swapped after a reconnect; re-create data channels."""

    peer: Any  # RemotePeer


# --- DataChannel ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DCOpen(Event):
    pass


@dataclass(frozen=True, slots=True)
class DCClose(Event):
    pass


@dataclass(frozen=True, slots=True)
class DCError(Event):
    err: Exception


@dataclass(frozen=True, slots=True)
class DCMessage(Event):
    data: str | bytes
