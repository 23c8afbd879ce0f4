"""Recorder writes real tracks to files that PyAV decodes back to the expected content.

Duration tolerance: the recorded length is measured against the wall time between
``start()`` and ``stop()``. Audio arrives in 20 ms frames and video in 33 ms frames, so
up to one frame of each may be in flight at ``stop()``; encoders add at most one codec
frame of padding (AAC: 1024 samples = 21 ms; Opus pre-skip is removed on decode); and a
loaded CI machine can delay the first frame or the stop by a few tens of ms. 150 ms
covers all of that while still catching a wrong time base (a 2x error or worse).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np
import pytest
from tests.media.tracks import ColorVideoTrack, SilentForeverTrack, dominant_frequency, tone_pcm

from metered_realtime.media import AudioSource, Recorder, ToneSource

TOLERANCE = 0.15


async def record(path: Path, tracks: list[object], seconds: float, **kwargs: object) -> float:
    """Record ``tracks`` for ``seconds`` of wall time; return the measured span."""
    recorder = Recorder(path, **kwargs)  # type: ignore[arg-type]
    for track in tracks:
        recorder.add_track(track)
    loop = asyncio.get_running_loop()
    await recorder.start()
    t0 = loop.time()
    await asyncio.sleep(seconds)  # the recording's length: a pacing wait
    span = loop.time() - t0
    await recorder.stop()
    assert recorder.state == "stopped"
    return span


def decoded_audio(path: Path) -> tuple[np.ndarray, int, float]:
    """(mono float samples, rate, start time) of the first audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = list(container.decode(stream))
    rate = frames[0].sample_rate
    data = np.concatenate(
        [
            f.to_ndarray().reshape(-1, f.samples)[0]
            if f.format.is_planar
            else f.to_ndarray().reshape(-1, len(f.layout.channels))[:, 0]
            for f in frames
        ]
    )
    return data.astype(np.float64), rate, float(frames[0].time or 0.0)


def decoded_video(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(container.streams.video[0]))


@pytest.mark.parametrize(
    ("name", "audio_codec", "video_codec"),
    [("out.mkv", "opus", "h264"), ("out.mp4", "aac", "h264"), ("out.webm", "opus", "vp8")],
)
async def test_tone_and_video_decode_to_the_recorded_duration(
    tmp_path: Path, name: str, audio_codec: str, video_codec: str
) -> None:
    path = tmp_path / name
    tone = ToneSource(440, amplitude=0.5)
    video = ColorVideoTrack(320, 240, (40, 90, 220))
    span = await record(path, [tone, video], 1.2)
    tone.stop()
    video.stop()

    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.name == audio_codec
        assert container.streams.video[0].codec_context.name == video_codec
        assert container.duration / av.time_base == pytest.approx(span, abs=TOLERANCE)

    audio, rate, start = decoded_audio(path)
    assert rate == 48000
    assert start == pytest.approx(0.0, abs=0.05)  # the first frame arrives at once
    assert len(audio) / rate == pytest.approx(span, abs=TOLERANCE)
    assert dominant_frequency(audio[rate // 10 :], rate) == pytest.approx(440, abs=5)

    frames = decoded_video(path)
    assert (frames[0].width, frames[0].height) == (320, 240)
    assert len(frames) == pytest.approx(span * 30, abs=TOLERANCE * 30)
    last_end = float(frames[-1].time) + 1 / 30
    assert last_end == pytest.approx(span, abs=TOLERANCE)
    r, _g, b = frames[len(frames) // 2].to_ndarray(format="rgb24")[120, 160].astype(int)
    assert b > 170 and r < 90  # the colour survived (H.264/VP8 + yuv420p: close, not exact)


async def test_audio_only_ogg_from_a_pushed_source(tmp_path: Path) -> None:
    path = tmp_path / "speech.ogg"
    src = AudioSource(input_rate=16000)
    await src.push(tone_pcm(600, 16000, 0.5))
    src.end()  # 0.5 s of audio, then the track ends by itself
    recorder = Recorder(path)
    recorder.add_track(src)
    recorder.add_track(src)  # duplicates are ignored
    await recorder.start()
    await asyncio.sleep(0.8)  # longer than the source: recording the end of a track
    await recorder.stop()
    await recorder.stop()  # idempotent
    audio, rate, _ = decoded_audio(path)
    assert len(audio) / rate == pytest.approx(0.5, abs=0.05)
    assert dominant_frequency(audio, rate) == pytest.approx(600, abs=5)


async def test_video_track_without_frames_still_gives_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "late.mkv"
    tone = ToneSource()
    silent = SilentForeverTrack()
    span = await record(path, [tone, silent], 0.4)
    tone.stop()
    silent.stop()
    audio, rate, _ = decoded_audio(path)
    assert len(audio) / rate == pytest.approx(span, abs=TOLERANCE)
    with av.open(str(path)) as container:
        assert len(container.streams.video) == 1


async def test_recorder_leaves_the_source_frames_untouched(tmp_path: Path) -> None:
    seen: list[tuple[int, object]] = []

    class Spy(ToneSource):
        async def recv(self):  # type: ignore[no-untyped-def]
            frame = await super().recv()
            seen.append((frame.pts, frame))
            return frame

    tone = Spy()
    await record(tmp_path / "spy.mkv", [tone], 0.2)
    tone.stop()
    assert seen
    assert all(frame.pts == pts for pts, frame in seen)  # type: ignore[attr-defined]


async def test_recorder_usage_errors(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "x.mkv")
    with pytest.raises(RuntimeError):
        await recorder.start()  # no tracks
    with pytest.raises(ValueError):
        recorder.add_track(object())
    ogg = Recorder(tmp_path / "x.ogg")
    ogg.add_track(ColorVideoTrack())
    with pytest.raises(ValueError):
        await ogg.start()  # ogg holds no video here
    assert not (tmp_path / "x.ogg").exists()
    tone = ToneSource()
    started = Recorder(tmp_path / "y.mkv")
    started.add_track(tone)
    await started.start()
    with pytest.raises(RuntimeError):
        started.add_track(ToneSource())
    await started.stop()
    tone.stop()
    never = Recorder(tmp_path / "never.mkv")
    await never.stop()  # stopping an unstarted recorder is a no-op
    assert not (tmp_path / "never.mkv").exists()
