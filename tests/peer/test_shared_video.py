"""A local video track is encoded once for every peer that negotiated VP8, and read only while
some peer is sent it.

Real server, real aiortc and libvpx on loopback.
"""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc")

import asyncio
import contextlib
import fractions
from collections.abc import AsyncIterator
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, VideoStreamTrack
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamError
from tests.peer.helpers import Expect, join_all, remote_of
from tests.support.logs import Recorder
from tests.support.waiting import until

from metered_realtime._logging import NoopLogger
from metered_realtime.events import PeerJoined, Track
from metered_realtime.peer import aiortc_private
from metered_realtime.peer.fanout import Fanout
from metered_realtime.peer.shared_video import MAX_QUEUED, SharedVideo, Vp8Encoding

pytestmark = pytest.mark.timeout(60)


class CountingVideo(VideoStreamTrack):
    """aiortc's generated video, counting the frames read from it."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.frames_read = 0
        self._size = (width, height)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        self.frames_read += 1
        frame = av.VideoFrame(width=self._size[0], height=self._size[1], format="yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(self.frames_read * 7) % 256]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = fractions.Fraction(time_base.numerator, time_base.denominator)
        return frame


def _senders(peer: Any) -> list[Any]:
    return [
        t.sender
        for r in peer.remote_peers
        for t in r.pc.getTransceivers()
        if t.kind == "video" and t.sender.track is not None
    ]


def _shared(peer: Any, track: Any) -> Any:
    return peer._shared_video[id(track)][1]


async def _first_frame(receiver: Any, sender: Any, timeout: float = 15) -> Any:
    expect = Expect(remote_of(receiver, sender), Track)
    track = (await expect.get(timeout)).track
    return await asyncio.wait_for(track.recv(), timeout)


async def _streaming(sender: Any, receiver: Any, channel: str) -> tuple[CountingVideo, Any]:
    """Both in ``channel``; ``sender`` adds a new video track; returns it once ``receiver``
    decoded its first frame, with that frame."""
    await join_all([sender, receiver], channel)
    await until(lambda: bool(sender.remote_peers and receiver.remote_peers), 10)
    source = CountingVideo()
    first = asyncio.ensure_future(_first_frame(receiver, sender))
    sender.add_track(source)
    return source, await first


async def test_three_peers_get_one_encoding(make_peer: Any) -> None:
    sender = make_peer()
    receivers = [make_peer() for _ in range(3)]
    await join_all([sender, *receivers], "shared-video")
    await until(lambda: len(sender.remote_peers) == 3, 10)
    await until(lambda: all(len(r.remote_peers) == 3 for r in receivers), 10)
    source = CountingVideo()
    firsts = [asyncio.ensure_future(_first_frame(r, sender)) for r in receivers]
    sender.add_track(source)
    frames = await asyncio.gather(*firsts)
    assert all(f.width == 320 for f in frames)

    # aiortc made an encoder for each sender (it packetizes with it) but none encoded.
    senders = _senders(sender)
    assert len(senders) == 3
    own = [getattr(s, aiortc_private.SENDER_ENCODER) for s in senders]
    assert all(isinstance(e, Vp8Encoder) and e.codec is None for e in own), own
    # One encoding per frame read, not one per peer.
    shared = _shared(sender, source)
    await until(lambda: shared.frames_encoded >= 10, 10)
    assert shared.frames_encoded <= source.frames_read


async def test_a_peer_joining_a_running_stream_decodes_it(make_peer: Any) -> None:
    sender, early = make_peer(), make_peer()
    source, _ = await _streaming(sender, early, "late-joiner")
    shared = _shared(sender, source)
    await until(lambda: shared.frames_encoded >= 15, 10)  # well past the first keyframe
    late = make_peer()
    # Listening before the join: the sender offers as soon as it sees the late peer.
    tracks: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_track(ev: Track) -> None:
        if not tracks.done():
            tracks.set_result(ev.track)

    late.on(PeerJoined, lambda ev: ev.peer.on(Track, on_track))
    await late.join("late-joiner")
    track = await asyncio.wait_for(tracks, 15)
    frame = await asyncio.wait_for(track.recv(), 15)
    assert frame.width == 320


async def _negotiated(track: Any) -> tuple[Any, list[Any]]:
    """A transceiver sending ``track`` after a local offer/answer: VP8 negotiated, not connected."""
    a = RTCPeerConnection(configuration=RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(configuration=RTCConfiguration(iceServers=[]))
    transceiver = a.addTransceiver(track, direction="sendonly")
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    # Closed before ``a`` applies the answer, so the two never connect: aiortc's own sender
    # would otherwise start reading the copy the test reads.
    await b.close()
    await a.setRemoteDescription(b.localDescription)
    return transceiver, [a]


@contextlib.asynccontextmanager
async def two_bound_copies() -> AsyncIterator[tuple[Any, Any]]:
    """Two copies of one shared encoding, each on a negotiated (unconnected) transceiver."""
    source = CountingVideo()
    shared = SharedVideo(Fanout(source, NoopLogger()).copy, source.id, NoopLogger())
    copies = (shared.copy(), shared.copy())
    pcs: list[Any] = []
    try:
        for copy in copies:
            transceiver, more = await _negotiated(copy)
            pcs += more
            copy.bind(transceiver)
        yield copies
    finally:
        for copy in copies:
            copy.stop()
        source.stop()
        await asyncio.gather(*(pc.close() for pc in pcs))


async def test_every_copy_starts_at_a_keyframe_made_when_it_starts() -> None:
    async with two_bound_copies() as (first, second):
        packets = [await asyncio.wait_for(first.recv(), 5) for _ in range(10)]
        assert [p.is_keyframe for p in packets] == [True] + [False] * 9

        async def keep_reading() -> None:  # as the first copy's sender would
            for _ in range(1000):
                await first.recv()

        reading = asyncio.ensure_future(keep_reading())
        try:
            # A copy starting now gets a keyframe made for it, not the stream's first one.
            joined = await asyncio.wait_for(second.recv(), 5)
        finally:
            reading.cancel()
        assert joined.is_keyframe and joined.pts > packets[-1].pts


async def test_a_stalled_copy_is_bounded_and_restarts_at_a_keyframe() -> None:
    async with two_bound_copies() as (reader, stalled):
        first = await asyncio.wait_for(stalled.recv(), 5)  # joined; then nobody reads it
        assert first.is_keyframe
        deltas = 0
        for _ in range(MAX_QUEUED * 3):
            packet = await asyncio.wait_for(reader.recv(), 5)
            deltas += not packet.is_keyframe
            assert len(stalled._packets) <= MAX_QUEUED
        assert deltas > MAX_QUEUED  # the stalled copy overflowed at least once
        resumed = await asyncio.wait_for(stalled.recv(), 5)
        assert resumed.is_keyframe and resumed.pts > first.pts


async def test_a_copy_bound_again_ends_the_old_sender_and_restarts_at_a_keyframe() -> None:
    async with two_bound_copies() as (copy, _):
        for _ in range(5):
            await asyncio.wait_for(copy.recv(), 5)
        for _ in range(100):  # the old sender, waiting for a frame (not taking a queued one)
            waiting = asyncio.ensure_future(copy.recv())
            await asyncio.sleep(0)  # lets it run up to its wait
            if not waiting.done():
                break
        transceiver, pcs = await _negotiated(CountingVideo())  # the track's new m-section
        try:
            copy.bind(transceiver)
            with pytest.raises(MediaStreamError):
                await asyncio.wait_for(waiting, 5)
            restart = await asyncio.wait_for(copy.recv(), 5)
            assert restart.is_keyframe
        finally:
            await asyncio.gather(*(pc.close() for pc in pcs))


async def test_a_keyframe_request_reaches_the_shared_encoder(make_peer: Any) -> None:
    sender, receiver = make_peer(), make_peer()
    source, _ = await _streaming(sender, receiver, "pli")
    shared = _shared(sender, source)
    await until(lambda: shared.frames_encoded >= 5 and not shared._keyframe, 10)
    # What aiortc calls when the receiver sends a PLI or FIR.
    getattr(_senders(sender)[0], aiortc_private.SEND_KEYFRAME)()
    assert shared._keyframe


async def test_a_peer_that_negotiated_h264_gets_raw_frames(make_peer: Any) -> None:
    h264 = [
        c
        for c in RTCRtpSender.getCapabilities("video").codecs
        if c.mimeType in ("video/H264", "video/rtx")
    ]

    def h264_only(config: Any) -> Any:
        pc = RTCPeerConnection(configuration=config)
        add = pc.addTransceiver

        def add_transceiver(track_or_kind: Any, direction: str = "sendrecv") -> Any:
            transceiver = add(track_or_kind, direction=direction)
            transceiver.setCodecPreferences(h264)
            return transceiver

        pc.addTransceiver = add_transceiver  # type: ignore[method-assign]
        return pc

    sender, receiver = make_peer(_pc_factory=h264_only), make_peer()
    source, frame = await _streaming(sender, receiver, "h264")
    assert frame.width == 320
    (s,) = _senders(sender)
    encoder = getattr(s, aiortc_private.SENDER_ENCODER)
    assert isinstance(encoder, H264Encoder) and encoder.codec is not None
    assert _shared(sender, source).frames_encoded == 0


async def test_a_removed_track_is_no_longer_read(make_peer: Any) -> None:
    sender, receiver = make_peer(), make_peer()
    source, _ = await _streaming(sender, receiver, "removed")
    fanout = sender._fanouts[id(source)][1]
    assert fanout.reading
    sender.remove_track(source)
    # The copy stops once its sender has moved off it (about a second), and the reader with it.
    await until(lambda: not fanout.reading, 10)
    read = source.frames_read
    await asyncio.sleep(0.3)  # nothing to await: frames that are no longer read
    assert source.frames_read <= read + 1


async def test_a_fanout_reads_only_while_a_copy_reads() -> None:
    source = CountingVideo()
    fanout = Fanout(source, NoopLogger())
    a, b = fanout.copy(), fanout.copy()
    assert a.id == b.id == source.id and not fanout.reading
    first_a, first_b = await asyncio.gather(a.recv(), b.recv())
    assert first_a is first_b  # one read, one converted frame for both
    a.stop()
    await asyncio.wait_for(b.recv(), 5)
    assert fanout.reading
    b.stop()
    assert not fanout.reading
    # The source ending ends every copy.
    c = fanout.copy()
    await asyncio.wait_for(c.recv(), 5)
    source.stop()
    with pytest.raises(MediaStreamError):
        for _ in range(3):  # a frame already being made may still arrive
            await asyncio.wait_for(c.recv(), 5)
    assert not fanout.reading


class FailingVideo(CountingVideo):
    """A track whose third frame raises, as an app's broken source would."""

    async def recv(self) -> av.VideoFrame:
        if self.frames_read == 2:
            raise RuntimeError("camera unplugged")
        return await super().recv()


