"""Numbers fixed by the wire protocol."""

from __future__ import annotations

MAX_CHANNEL_LENGTH = 256
MAX_PEER_ID_LENGTH = 128
MAX_REQUEST_ID_LENGTH = 128
DEFAULT_MAX_MESSAGE_SIZE = 65536
CLIENT_INBOUND_FRAME_CAP = 1_048_576
ENVELOPE_ROOM = 4096
MAX_ICE_SERVERS = 16
MAX_ICE_URL_LENGTH = 512
MAX_ICE_FIELD_LENGTH = 1024
GOING_AWAY_DEFAULT_MS = 1000
GOING_AWAY_MAX_MS = 300_000
MAX_NESTING = 512
"""Deepest a frame's JSON may nest (the frame object is level 1). Deeper frames are refused
the same way on every Python version, instead of wherever its parser happens to give up."""
