"""Identifier rules shared by the SDK and the server ("lockstep" validation)."""

from __future__ import annotations

import re
from typing import TypeGuard

from .limits import MAX_CHANNEL_LENGTH, MAX_PEER_ID_LENGTH, MAX_REQUEST_ID_LENGTH

_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")
_RESERVED_RE = re.compile(r"^(?:_metered/|_internal/|_system/)", re.IGNORECASE)


def has_control_chars(value: str) -> bool:
    """True when ``value`` holds a C0/C1 control character or DEL."""
    # No control character is a letter or digit, and the server's peer ids are all letters
    # and digits: one C call answers the common case without the regex.
    return not value.isalnum() and _CONTROL_RE.search(value) is not None


def is_valid_channel(value: object) -> TypeGuard[str]:
    """A channel name: a string of 1..256 characters without control characters."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_CHANNEL_LENGTH
        and not has_control_chars(value)
    )


def is_valid_peer_id(value: object) -> TypeGuard[str]:
    """A peer id: a string of 1..128 characters without control characters."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_PEER_ID_LENGTH
        and not has_control_chars(value)
    )


def is_valid_request_id(value: object) -> TypeGuard[str]:
    """A request id: a string of 1..128 characters."""
    return isinstance(value, str) and 0 < len(value) <= MAX_REQUEST_ID_LENGTH


def is_reserved_channel(channel: str) -> bool:
    """True for channels under a reserved prefix (case-insensitive)."""
    return _RESERVED_RE.match(channel) is not None
