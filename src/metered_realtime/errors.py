"""The typed error tree of the SDK."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "AccountSuspendedError",
    "AckTimeoutError",
    "AdminDisconnectError",
    "ChannelNotAuthorizedError",
    "DataChannelOverflowError",
    "DisconnectedError",
    "IceRestartExhaustedError",
    "InvalidTokenError",
    "MeteredPeerOversizedError",
    "MeteredPeerReplaceTrackError",
    "MeteredPeerSendError",
    "MeteredPeerStateError",
    "MeteredRealtimeError",
    "NotConnectedError",
    "OversizedPayloadError",
    "ReconcileTimeoutError",
    "ReplaceTrackFailure",
    "ServerRequestError",
    "SignallingConnectError",
    "SignallingError",
    "TerminalCloseError",
    "TokenExpiredError",
    "TokenProviderFailedError",
    "TurnAllocationError",
    "fatal_error_for_close",
]


class MeteredRealtimeError(Exception):
    """Base class of every error the SDK raises itself."""


class SignallingError(MeteredRealtimeError):
    """A signalling failure, e.g. ``connect()`` called in a wrong state."""


class NotConnectedError(SignallingError):
    """A request was attempted while the client was not connected; nothing was sent."""

    def __init__(self, message: str = "signalling client is not connected") -> None:
        super().__init__(message)


class SignallingConnectError(SignallingError):
    """The first connection attempt failed before the welcome frame arrived."""

    def __init__(self, close_code: int, close_reason: str = "") -> None:
        self.close_code = close_code
        self.close_reason = close_reason
        text = f"signalling connect failed (code {close_code})"
        if close_reason:
            text += f": {close_reason}"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.close_code, self.close_reason))


class ServerRequestError(SignallingError):
    """The server answered a request with a correlated ``error`` frame."""

    def __init__(
        self, code: str, message: str | None = None, request_id: str | None = None
    ) -> None:
        self.code = code
        self.server_message = message
        self.request_id = request_id
        super().__init__(message or f"server rejected request: {code}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.server_message, self.request_id))


class AckTimeoutError(SignallingError):
    """No ack arrived for a request within the ack timeout."""

    def __init__(self, request_id: str, timeout: float = 15.0) -> None:
        self.request_id = request_id
        self.timeout = timeout
        super().__init__(f"no ack for request {request_id} within {timeout:g} s")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.request_id, self.timeout))


class DisconnectedError(SignallingError):
    """The connection dropped before the request was acknowledged."""

    def __init__(self, message: str = "connection closed before the ack arrived") -> None:
        super().__init__(message)


class OversizedPayloadError(SignallingError):
    """``data`` is larger than the server's ``maxMessageSize``; nothing was sent."""

    def __init__(self, size: int, cap: int) -> None:
        self.size = size
        self.cap = cap
        super().__init__(f"payload of {size} bytes exceeds the {cap}-byte message cap")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.size, self.cap))


class ReconcileTimeoutError(MeteredRealtimeError):
    """MeteredPeer gave up waiting for the presence snapshot after a reconnect."""

    def __init__(
        self,
        message: str = (
            "no presence snapshot after reconnecting; call close() and create a new MeteredPeer"
        ),
    ) -> None:
        super().__init__(message)


class MeteredPeerSendError(MeteredRealtimeError):
    """A MeteredPeer send was refused locally (``.code`` names why)."""

    def __init__(self, code: str, message: str | None = None) -> None:
        self.code = code
        super().__init__(message or code)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, str(self)))


class MeteredPeerOversizedError(MeteredRealtimeError):
    """A MeteredPeer payload is larger than the message cap; nothing was sent."""

    def __init__(self, size: int, cap: int) -> None:
        self.size = size
        self.cap = cap
        super().__init__(f"payload of {size} bytes exceeds the {cap}-byte message cap")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.size, self.cap))


class MeteredPeerStateError(MeteredRealtimeError):
    """A MeteredPeer method was called in a state that does not allow it."""

    def __init__(
        self,
        code: str,
        method: str,
        current_state: str | None = None,
        message: str | None = None,
    ) -> None:
        self.code = code
        self.method = method
        self.current_state = current_state
        if message is None:
            message = f"{method}() not allowed: {code}"
            if current_state is not None:
                message += f" (state {current_state})"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.method, self.current_state, str(self)))


@dataclass(frozen=True, slots=True)
class ReplaceTrackFailure:
    """One peer for which ``replace_track`` failed (a record, not an exception)."""

    peer_id: str
    err: BaseException