async def test_a_failing_track_ends_its_copies_and_says_so() -> None:
    log = Recorder()
    source = FailingVideo()
    fanout = Fanout(source, log)
    copy = fanout.copy()
    with pytest.raises(MediaStreamError):
        for _ in range(5):
            await asyncio.wait_for(copy.recv(), 5)
    assert source.frames_read == 2 and not fanout.reading
    assert [(level, ctx["error"]) for level, _, ctx in log.lines] == [
        ("warning", "RuntimeError('camera unplugged')")
    ]


def _frame(width: int, height: int, pts: int) -> av.VideoFrame:
    frame = av.VideoFrame(width=width, height=height, format="yuv420p")
    for plane in frame.planes:
        plane.update(bytes([pts % 256]) * plane.buffer_size)
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, 90000)
    return frame


def test_the_encoding_keeps_timing_and_makes_keyframes_on_request() -> None:
    enc = Vp8Encoding()
    keyframes = []
    for i in range(6):
        packets = enc.encode(_frame(160, 120, i * 3000), keyframe=(i == 4), bitrate=500_000)
        assert [p.pts for p in packets] == [i * 3000] * len(packets)
        assert all(p.time_base == fractions.Fraction(1, 90000) for p in packets)
        keyframes.append(any(p.is_keyframe for p in packets))
    assert keyframes == [True, False, False, False, True, False]
    # A new size or a bitrate more than 10% away reopens the encoder: a keyframe.
    assert any(p.is_keyframe for p in enc.encode(_frame(320, 240, 18000), False, 500_000))
    assert not any(p.is_keyframe for p in enc.encode(_frame(320, 240, 21000), False, 540_000))
    assert any(p.is_keyframe for p in enc.encode(_frame(320, 240, 24000), False, 600_000))
