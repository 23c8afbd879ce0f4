"""One VP8 encoder per local video track, shared by every remote peer that negotiated VP8.

aiortc gives each RTCRtpSender an encoder of its own, so a track sent to seven peers was
encoded seven times: in a room of 8 the first keyframes alone took 20-75 ms each on two cores,
and first media waited on them. Here one encoder per local track hands the same compressed
frames (``av.Packet``) to every sender, which only packetizes them. A connection that
negotiated another codec gets raw frames and its sender encodes them itself, as before.

What the per-sender encoders did and the shared one keeps doing:

* a keyframe when a receiver asks for one (PLI/FIR) and whenever a copy starts, and a copy
  hands out nothing before its first keyframe, so every receiver can decode what it gets;
* the bitrate the receivers' estimates (REMB) allow: the lowest one among the copies, since
  all of them carry the same frames.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.codecs.vpx import DEFAULT_BITRATE, MAX_BITRATE, MIN_BITRATE
from aiortc.mediastreams import MediaStreamError

from .._logging import Logger
from .._swallow import best_effort
from . import aiortc_private

#: Compressed frames a copy may hold for a sender that has not read them. Beyond this the
#: sender has stalled: its queue is dropped and it starts again at a keyframe.
MAX_QUEUED = 30

_VP8 = "video/vp8"


class Vp8Encoding:
    """A libvpx encoder for real-time video, reopened (with a keyframe) on a new size or rate."""

    def __init__(self) -> None:
        self._codec: Any = None
        self._bitrate = 0

    def encode(self, frame: Any, keyframe: bool, bitrate: int) -> list[Any]:
        """Compress ``frame``; the packets carry its ``pts`` and ``time_base``."""
        codec = self._codec
        if (
            codec is None
            or codec.width != frame.width
            or codec.height != frame.height
            # Reopening costs a keyframe, so only a change of more than 10% does it.
            or abs(bitrate - self._bitrate) > self._bitrate // 10
        ):
            codec = self._codec = self._open(frame, bitrate)
        # The frame object is shared with copies that send raw frames; leave it as found.
        before = frame.pict_type
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        try:
            packets = list(codec.encode(frame))
        finally:
            frame.pict_type = before
        for packet in packets:
            packet.pts = frame.pts
            packet.time_base = frame.time_base
        return packets

    def _open(self, frame: Any, bitrate: int) -> Any:
        self._bitrate = bitrate
        codec = av.CodecContext.create("libvpx", "w")
        codec.width = frame.width
        codec.height = frame.height
        codec.pix_fmt = "yuv420p"
        codec.time_base = frame.time_base
        codec.bit_rate = bitrate
        codec.gop_size = 3000  # keyframes only on request: a receiver asks when it needs one
        codec.qmin = 2
        codec.qmax = 56
        codec.thread_count = 2 if frame.width * frame.height >= 640 * 480 else 1
        codec.options = {
            "deadline": "realtime",
            "cpu-used": "-6",
            "lag-in-frames": "0",  # one frame in, its packet out: no added latency
            # Constant bitrate with a one-second buffer, as WebRTC receivers expect.
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "bufsize": str(bitrate),
            "undershoot-pct": "100",
            "overshoot-pct": "15",
            "static-thresh": "1",
            "noise-sensitivity": "4",
            "partitions": "0",
        }
        return codec


class SharedVideo:
    """Reads one local video track and encodes each frame once for all its VP8 copies."""

    def __init__(self, frames: Callable[[], Any], track_id: str, log: Logger) -> None:
        self._frames = frames  # a new raw-frame reader of the track
        self._track_id = track_id
        self._log = log
        self._copies: set[EncodedCopy] = set()
        self._task: asyncio.Task[None] | None = None
        self._keyframe = False
        self._ended = False
        self._encoding = Vp8Encoding()
        self.frames_encoded = 0

    def copy(self) -> EncodedCopy:
        """A new track for one remote peer, with the local track's id."""
        return EncodedCopy(self, self._frames, self._track_id)

    def request_keyframe(self) -> None:
        """Make the next encoded frame a keyframe."""
        self._keyframe = True

    def _join(self, copy: EncodedCopy) -> None:
        if self._ended:
            copy._source_ended()
            return
        self._copies.add(copy)
        self._keyframe = True
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def _leave(self, copy: EncodedCopy) -> None:
        self._copies.discard(copy)
        if not self._copies and self._task is not None:
            self._task.cancel()
            self._task = None

    def _bitrate(self) -> int:
        """The lowest rate the receivers' estimates allow (aiortc keeps it on each sender)."""
        rates = [c._target_bitrate() for c in self._copies]
        known = [r for r in rates if r is not None]
        rate = min(known) if known else DEFAULT_BITRATE
        return max(MIN_BITRATE, min(rate, MAX_BITRATE))

    def _end(self) -> None:
        self._ended = True
        for copy in list(self._copies):
            copy._source_ended()
        self._copies.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        source = self._frames()
        try:
            while self._copies:
                frame = await source.recv()
                keyframe, self._keyframe = self._keyframe, False
                packets = await loop.run_in_executor(
                    None, self._encoding.encode, frame, keyframe, self._bitrate()
                )
                self.frames_encoded += 1
                for packet in packets:
                    for copy in list(self._copies):
                        copy._offer(packet)
        except MediaStreamError:
            self._end()
        except Exception as exc:  # an encoder failure must not leave the senders waiting
            self._log.warning(
                "video encoding failed", {"track": self._track_id, "error": repr(exc)}
            )
            self._end()
        finally:
            with best_effort(self._log, "stopping a frame reader", {"track": self._track_id}):
                source.stop()


