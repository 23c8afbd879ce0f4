"""AudioSource on real frames: resampling, pacing, padding, backpressure, end and drain."""

from __future__ import annotations

import asyncio
import fractions
import itertools

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError
from tests.media.tracks import dominant_frequency, frame_array, tone_pcm
from tests.support.waiting import until

from metered_realtime.media import AudioSource


async def drain(src: AudioSource, limit: int = 1000) -> list[av.AudioFrame]:
    """Every frame until MediaStreamError (bounded)."""
    frames = []
    for _ in range(limit):
        try:
            frames.append(await src.recv())
        except MediaStreamError:
            return frames
    raise AssertionError("source did not end")


def check_format(frames: list[av.AudioFrame]) -> None:
    for i, frame in enumerate(frames):
        assert frame.format.name == "s16"
        assert frame.layout.name == "stereo"
        assert frame.sample_rate == 48000
        assert frame.samples == 960
        assert frame.time_base == fractions.Fraction(1, 48000)
        assert frame.pts == 960 * i


async def test_pushed_pcm_round_trips_as_48k_stereo_frames() -> None:
    src = AudioSource()  # 16 kHz mono
    pcm = tone_pcm(440, 16000, 1.0)
    # Odd-sized pushes: partial samples must carry over to the next push.
    cuts = [0, 1001, 4097, 17333, len(pcm)]
    for a, b in itertools.pairwise(cuts):
        await src.push(pcm[a:b])
    assert src.buffered_seconds == pytest.approx(1.0, abs=0.01)
    src.end()
    frames = await drain(src)
    check_format(frames)
    assert len(frames) in (50, 51)
    audio = np.concatenate([frame_array(f) for f in frames])
    assert np.array_equal(audio[:, 0], audio[:, 1])  # mono duplicated to both channels
    assert dominant_frequency(audio[:48000, 0], 48000) == pytest.approx(440, abs=5)
    # amplitude is preserved by the resampler (0.5 of full scale)
    assert np.max(np.abs(audio[4800:43200, 0])) == pytest.approx(0.5 * 32767, rel=0.05)
    assert src.readyState == "ended"
    with pytest.raises(MediaStreamError):
        await src.recv()


async def test_stereo_input_and_av_frames_of_another_format() -> None:
    src = AudioSource(input_rate=44100, input_layout="stereo")
    await src.push(tone_pcm(440, 44100, 0.5, channels=2))
    # An av.AudioFrame brings its own format (planar float, 22050 Hz): the resampler is rebuilt.
    n = 11025
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 22050)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
    frame.sample_rate = 22050
    await src.push(frame)
    src.end()
    frames = await drain(src)
    check_format(frames)
    total = sum(f.samples for f in frames)
    assert total == pytest.approx(48000, abs=2 * 960)
    audio = np.concatenate([frame_array(f) for f in frames])
    assert dominant_frequency(audio[:24000, 0], 48000) == pytest.approx(440, abs=5)
    assert dominant_frequency(audio[24000:48000, 1], 48000) == pytest.approx(440, abs=5)


async def test_frames_are_paced_and_padded_with_silence() -> None:
    src = AudioSource(input_rate=48000)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    first = await src.recv()
    assert loop.time() - t0 < 0.015  # first frame at once
    assert not frame_array(first).any()  # nothing pushed: silence, track stays live
    await src.push(tone_pcm(1000, 48000, 0.01))  # half a frame
    half = frame_array(await src.recv())
    assert half[:480].any()
    assert not half[480:].any()
    for _ in range(8):
        await src.recv()
    # 10 frames: 9 waits of 20 ms
    assert loop.time() - t0 == pytest.approx(0.18, abs=0.04)
    assert src.readyState == "live"
    src.stop()


async def test_late_consumer_reanchors_instead_of_bursting() -> None:
    src = AudioSource()
    loop = asyncio.get_running_loop()
    for _ in range(3):
        await src.recv()
    await asyncio.sleep(0.3)  # the consumer stalls (a pacing wait, on purpose)
    t0 = loop.time()
    late = await src.recv()
    t1 = loop.time()
    nxt = await src.recv()
    t2 = loop.time()
    assert t1 - t0 < 0.015  # the late frame goes out at once
    assert t2 - t1 == pytest.approx(0.02, abs=0.012)  # then back to 20 ms: no burst
    assert (late.pts, nxt.pts) == (3 * 960, 4 * 960)  # pts keep advancing by 960
    src.stop()


async def test_push_suspends_at_the_buffer_cap_within_one_push() -> None:
    src = AudioSource(input_rate=48000, max_buffered_seconds=0.1)
    pcm = tone_pcm(440, 48000, 0.5)
    push = asyncio.ensure_future(src.push(pcm))
    await until(lambda: src.buffered_seconds >= 0.1, timeout=2)
    assert not push.done()
    assert src.buffered_seconds <= 0.1 + 0.021  # never more than one 20 ms piece over
    # A second push queues behind the first (pushes are serialized).
    second = asyncio.ensure_future(src.push(tone_pcm(440, 48000, 0.1)))
    got = 0
    while not second.done():
        await src.recv()
        got += 1
        assert src.buffered_seconds <= 0.121
        assert push.done() or not second.done()  # serialized: the second waits for the first
        assert got < 80
    assert push.done()
    assert got >= 25  # the consumer had to take ~0.5 s before both pushes fitted
    src.end()
    rest = await drain(src)
    assert (got + len(rest)) * 960 == pytest.approx(0.6 * 48000, abs=960)


async def test_end_releases_a_blocked_push_and_later_pushes_are_ignored() -> None:
    src = AudioSource(input_rate=16000, max_buffered_seconds=0.1)
    push = asyncio.ensure_future(src.push(tone_pcm(440, 16000, 2.0)))
    await until(lambda: src.buffered_seconds >= 0.1, timeout=2)
    assert not push.done()
    src.end()
    src.end()  # idempotent
    await asyncio.wait_for(push, 1)
    queued = src.buffered_seconds
    await src.push(tone_pcm(440, 16000, 1.0))  # ignored
    assert src.buffered_seconds == queued
    frames = await drain(src)
    assert 5 <= len(frames) <= 7  # what was queued (0.1 s plus the resampler tail), then the end
    with pytest.raises(MediaStreamError):
        await src.recv()


async def test_stop_releases_a_blocked_push() -> None:
    src = AudioSource(input_rate=16000, max_buffered_seconds=0.05)
    push = asyncio.ensure_future(src.push(tone_pcm(440, 16000, 1.0)))
    await until(lambda: src.buffered_seconds >= 0.05, timeout=2)
    src.stop()
    await asyncio.wait_for(push, 1)
    assert src.readyState == "ended"
    with pytest.raises(MediaStreamError):
        await src.recv()


def test_argument_validation() -> None:
    with pytest.raises(ValueError):
        AudioSource(input_layout="5.1")
    with pytest.raises(ValueError):
        AudioSource(input_rate=0)
    with pytest.raises(ValueError):
        AudioSource(max_buffered_seconds=0)
    src = AudioSource(input_layout="stereo")
    assert src.kind == "audio"
    assert src.buffered_seconds == 0.0


async def test_push_rejects_other_types() -> None:
    src = AudioSource()
    with pytest.raises(TypeError):
        await src.push("not audio")  # type: ignore[arg-type]
    src.stop()
