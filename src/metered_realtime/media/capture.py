"""Media input from files, RTSP and local devices, plus ``iter_frames``.

Every factory returns an aiortc ``MediaPlayer`` (``.audio`` / ``.video``, None when
absent). The caller owns the player and must stop its tracks. Each accepts a private
``_player(file, format, options, loop)`` seam that builds the player.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError

__all__ = [
    "from_camera",
    "from_file",
    "from_microphone",
    "from_rtsp",
    "iter_frames",
    "screen_share",
]

PlayerFactory = Callable[[Any, str | None, dict[str, str] | None, bool], Any]

RTSP_TRANSPORTS = ("tcp", "udp", "udp_multicast", "http")

#: platform -> (camera, microphone, screen): (FFmpeg input format, default device).
_DEVICES: dict[str, tuple[tuple[str, str], tuple[str, str], tuple[str, str]]] = {
    "linux": (("v4l2", "/dev/video0"), ("alsa", "default"), ("x11grab", ":0.0")),
    "darwin": (
        ("avfoundation", "default:none"),
        ("avfoundation", ":default"),
        ("avfoundation", "Capture screen 0:none"),
    ),
    "win32": (
        ("dshow", "video=Integrated Camera"),
        ("dshow", "audio=Microphone"),
        ("gdigrab", "desktop"),
    ),
}


def _media_player(file: Any, format: str | None, options: dict[str, str] | None, loop: bool) -> Any:
    from aiortc.contrib.media import MediaPlayer

    return MediaPlayer(file, format=format, options=options, loop=loop)


def _current_platform() -> str:
    """``linux``, ``darwin``, ``win32`` or whatever else ``sys.platform`` says."""
    return "linux" if sys.platform.startswith("linux") else sys.platform


def _device(index: int, what: str) -> tuple[str, str]:
    platform = _current_platform()
    devices = _DEVICES.get(platform)
    if devices is None:
        raise RuntimeError(f"{what} capture is not supported on platform {platform!r}")
    return devices[index]


def _video_options(width: int, height: int, fps: float) -> dict[str, str] | None:
    options: dict[str, str] = {}
    if width and height:
        options["video_size"] = f"{width}x{height}"
    if fps:
        options["framerate"] = f"{fps:g}"
    return options or None


async def iter_frames(track: Any) -> AsyncIterator[Any]:
    """Yield ``track.recv()`` frames until the track ends (``MediaStreamError``), then stop."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        yield frame


def from_file(file: Any, *, loop: bool = False, _player: PlayerFactory | None = None) -> Any:
    """A player for a path, URL or file object; FFmpeg detects the format.

    ``loop=True`` repeats playback (the file must be seekable). aiortc's player does not
    drain the decoder at end of file, so with a codec that holds frames back (H.264 with
    B-frames, for instance) the last frames are lost and, with PyAV 18, looping stops
    after the first pass; audio files and intra/low-latency video loop fine.
    """
    return (_player or _media_player)(file, None, None, loop)


def from_rtsp(url: str, *, transport: str = "tcp", _player: PlayerFactory | None = None) -> Any:
    """A player for an RTSP stream over ``transport`` (tcp, udp, udp_multicast or http)."""
    if transport not in RTSP_TRANSPORTS:
        raise ValueError(
            f"transport must be one of {', '.join(RTSP_TRANSPORTS)}, not {transport!r}"
        )
    return (_player or _media_player)(url, None, {"rtsp_transport": transport}, False)


def from_camera(
    device: str | None = None,
    *,
    width: int = 640,
    height: int = 480,
    fps: float = 30,
    _player: PlayerFactory | None = None,
) -> Any:
    """The platform camera (Linux v4l2 ``/dev/video0``, macOS avfoundation, Windows dshow).

    The size option is passed only when width and height are both non-zero, the frame
    rate only when fps is non-zero. Unsupported platform: ``RuntimeError``.
    """
    fmt, default = _device(0, "camera")
    options = _video_options(width, height, fps)
    return (_player or _media_player)(
        device if device is not None else default, fmt, options, False
    )


def from_microphone(device: str | None = None, *, _player: PlayerFactory | None = None) -> Any:
    """The platform microphone (Linux ALSA ``default``, macOS avfoundation, Windows dshow)."""
    fmt, default = _device(1, "microphone")
    return (_player or _media_player)(device if device is not None else default, fmt, None, False)


def screen_share(
    device: str | None = None,
    *,
    width: int = 0,
    height: int = 0,
    fps: float = 30,
    _player: PlayerFactory | None = None,
) -> Any:
    """The screen (Linux x11grab ``:0.0``, macOS avfoundation, Windows gdigrab ``desktop``).

    Same option rules as :func:`from_camera`; by default the whole screen at 30 fps.
    """
    fmt, default = _device(2, "screen")
    options = _video_options(width, height, fps)
    return (_player or _media_player)(
        device if device is not None else default, fmt, options, False
    )
