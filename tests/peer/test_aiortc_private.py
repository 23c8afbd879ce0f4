"""Canary: every aiortc/aioice internal the peer relies on is still there.

The workarounds in ``peer/aiortc_private.py`` (and ``rtp_guard``, ``turn_errors``) read
private attributes. An aiortc upgrade that renames one would switch stall and hang-up
detection off; this test names each one that is missing. pyproject.toml pins the versions
this suite ran with.
"""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc")


import aioice.ice
import aioice.stun
import aioice.turn
import aiortc.codecs.vpx
import aiortc.rtcicetransport
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    rtp,
)
from tests.support.logs import Recorder

from metered_realtime.peer import aiortc_private as private


async def test_every_private_attribute_the_peer_reads_exists() -> None:
    pc = RTCPeerConnection(configuration=RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver(AudioStreamTrack(), direction="sendrecv")
        track = AudioStreamTrack()
        where = {
            private.SENDER_STARTED: transceiver.sender,
            private.RECEIVER_STARTED: transceiver.receiver,
            private.CLOSE_TASK: pc,
            private.CONNECT: pc,
            private.OFFER_DIRECTION: transceiver,
            private.STREAM_ID: transceiver.sender,
            private.TRACK_ID: track,
            private.CODECS: transceiver,
            private.SENDER_ENCODER: transceiver.sender,
            private.SEND_KEYFRAME: transceiver.sender,
        }
        missing = [f"{type(o).__name__}.{n}" for n, o in where.items() if not hasattr(o, n)]
        assert not missing, f"aiortc lacks what the peer relies on: {missing}"
        assert getattr(transceiver.sender, private.SENDER_STARTED) is False
        assert getattr(transceiver.receiver, private.RECEIVER_STARTED) is False
        assert getattr(pc, private.CLOSE_TASK) is None
        assert callable(getattr(pc, private.CONNECT))
        assert getattr(transceiver, private.CODECS) == []
        assert getattr(transceiver.sender, private.SENDER_ENCODER) is None
        assert callable(getattr(transceiver.sender, private.SEND_KEYFRAME))

        # Each write has the effect the peer counts on.
        setattr(track, private.TRACK_ID, "canary-track")
        assert track.id == "canary-track"
        setattr(transceiver.sender, private.STREAM_ID, "canary-stream")
        offer = await pc.createOffer()
        assert "a=msid:canary-stream " in offer.sdp
    finally:
        await pc.close()


def test_public_names_the_workarounds_and_guards_use_exist() -> None:
    needed = {
        "RTCRtpSender.setTransport": hasattr(RTCRtpSender, "setTransport"),
        "RTCRtpReceiver.setTransport": hasattr(RTCRtpReceiver, "setTransport"),
        "RTCPeerConnection.sctp": hasattr(RTCPeerConnection, "sctp"),
        "RTCConfiguration.alwaysNegotiateDataChannels": "alwaysNegotiateDataChannels"
        in RTCConfiguration.__dataclass_fields__,
        "aiortc.rtp.HeaderExtensionsMap.get": hasattr(rtp.HeaderExtensionsMap, "get"),
        "aiortc.rtp.HeaderExtensions": hasattr(rtp, "HeaderExtensions"),
        "aioice.ice.get_host_addresses": hasattr(aioice.ice, "get_host_addresses"),
        "aiortc.rtcicetransport.connection_kwargs": hasattr(
            aiortc.rtcicetransport, "connection_kwargs"
        ),
        "aioice.turn.create_turn_endpoint": hasattr(aioice.turn, "create_turn_endpoint"),
        "aioice.stun.TransactionFailed": hasattr(aioice.stun, "TransactionFailed"),
        "aioice.stun.TransactionTimeout": hasattr(aioice.stun, "TransactionTimeout"),
        "aiortc.codecs.vpx bitrate bounds": all(
            hasattr(aiortc.codecs.vpx, n) for n in ("DEFAULT_BITRATE", "MIN_BITRATE", "MAX_BITRATE")
        ),
        "Vp8Encoder.pack (a sender packetizes an av.Packet)": hasattr(
            aiortc.codecs.vpx.Vp8Encoder, "pack"
        ),
    }
    missing = [name for name, present in needed.items() if not present]
    assert not missing, f"aiortc/aioice lack what the peer relies on: {missing}"


def test_a_missing_attribute_is_reported_once_not_silently() -> None:
    log = Recorder()
    name = "_canary_never_an_aiortc_attribute"
    assert private.get(object(), name, "fallback", log) == "fallback"
    assert private.get(object(), name, "fallback", log) == "fallback"
    assert log.lines == [
        (
            "warning",
            "aiortc has no private attribute the SDK relies on; its workaround is off",
            {"attribute": name},
        )
    ]
