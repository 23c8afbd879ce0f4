"""AudioSink and VideoFrameSink on real frames, locally and across a real aiortc connection."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError
from tests.media.tracks import (
    ColorVideoTrack,
    CountingAudioTrack,
    SilentForeverTrack,
    dominant_frequency,
    loopback_pair,
    negotiate,
    pcm_array,
    rms,
    tone_pcm,
    wait_connected,
)
from tests.support.waiting import until

from metered_realtime.media import AudioSink, AudioSource, ToneSource, VideoFrameSink


async def collect(sink: AudioSink, n_bytes: int, timeout: float = 10.0) -> bytes:
    """At least ``n_bytes`` of PCM from ``sink`` (bounded)."""

    async def run() -> bytes:
        out = bytearray()
        async for chunk in sink:
            out += chunk
            if len(out) >= n_bytes:
                break
        return bytes(out)

    return await asyncio.wait_for(run(), timeout)


# --- AudioSink -------------------------------------------------------------------------


async def test_audio_sink_resamples_to_16k_mono_chunks() -> None:
    tone = ToneSource(440, amplitude=0.5)
    sink = AudioSink(tone)
    assert (sink.rate, sink.layout) == (16000, "mono")
    pcm = await collect(sink, 16000 * 2 // 2)  # 0.5 s
    samples = pcm_array(pcm, 1)[:, 0]
    assert dominant_frequency(samples, 16000) == pytest.approx(440, abs=2)
    assert np.max(np.abs(samples[800:])) == pytest.approx(0.5 * 32767, rel=0.05)
    # The tone ends: iteration ends cleanly, and the sink reports it.
    tone.stop()
    rest = [chunk async for chunk in sink]
    assert sum(map(len, rest)) < 16000 * 2  # whatever was in flight, then the end
    assert sink.ended
    assert await sink.read() == b""
    await sink.aclose()


async def test_audio_sink_stereo_and_end_of_an_audio_source() -> None:
    src = AudioSource(input_rate=16000)
    await src.push(tone_pcm(300, 16000, 0.3))
    src.end()
    async with AudioSink(src, rate=24000, layout="stereo") as sink:
        pcm = b"".join([chunk async for chunk in sink])
    audio = pcm_array(pcm, 2)
    # 0.3 s pushed, played out in 20 ms frames (the last one padded): 0.3-0.32 s
    assert 0.3 * 24000 - 10 <= len(audio) <= 0.32 * 24000 + 10
    assert np.array_equal(audio[:, 0], audio[:, 1])
    assert dominant_frequency(audio[:7000, 0], 24000) == pytest.approx(300, abs=5)


async def test_audio_sink_drops_oldest_when_the_consumer_lags() -> None:
    # 100 unpaced frames of 20 ms (2 s) into a sink holding 0.1 s; the consumer waits.
    track = CountingAudioTrack(100)
    sink = AudioSink(track, rate=48000, layout="stereo", max_buffered_seconds=0.1)
    await until(lambda: sink.ended, timeout=5)
    assert sink.buffered_seconds <= 0.1
    assert sink.dropped_chunks == 95
    chunks = [chunk async for chunk in sink]
    # What is left is the newest audio: frames 95..99, in order.
    assert [int(pcm_array(c, 2)[0, 0]) for c in chunks] == [95, 96, 97, 98, 99]
    assert all(len(c) == 960 * 4 for c in chunks)


async def test_audio_sink_close_ends_iteration_without_stopping_the_track() -> None:
    tone = ToneSource()
    sink = AudioSink(tone)
    await collect(sink, 640)
    waiter = asyncio.ensure_future(sink.__anext__())
    sink.close()
    sink.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiter, 1)
    assert tone.readyState == "live"
    tone.stop()


def test_audio_sink_validation() -> None:
    tone = ToneSource()
    with pytest.raises(ValueError):
        AudioSink(tone, layout="5.1")
    with pytest.raises(ValueError):
        AudioSink(tone, rate=0)
    with pytest.raises(ValueError):
        AudioSink(ColorVideoTrack())


# --- VideoFrameSink --------------------------------------------------------------------


async def test_video_frame_sink_keeps_the_latest_frame() -> None:
    track = ColorVideoTrack(160, 120, (10, 200, 30))
    sink = VideoFrameSink(track)
    assert sink.latest() is None
    assert sink.latest_array() is None
    first = await sink.wait_frame(timeout=5)
    assert (first.width, first.height) == (160, 120)
    assert await sink.wait_frame(timeout=5) is first or sink.frames_received > 1
    fresh = await sink.wait_frame(timeout=5, fresh=True)
    assert fresh is not first
    assert sink.frames_received >= 2
    image = sink.latest_array()
    assert image.shape == (120, 160, 3)
    assert image.dtype == np.uint8
    assert tuple(image[60, 80]) == (10, 200, 30)
    track.stop()
    with pytest.raises(MediaStreamError):
        await sink.wait_frame(timeout=5, fresh=True)
    assert sink.ended
    assert sink.latest() is not None  # the last frame stays available
    await sink.aclose()


async def test_video_frame_sink_timeout_and_track_end() -> None:
    track = SilentForeverTrack()
    sink = VideoFrameSink(track)
    with pytest.raises(TimeoutError):
        await sink.wait_frame(timeout=0.1)
    waiter = asyncio.ensure_future(sink.wait_frame(timeout=5))
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiter, 2)
    finite = ColorVideoTrack(64, 48, limit=3)
    async with VideoFrameSink(finite) as counted:
        await until(lambda: counted.ended, timeout=5)
        assert counted.frames_received == 3


def test_video_frame_sink_needs_a_video_track() -> None:
    with pytest.raises(ValueError):
        VideoFrameSink(ToneSource())


# --- over a real WebRTC connection (two aiortc peers on 127.0.0.1) ---------------------


async def test_tone_over_webrtc_measures_440_hz_at_the_audio_sink() -> None:
    tone = ToneSource(440.0, amplitude=0.5)
    video = ColorVideoTrack(320, 240, (220, 30, 30))
    received: asyncio.Queue[object] = asyncio.Queue()
    async with loopback_pair() as (sender, receiver):
        receiver.on("track", received.put_nowait)
        sender.addTrack(tone)
        sender.addTrack(video)
        await negotiate(sender, receiver)
        await wait_connected(sender)
        tracks = [await asyncio.wait_for(received.get(), 5) for _ in range(2)]
        by_kind = {t.kind: t for t in tracks}  # type: ignore[attr-defined]
        audio = AudioSink(by_kind["audio"], rate=16000, layout="mono")
        frames = VideoFrameSink(by_kind["video"])

        pcm = await collect(audio, int(1.5 * 16000) * 2, timeout=10)
        samples = pcm_array(pcm, 1)[:, 0]
        steady = samples[len(samples) - 16000 :]  # the last second, past the codec's start
        assert rms(steady) > 0.2 * 32767  # the tone arrived at about its level (0.354 FS)
        assert dominant_frequency(steady, 16000) == pytest.approx(440, abs=5)

        frame = await frames.wait_frame(timeout=10)
        assert (frame.width, frame.height) == (320, 240)
        r, g, b = frames.latest_array()[120, 160].astype(int)  # VP8 + yuv420p: close, not exact
        assert r > 150 and g < 90 and b < 90

        await audio.aclose()
        await frames.aclose()
    tone.stop()
    video.stop()
