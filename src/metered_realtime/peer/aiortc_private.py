"""aiortc's private attributes the peer relies on, and the workarounds that use them.

Each workaround is described in docs/architecture.md ("What aiortc needed working around");
aiortc 1.16 offers no public way to do any of them. ``tests/peer/test_aiortc_private.py``
fails when an attribute is missing, and at run time a missing one is logged once, as a
warning, instead of silently switching its workaround off. ``pyproject.toml`` pins aiortc
to the versions the suite ran with.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .._logging import Logger
from . import sdp as sdp_util

#: RTCRtpSender / RTCRtpReceiver started (RTP stall detection after a renegotiation).
SENDER_STARTED = "_RTCRtpSender__started"
RECEIVER_STARTED = "_RTCRtpReceiver__started"
#: The task aiortc starts when the remote closed every DTLS transport (hang-up detection).
CLOSE_TASK = "_RTCPeerConnection__closeTask"
#: The idempotent transport start-up (restarts stalled transceivers).
CONNECT = "_RTCPeerConnection__connect"
#: A transceiver's direction from the remote offer (None crashes setLocalDescription).
OFFER_DIRECTION = "_offerDirection"
#: The msid stream id a sender announces.
STREAM_ID = "_stream_id"
#: A MediaStreamTrack's id (a relay copy takes its source's id).
TRACK_ID = "_id"
#: A transceiver's negotiated codecs, the first one sending (VP8 gets the shared encoder).
CODECS = "_codecs"
#: A sender's own encoder: it keeps the bitrate the receiver's estimate allows.
SENDER_ENCODER = "_RTCRtpSender__encoder"
#: What a sender calls on a PLI/FIR (forwarded to the shared encoder).
SEND_KEYFRAME = "_send_keyframe"

_warned: set[str] = set()


def missing(name: str, log: Logger) -> None:
    """Report, once per process, that aiortc lacks ``name``."""
    if name in _warned:
        return
    _warned.add(name)
    log.warning(
        "aiortc has no private attribute the SDK relies on; its workaround is off",
        {"attribute": name},
    )


def get(obj: Any, name: str, default: Any, log: Logger) -> Any:
    """``getattr(obj, name)``, or ``default`` after reporting the missing attribute."""
    try:
        return getattr(obj, name)
    except AttributeError:
        missing(name, log)
        return default


def settle_unmatched_transceivers(pc: Any, log: Logger) -> None:
    """setLocalDescription(answer) fails on a transceiver the offer did not mention (its
    offer direction is None, "None is not in list"). Such a transceiver (local media
    attached before the offer arrived) stays inactive until the follow-up offer negotiates it.
    """
    for t in pc.getTransceivers():
        if t.mid is None and get(t, OFFER_DIRECTION, "", log) is None:
            setattr(t, OFFER_DIRECTION, "inactive")


def stalled_transceivers(pc: Any, log: Logger) -> bool:
    """True when a negotiated sender or receiver never started.

    aiortc starts RTP for a transceiver only if the DTLS transport is already connected
    when a description is applied; a renegotiation that lands mid-handshake leaves that
    transceiver silent for good.
    """
    for t in pc.getTransceivers():
        direction = t.currentDirection
        sending = direction in ("sendrecv", "sendonly") and t.sender.track is not None
        if sending and get(t.sender, SENDER_STARTED, True, log) is False:
            return True
        receiving = direction in ("sendrecv", "recvonly")
        if receiving and get(t.receiver, RECEIVER_STARTED, True, log) is False:
            return True
    return False


def closed_by_remote(pc: Any, log: Logger) -> bool:
    """True when aiortc closed ``pc`` itself because the remote closed every DTLS transport
    (close_notify): a clean hang-up, as opposed to ``pc.close()`` called on this side.
    """
    return get(pc, CLOSE_TASK, None, log) is not None


_KICKS: set[asyncio.Future[Any]] = set()


def kick_transports(pc: Any, log: Logger) -> None:
    """Re-run aiortc's (idempotent) transport start-up when a transceiver stalled."""
    connect = get(pc, CONNECT, None, log)
    if connect is not None and stalled_transceivers(pc, log):
        task = asyncio.ensure_future(connect())
        _KICKS.add(task)
        task.add_done_callback(_KICKS.discard)


def rebundle(pc: Any, remote_sdp: str) -> None:
    """Put every bundled transceiver on the bundle's transport, after a remote description.

    With aiortc's default (balanced) bundle policy, a second transceiver of one kind created
    before the first negotiation shares the first one's transport and is marked bundled, so
    when the description's BUNDLE moves the first onto the transport of the group's first
    mid, the second is left on the transport aiortc then stops, and its RTP never starts.
    (Public API only: ``setTransport`` of sender and receiver.)
    """
    mids = sdp_util.bundle_mids(remote_sdp)
    if not mids:
        return
    owners = {t.mid: t.receiver.transport for t in pc.getTransceivers() if t.mid is not None}
    sctp = pc.sctp
    if sctp is not None and sctp.mid is not None:
        owners[sctp.mid] = sctp.transport
    primary = owners.get(mids[0])
    if primary is None:
        return
    for t in pc.getTransceivers():
        if t.mid in mids and t.receiver.transport is not primary:
            t.receiver.setTransport(primary)
            t.sender.setTransport(primary)
