"""Error codes carried in ``error`` frames and WebSocket close codes."""

from __future__ import annotations

from enum import IntEnum
from typing import Literal, get_args

ErrorCode = Literal[
    "malformed_message",
    "unknown_type",
    "invalid_channel",
    "invalid_peer_id",
    "channel_not_authorized",
    "channel_reserved",
    "channel_limit_exceeded",
    "peer_not_found",
    "missing_data",
    "action_not_permitted",
    "over_message_quota",
    "backend_error",
    "internal_error",
]

ERROR_CODES: frozenset[str] = frozenset(get_args(ErrorCode))


class WsCloseCode(IntEnum):
    """WebSocket close codes the service and the SDKs use."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    ABNORMAL_CLOSURE = 1006
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    CLIENT_INACTIVITY = 4000
    INVALID_TOKEN = 4001
    TOKEN_EXPIRED = 4002
    CHANNEL_NOT_AUTHORIZED = 4003
    OVER_CONCURRENT_LIMIT = 4010
    OVER_MESSAGE_RATE = 4011
    ACCOUNT_SUSPENDED = 4012
    ADMIN_DISCONNECT = 4020


#: Close codes after which a client must not reconnect.
TERMINAL_CLOSE_CODES: frozenset[int] = frozenset({4001, 4003, 4012, 4020})

#: Close codes that MeteredPeer surfaces as fatal once reconnecting is off or exhausted.
FATAL_CLOSE_CODES: frozenset[int] = frozenset({4001, 4002, 4003, 4012, 4020})

#: Symbolic names of the fatal close codes.
FATAL_CLOSE_NAMES: dict[int, str] = {
    4001: "invalid_token",
    4002: "token_expired",
    4003: "channel_not_authorized",
    4012: "account_suspended",
    4020: "admin_disconnect",
}

#: Close code after which the next reconnect delay has a 30 s floor.
SLOW_BACKOFF_CLOSE_CODES: frozenset[int] = frozenset({4010})
