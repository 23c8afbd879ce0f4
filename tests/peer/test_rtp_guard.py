"""A malformed RTP header extension costs only that packet's extensions, not the connection."""

from __future__ import annotations

import struct

import pytest

rtp = pytest.importorskip("aiortc.rtp")
params = pytest.importorskip("aiortc.rtcrtpparameters")

from metered_realtime.peer import rtp_guard  # noqa: E402


def packet_with_empty_audio_level() -> bytes:
    header = bytes([0x90, 111]) + struct.pack("!HII", 1, 0, 1234)  # V=2, X=1, PT 111
    # Two-byte header form (RFC 8285): element id 1 with a zero-length value, then padding.
    extension = struct.pack("!HH", 0x1000, 1) + bytes([1, 0, 0, 0])
    return header + extension + b"\x00" * 10


def audio_level_map() -> object:
    mapping = rtp.HeaderExtensionsMap()
    mapping.configure(
        params.RTCRtpParameters(
            headerExtensions=[
                params.RTCRtpHeaderExtensionParameters(
                    id=1, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"
                )
            ]
        )
    )
    return mapping


def test_empty_audio_level_extension_keeps_the_packet() -> None:
    rtp_guard.install()
    packet = rtp.RtpPacket.parse(packet_with_empty_audio_level(), audio_level_map())
    assert packet.ssrc == 1234 and packet.payload == b"\x00" * 10
    assert packet.extensions.audio_level is None


def test_without_the_guard_aiortc_raises() -> None:
    # The canary: if aiortc ever parses this itself, the guard can go.
    original = rtp_guard._original_get
    with pytest.raises(struct.error):
        original(audio_level_map(), 0x1000, bytes([1, 0, 0, 0]))