class MeteredPeerReplaceTrackError(MeteredRealtimeError):
    """``replace_track`` failed for at least one peer."""

    def __init__(self, succeeded: tuple[str, ...], failed: tuple[ReplaceTrackFailure, ...]) -> None:
        self.succeeded = tuple(succeeded)
        self.failed = tuple(failed)
        total = len(self.succeeded) + len(self.failed)
        super().__init__(f"replace_track failed for {len(self.failed)} of {total} peer(s)")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.succeeded, self.failed))


class DataChannelOverflowError(MeteredRealtimeError):
    """Too many sends are already waiting on a DataChannel."""

    def __init__(self, queued: int, cap: int) -> None:
        self.queued = queued
        self.cap = cap
        super().__init__(f"{queued} sends already queued (cap {cap})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.queued, self.cap))


class IceRestartExhaustedError(MeteredRealtimeError):
    """ICE recovery gave up after its whole rebuild budget."""

    def __init__(self, attempts: int = 9, message: str | None = None) -> None:
        self.attempts = attempts
        super().__init__(message or f"ICE recovery gave up after {attempts} attempts")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.attempts, str(self)))


class TurnAllocationError(MeteredRealtimeError):
    """A TURN server refused (or never answered) a connection's relay allocation.

    ``url`` is the TURN URL (never the credential); ``code`` the STUN error code coturn
    answered (401: credential rejected), None without an answer; ``expired`` is True when the
    TURN REST username's expiry time had passed, so a fresh welcome's credential is needed.
    """

    def __init__(self, url: str, code: int | None, reason: str, expired: bool = False) -> None:
        self.url = url
        self.code = code
        self.reason = reason
        self.expired = expired
        answer = f"{code} {reason}" if code is not None else reason
        text = f"TURN server {url} refused the relay allocation: {answer}"
        if expired:
            text += " (the TURN credential has expired)"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.url, self.code, self.reason, self.expired))


class TerminalCloseError(MeteredRealtimeError):
    """Base of the typed fatal causes; ``close_code`` is the WebSocket close code if any."""

    default_code: int | None = None
    name: str = "terminal_close"

    def __init__(
        self,
        message: str | None = None,
        *,
        close_code: int | None = None,
        close_reason: str | None = None,
    ) -> None:
        self.close_code = self.default_code if close_code is None else close_code
        self.close_reason = close_reason
        if message is None:
            message = f"connection closed terminally ({self.name}"
            if self.close_code is not None:
                message += f", code {self.close_code}"
            message += ")"
            if close_reason:
                message += f": {close_reason}"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_terminal, (type(self), str(self), self.close_code, self.close_reason))


def _rebuild_terminal(
    cls: type[TerminalCloseError], message: str, code: int | None, reason: str | None
) -> TerminalCloseError:
    return cls(message, close_code=code, close_reason=reason)


class InvalidTokenError(TerminalCloseError):
    """The credential was rejected (close 4001 or an ``invalid_token`` error)."""

    default_code = 4001
    name = "invalid_token"


class TokenExpiredError(TerminalCloseError):
    """The token expired and no reconnect will fetch a new one (close 4002)."""

    default_code = 4002
    name = "token_expired"


class ChannelNotAuthorizedError(TerminalCloseError):
    """The credential grants no access to the channel (close 4003 or error frame)."""

    default_code = 4003
    name = "channel_not_authorized"


class AccountSuspendedError(TerminalCloseError):
    """The account is suspended (close 4012)."""

    default_code = 4012
    name = "account_suspended"


class AdminDisconnectError(TerminalCloseError):
    """An operator disconnected this peer (close 4020)."""

    default_code = 4020
    name = "admin_disconnect"


class TokenProviderFailedError(MeteredRealtimeError):
    """The token provider failed ``consecutive_failures`` times in a row."""

    def __init__(self, consecutive_failures: int, message: str | None = None) -> None:
        self.consecutive_failures = consecutive_failures
        super().__init__(
            message or f"token provider failed {consecutive_failures} consecutive attempts"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.consecutive_failures, str(self)))


_BY_CODE: dict[int, type[TerminalCloseError]] = {
    4001: InvalidTokenError,
    4002: TokenExpiredError,
    4003: ChannelNotAuthorizedError,
    4012: AccountSuspendedError,
    4020: AdminDisconnectError,
}


def fatal_error_for_close(code: int, reason: str | None = None) -> TerminalCloseError | None:
    """The typed fatal cause for a close code in the fatal set, else ``None``."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return None
    return cls(close_code=code, close_reason=reason or None)
