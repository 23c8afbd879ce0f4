"""Every frame of the wire protocol as a frozen, slotted dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSONValue = Any
"""Any value ``json`` can round-trip; ``None`` is JSON ``null``."""


# --- client -> server -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscribeFrame:
    channel: str
    request_id: str | None = None
    include_sender_metadata: bool = False


@dataclass(frozen=True, slots=True)
class UnsubscribeFrame:
    channel: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class PublishFrame:
    channel: str
    data: JSONValue
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class SendFrame:
    to: str
    data: JSONValue
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class PingFrame:
    request_id: str | None = None


ClientFrame = SubscribeFrame | UnsubscribeFrame | PublishFrame | SendFrame | PingFrame


# --- server -> client -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PresencePeer:
    """One presence entry: a member's peer id and its token-asserted metadata."""

    peer_id: str
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class WelcomeFrame:
    peer_id: str
    expires_at: int | float | None
    server_time: int | float
    max_message_size: int | float
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AckFrame:
    request_id: str


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    code: str
    request_id: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class MessageFrame:
    channel: str
    sender: str
    data: JSONValue
    from_metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DirectFrame:
    sender: str
    data: JSONValue
    from_metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PresenceFrame:
    channel: str
    joined: tuple[PresencePeer, ...] = ()
    left: tuple[PresencePeer, ...] = ()


@dataclass(frozen=True, slots=True)
class GoingAwayFrame:
    retry_after_ms: int


@dataclass(frozen=True, slots=True)
class PongFrame:
    request_id: str | None = None


ServerFrame = (
    WelcomeFrame
    | AckFrame
    | ErrorFrame
    | MessageFrame
    | DirectFrame
    | PresenceFrame
    | GoingAwayFrame
    | PongFrame
)


@dataclass(frozen=True, slots=True)
class Malformed:
    """What the decoder returns instead of raising.

    ``code`` is the error code a server answers with; ``request_id`` is set only when
    the frame carried a valid one, so the answer can be correlated.
    """

    reason: str
    code: str = "malformed_message"
    request_id: str | None = None
