"""ToneSource and SilenceSource: real paced frames of the right format and content."""

from __future__ import annotations

import asyncio
import fractions

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError
from tests.media.tracks import dominant_frequency, frame_array

from metered_realtime.media import SilenceSource, ToneSource


async def test_tone_frames_format_pacing_and_frequency() -> None:
    tone = ToneSource(440.0, amplitude=0.25)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    frames = [await tone.recv() for _ in range(25)]
    elapsed = loop.time() - t0
    assert elapsed == pytest.approx(24 * 0.02, abs=0.05)  # paced: 24 waits of 20 ms
    for i, frame in enumerate(frames):
        assert (frame.format.name, frame.layout.name, frame.sample_rate) == ("s16", "stereo", 48000)
        assert frame.samples == 960
        assert frame.pts == 960 * i
        assert frame.time_base == fractions.Fraction(1, 48000)
    audio = np.concatenate([frame_array(f) for f in frames])
    assert np.array_equal(audio[:, 0], audio[:, 1])
    assert dominant_frequency(audio[:, 0], 48000) == pytest.approx(440, abs=1)
    assert np.max(np.abs(audio)) == pytest.approx(0.25 * 32767, rel=0.01)
    # Continuous phase: no jump at frame boundaries (max step of a 440 Hz sine at this level).
    max_step = 0.25 * 32767 * 2 * np.pi * 440 / 48000
    assert np.max(np.abs(np.diff(audio[:, 0].astype(np.int32)))) <= max_step + 2
    tone.stop()
    with pytest.raises(MediaStreamError):
        await tone.recv()


async def test_tone_at_16k() -> None:
    tone = ToneSource(1000, sample_rate=16000)
    frames = [await tone.recv() for _ in range(10)]
    assert {f.samples for f in frames} == {320}
    assert {f.sample_rate for f in frames} == {16000}
    audio = np.concatenate([frame_array(f) for f in frames])
    assert dominant_frequency(audio[:, 0], 16000) == pytest.approx(1000, abs=5)
    tone.stop()


async def test_silence() -> None:
    silence = SilenceSource()
    assert silence.kind == "audio"
    frames = [await silence.recv() for _ in range(3)]
    assert [f.pts for f in frames] == [0, 960, 1920]
    assert not any(frame_array(f).any() for f in frames)
    silence.stop()
    assert silence.readyState == "ended"
    with pytest.raises(MediaStreamError):
        await silence.recv()


async def test_stop_while_waiting_for_the_next_frame() -> None:
    tone = ToneSource()
    await tone.recv()
    pending = asyncio.ensure_future(tone.recv())
    await asyncio.sleep(0)
    tone.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frequency": 0},
        {"frequency": 24000},
        {"amplitude": 1.5},
        {"amplitude": -0.1},
        {"sample_rate": 44101},
        {"sample_rate": 0},
    ],
)
def test_tone_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ToneSource(**kwargs)  # type: ignore[arg-type]


def test_silence_validation() -> None:
    with pytest.raises(ValueError):
        SilenceSource(sample_rate=1234)
