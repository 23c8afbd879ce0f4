"""examples/recorder_bot.py: every remote peer of a room ends up in a file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiortc import VideoStreamTrack

from metered_realtime import MeteredPeer
from metered_realtime.demo import analyse_pcm
from metered_realtime.media import MediaStream, ToneSource

av = pytest.importorskip("av")


def decode(path: str) -> tuple[bytes, int, int]:
    """(16 kHz mono PCM of the audio, video frame count, video height) of a recording."""
    pcm = bytearray()
    video_frames, height = 0, 0
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    with av.open(path) as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.AudioFrame):
                for out in resampler.resample(frame):
                    pcm += bytes(out.planes[0])[: out.samples * 2]
            else:
                video_frames += 1
                height = frame.height
    return bytes(pcm), video_frames, height


@pytest.mark.timeout(60)
async def test_bot_records_each_peer_to_its_own_file(
    server: Any, run_example: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rec"
    async with run_example(
        "recorder_bot.py",
        "--url",
        server.url,
        "--key",
        server.api_key,
        "--room",
        "studio",
        "--out",
        str(out),
    ) as bot:
        await bot.expect(r"joined room 'studio' as \S+", 20)
        camera = MeteredPeer(api_key=server.api_key, url=server.url)
        voice = MeteredPeer(api_key=server.api_key, url=server.url)
        tone_a, tone_b, video = ToneSource(440), ToneSource(660), VideoStreamTrack()
        camera.add_stream(MediaStream([tone_a, video]), {"role": "camera"})
        voice.add_track(tone_b)  # no stream: a file for the track
        try:
            await asyncio.wait_for(camera.join("studio"), 10)
            await asyncio.wait_for(voice.join("studio"), 10)
            started = {
                (
                    await bot.expect(r"recording (\S+) \((audio\+video|audio)\) to (\S+)", 30)
                ).groups()
                for _ in range(2)
            }
            by_peer = {peer: (kinds, path) for peer, kinds, path in started}
            assert by_peer[camera.peer_id][0] == "audio+video"
            assert by_peer[voice.peer_id][0] == "audio"
            await asyncio.sleep(1.5)  # 1.5 s of media to record
            camera_id, voice_id = camera.peer_id, voice.peer_id
        finally:
            await asyncio.wait_for(camera.close(), 10)
            await asyncio.wait_for(voice.close(), 10)
            for track in (tone_a, tone_b, video):
                track.stop()
        saved = {(await bot.expect(r"saved (\S+)", 20)).group(1) for _ in range(2)}
        assert saved == {by_peer[camera_id][1], by_peer[voice_id][1]}
        assert await bot.interrupt() == 0
        assert "stopped; 2 file(s) saved" in bot.output

    pcm, frames, height = decode(by_peer[camera_id][1])
    assert len(pcm) / 32000 > 1.0
    assert frames > 10 and height == 480
    level, freq = analyse_pcm(pcm[16000:], 16000)
    assert level > 0.05 and freq == pytest.approx(440, abs=5)

    pcm, frames, _ = decode(by_peer[voice_id][1])
    assert frames == 0 and len(pcm) / 32000 > 1.0
    level, freq = analyse_pcm(pcm[16000:], 16000)
    assert level > 0.05 and freq == pytest.approx(660, abs=5)
