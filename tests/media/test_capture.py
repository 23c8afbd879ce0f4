"""Capture factories: exact player arguments through the ``_player`` seam (hardware is
the one thing faked), ``from_file`` and ``iter_frames`` on real files made with PyAV."""

from __future__ import annotations

import fractions
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from tests.media.tracks import dominant_frequency, frame_array, tone_pcm

from metered_realtime.media import (
    AudioSource,
    capture,
    from_camera,
    from_file,
    from_microphone,
    from_rtsp,
    iter_frames,
    screen_share,
)


class Seam:
    """Records the one call a factory makes to build its player."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, str | None, dict[str, str] | None, bool]] = []

    def __call__(
        self, file: Any, format: str | None, options: dict[str, str] | None, loop: bool
    ) -> str:
        self.calls.append((file, format, options, loop))
        return "player"


@pytest.fixture
def seam() -> Seam:
    return Seam()


def on(monkeypatch: pytest.MonkeyPatch, platform: str) -> None:
    monkeypatch.setattr(capture, "_current_platform", lambda: platform)


@pytest.mark.parametrize(
    ("platform", "camera", "microphone", "screen"),
    [
        ("linux", ("/dev/video0", "v4l2"), ("default", "alsa"), (":0.0", "x11grab")),
        (
            "darwin",
            ("default:none", "avfoundation"),
            (":default", "avfoundation"),
            ("Capture screen 0:none", "avfoundation"),
        ),
        (
            "win32",
            ("video=Integrated Camera", "dshow"),
            ("audio=Microphone", "dshow"),
            ("desktop", "gdigrab"),
        ),
    ],
)
def test_platform_devices(
    monkeypatch: pytest.MonkeyPatch,
    seam: Seam,
    platform: str,
    camera: tuple[str, str],
    microphone: tuple[str, str],
    screen: tuple[str, str],
) -> None:
    on(monkeypatch, platform)
    assert from_camera(_player=seam) == "player"
    from_microphone(_player=seam)
    screen_share(_player=seam)
    assert seam.calls == [
        (*camera, {"video_size": "640x480", "framerate": "30"}, False),
        (*microphone, None, False),
        (*screen, {"framerate": "30"}, False),
    ]


def test_explicit_devices_and_option_rules(monkeypatch: pytest.MonkeyPatch, seam: Seam) -> None:
    on(monkeypatch, "linux")
    from_camera("/dev/video2", width=1280, height=720, fps=15, _player=seam)
    from_camera(width=1280, height=0, fps=0, _player=seam)  # size needs both; fps 0: no rate
    from_camera(width=0, height=0, fps=24, _player=seam)
    screen_share(":1.0+10,20", width=800, height=600, fps=5, _player=seam)
    screen_share(fps=0, _player=seam)
    from_microphone("hw:1", _player=seam)
    assert seam.calls == [
        ("/dev/video2", "v4l2", {"video_size": "1280x720", "framerate": "15"}, False),
        ("/dev/video0", "v4l2", None, False),
        ("/dev/video0", "v4l2", {"framerate": "24"}, False),
        (":1.0+10,20", "x11grab", {"video_size": "800x600", "framerate": "5"}, False),
        (":0.0", "x11grab", None, False),
        ("hw:1", "alsa", None, False),
    ]


@pytest.mark.parametrize("platform", ["freebsd13", "aix", "emscripten"])
def test_other_platforms_raise(monkeypatch: pytest.MonkeyPatch, seam: Seam, platform: str) -> None:
    on(monkeypatch, platform)
    for factory in (from_camera, from_microphone, screen_share):
        with pytest.raises(RuntimeError):
            factory(_player=seam)
    assert seam.calls == []


def test_platform_detection_is_sys_platform() -> None:
    import sys

    expected = "linux" if sys.platform.startswith("linux") else sys.platform
    assert capture._current_platform() == expected


def test_rtsp_transport(seam: Seam) -> None:
    from_rtsp("rtsp://127.0.0.1:8554/cam", _player=seam)
    for transport in ("udp", "udp_multicast", "http"):
        from_rtsp("rtsp://127.0.0.1:8554/cam", transport=transport, _player=seam)
    assert [c[2] for c in seam.calls] == [
        {"rtsp_transport": t} for t in ("tcp", "udp", "udp_multicast", "http")
    ]
    assert {(c[0], c[1], c[3]) for c in seam.calls} == {("rtsp://127.0.0.1:8554/cam", None, False)}
    with pytest.raises(ValueError):
        from_rtsp("rtsp://127.0.0.1:8554/cam", transport="quic", _player=seam)
    assert len(seam.calls) == 4


def test_from_file_seam(seam: Seam) -> None:
    from_file("clip.mp4", _player=seam)
    from_file("clip.mp4", loop=True, _player=seam)
    assert seam.calls == [("clip.mp4", None, None, False), ("clip.mp4", None, None, True)]


# --- real files -------------------------------------------------------------------------


def write_wav(path: Path, seconds: float, freq: float = 440.0) -> None:
    """A 16 kHz mono PCM WAV of a tone, written with PyAV."""
    pcm = tone_pcm(freq, 16000, seconds)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
        frame.planes[0].update(pcm)
        frame.sample_rate, frame.pts, frame.time_base = 16000, 0, fractions.Fraction(1, 16000)
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def write_video(path: Path, frames: int) -> None:
    """An H.264 mkv of solid frames at 30 fps, written with PyAV.

    ``zerolatency``: no frame is held inside the decoder at end of file. aiortc's player
    never drains the decoder, and with PyAV 18 a decoder that saw the end-of-file flush
    raises EOFError after the loop's seek, so a file with decoder delay loses its last
    frames and does not loop (an aiortc/PyAV limitation, not the SDK's).
    """
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"tune": "zerolatency"})
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(frames):
            image = np.full((120, 160, 3), (0, 180, 60), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


async def test_from_file_plays_a_real_audio_file(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    write_wav(path, 0.4)
    player = from_file(str(path))
    assert player.audio is not None
    assert player.video is None
    frames = [f async for f in iter_frames(player.audio)]
    assert sum(f.samples for f in frames) / frames[0].sample_rate == pytest.approx(0.4, abs=0.03)
    audio = np.concatenate([frame_array(f) for f in frames])
    assert dominant_frequency(audio[:, 0], frames[0].sample_rate) == pytest.approx(440, abs=5)
    assert player.audio.readyState == "ended"


async def test_from_file_video_and_loop(tmp_path: Path) -> None:
    path = tmp_path / "clip.mkv"
    write_video(path, 6)
    once = from_file(path)
    assert once.audio is None
    frames = [f async for f in iter_frames(once.video)]
    assert len(frames) == 6
    assert (frames[0].width, frames[0].height) == (160, 120)
    looped = from_file(path, loop=True)
    count = 0
    async for _frame in iter_frames(looped.video):
        count += 1
        if count == 15:  # more than the file holds: it loops
            break
    looped.video.stop()
    assert count == 15


async def test_iter_frames_ends_quietly_when_the_track_ends() -> None:
    src = AudioSource(input_rate=48000)
    await src.push(tone_pcm(440, 48000, 0.1))
    src.end()
    frames = [f async for f in iter_frames(src)]
    assert len(frames) == 5