class EncodedCopy(MediaStreamTrack):
    """One remote peer's copy of a local video track.

    Its sender gets compressed frames from the shared encoder while the connection has
    negotiated VP8, and raw frames (which it encodes itself) otherwise.
    """

    kind = "video"

    def __init__(self, shared: SharedVideo, frames: Callable[[], Any], track_id: str) -> None:
        super().__init__()
        setattr(self, aiortc_private.TRACK_ID, track_id)  # the receiver sees the local id
        self._shared = shared
        self._frames_factory = frames
        self._frames: Any = None
        self._transceiver: Any = None
        self._packets: collections.deque[Any] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._needs_keyframe = True
        self._joined = False
        self._ended = False

    def bind(self, transceiver: Any) -> None:
        """Tell the copy which transceiver sends it (its codec decides what recv() returns).

        Bound again (the peer moved the track to a new m-section), the copy starts over at a
        keyframe for the new sender, and the old sender, if still waiting in recv(), is ended
        (it carries no track any more) rather than left to take the new sender's frames.
        """
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(MediaStreamError())
        if self._joined:
            self._packets.clear()
            self._needs_keyframe = True
            self._shared.request_keyframe()
        self._transceiver = transceiver
        _forward_keyframe_requests(transceiver.sender, self._shared._log)

    def _negotiated_vp8(self) -> bool:
        log = self._shared._log
        codecs = aiortc_private.get(self._transceiver, aiortc_private.CODECS, None, log)
        return bool(codecs) and str(codecs[0].mimeType).lower() == _VP8

    def _target_bitrate(self) -> int | None:
        if self._transceiver is None:
            return None
        sender = self._transceiver.sender
        encoder = aiortc_private.get(sender, aiortc_private.SENDER_ENCODER, None, self._shared._log)
        rate = getattr(encoder, "target_bitrate", None)
        return rate if isinstance(rate, int) else None

    async def recv(self) -> Any:
        """The next compressed frame, or raw frame when the codec is not VP8."""
        if self.readyState != "live" or self._ended:
            raise MediaStreamError
        if self._transceiver is None or not self._negotiated_vp8():
            self._leave()
            if self._frames is None:
                self._frames = self._frames_factory()
            return await self._frames.recv()
        self._stop_frames()
        if not self._joined:
            self._joined = True
            self._needs_keyframe = True
            self._shared._join(self)
        while not self._packets:
            if self._ended:
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._packets.popleft()

    def _offer(self, packet: Any) -> None:
        if self._needs_keyframe:
            if not packet.is_keyframe:
                return
            self._needs_keyframe = False
        if len(self._packets) >= MAX_QUEUED:
            self._packets.clear()
            self._needs_keyframe = True
            self._shared.request_keyframe()
            return
        self._packets.append(packet)
        self._wake()

    def _source_ended(self) -> None:
        self._ended = True
        self._joined = False
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _leave(self) -> None:
        if self._joined:
            self._joined = False
            self._packets.clear()
            self._shared._leave(self)

    def _stop_frames(self) -> None:
        if self._frames is not None:
            frames, self._frames = self._frames, None
            frames.stop()

    def stop(self) -> None:
        """Stop the copy. A sender still waiting in recv() is not woken, as with aiortc's
        relay: the peer stops a replaced copy only after its sender has moved on."""
        super().stop()
        self._leave()
        self._stop_frames()


def _forward_keyframe_requests(sender: Any, log: Logger) -> None:
    """Make a receiver's PLI/FIR reach the shared encoder of whatever copy the sender carries.

    aiortc answers them by setting a flag its own encoder reads, which a sender that only
    packetizes never consults.
    """
    if getattr(sender, "_metered_keyframes", False):
        return
    original = aiortc_private.get(sender, aiortc_private.SEND_KEYFRAME, None, log)
    if original is None:
        return

    def send_keyframe() -> None:
        original()
        track = sender.track
        if isinstance(track, EncodedCopy):
            track._shared.request_keyframe()

    setattr(sender, aiortc_private.SEND_KEYFRAME, send_keyframe)
    sender._metered_keyframes = True
