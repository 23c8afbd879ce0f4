"""One malformed RTP header extension must not end a whole connection.

aiortc parses the header extensions of every RTP packet inside its DTLS transport's receive
loop, and any exception there closes the transport, so the connection dies with all its
tracks. Chromium sends zero-length extension elements (allowed by the two-byte header form of
RFC 8285), and aiortc's parser then raises on a value it expects to be one byte long, such as
the audio level; a remote peer can end the connection with one such packet. The guard keeps
the packet and drops only its extensions when they cannot be read.
"""

from __future__ import annotations

import struct
from typing import Any

from aiortc import rtp

_original_get = rtp.HeaderExtensionsMap.get


def _tolerant_get(self: Any, extension_profile: int, extension_value: bytes) -> Any:
    try:
        return _original_get(self, extension_profile, extension_value)
    except (struct.error, UnicodeDecodeError, ValueError, IndexError):
        return rtp.HeaderExtensions()


def install() -> None:
    """Make aiortc's header-extension parsing tolerant (idempotent)."""
    rtp.HeaderExtensionsMap.get = _tolerant_get  # type: ignore[method-assign]
