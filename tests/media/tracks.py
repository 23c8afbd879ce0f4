"""Helpers for the media tests: signal analysis, real generated tracks, loopback WebRTC."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import re
from collections.abc import AsyncIterator
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency in ``samples`` (Hann window, FFT, parabolic peak interpolation)."""
    x = samples.astype(np.float64)
    x -= x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    shift = 0.5 * (a - c) / (a - 2 * b + c)
    return float((k + shift) * rate / len(x))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def tone_pcm(
    freq: float, rate: int, seconds: float, *, channels: int = 1, amplitude: float = 0.5
) -> bytes:
    """Signed 16-bit little-endian PCM of a sine tone, interleaved when stereo."""
    n = round(rate * seconds)
    mono = np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * np.arange(n) / rate))
    return np.repeat(mono.astype("<i2"), channels).tobytes()


def pcm_array(pcm: bytes, channels: int) -> np.ndarray:
    """PCM bytes as an ``(n, channels)`` int16 array."""
    return np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)


def frame_array(frame: Any) -> np.ndarray:
    """A packed s16 audio frame as an ``(samples, channels)`` int16 array."""
    channels = len(frame.layout.channels)
    return np.frombuffer(bytes(frame.planes[0]), dtype="<i2")[: frame.samples * channels].reshape(
        -1, channels
    )


class ColorVideoTrack(VideoStreamTrack):
    """Real rgb24 frames of one solid colour at 30 fps (paced), optionally ``limit`` of them."""

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        color: tuple[int, int, int] = (200, 40, 90),
        *,
        limit: int | None = None,
    ) -> None:
        super().__init__()
        self.width, self.height, self.color, self.limit = width, height, color, limit
        self.sent = 0

    async def recv(self) -> av.VideoFrame:
        if self.limit is not None and self.sent >= self.limit:
            self.stop()
            raise MediaStreamError
        pts, time_base = await self.next_timestamp()
        if self.readyState != "live":  # stopped while waiting for the frame's time
            raise MediaStreamError
        image = np.empty((self.height, self.width, 3), dtype=np.uint8)
        image[:] = self.color
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.sent += 1
        return frame


class CountingAudioTrack(MediaStreamTrack):
    """Unpaced 20 ms 48 kHz stereo s16 frames; frame ``i`` holds the constant sample ``i``."""

    kind = "audio"

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.index = 0

    async def recv(self) -> av.AudioFrame:
        await asyncio.sleep(0)
        if self.index >= self.count:
            self.stop()
            raise MediaStreamError
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(np.full(1920, self.index, dtype="<i2").tobytes())
        frame.sample_rate = 48000
        frame.pts = self.index * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self.index += 1
        return frame


class SilentForeverTrack(MediaStreamTrack):
    """A live video track that never delivers a frame (until stopped)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._stopped = asyncio.Event()

    async def recv(self) -> Any:
        await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        self._stopped.set()
        super().stop()


_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ (\S+)", re.MULTILINE)


def candidate_addresses(sdp: str) -> list[tuple[str, str]]:
    """(address, type) of every candidate line in an SDP."""
    return _CANDIDATE.findall(sdp)


def new_pc() -> RTCPeerConnection:
    """A peer connection with no STUN/TURN servers (aiortc's default would be a public STUN)."""
    return RTCPeerConnection(configuration=RTCConfiguration(iceServers=[]))


async def negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    """Offer/answer exchanged directly (non-trickle); every candidate must be 127.0.0.1."""
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    for sdp in (offerer.localDescription.sdp, answerer.localDescription.sdp):
        found = candidate_addresses(sdp)
        assert found, "no ICE candidates gathered"
        assert all(addr == "127.0.0.1" and typ == "host" for addr, typ in found), found


@contextlib.asynccontextmanager
async def loopback_pair() -> AsyncIterator[tuple[RTCPeerConnection, RTCPeerConnection]]:
    """Two peer connections in this process, closed (bounded) on exit."""
    a, b = new_pc(), new_pc()
    try:
        yield a, b
    finally:
        for pc in (a, b):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 5)


async def wait_connected(pc: RTCPeerConnection, timeout: float = 10.0) -> None:
    """Until ``pc.connectionState`` is connected (event-driven, bounded)."""
    done = asyncio.get_running_loop().create_future()

    def check() -> None:
        if pc.connectionState == "connected" and not done.done():
            done.set_result(None)
        elif pc.connectionState in ("failed", "closed") and not done.done():
            done.set_exception(AssertionError(f"connection {pc.connectionState}"))

    pc.on("connectionstatechange", check)
    check()
    await asyncio.wait_for(done, timeout)


__all__ = [
    "ColorVideoTrack",
    "CountingAudioTrack",
    "SilentForeverTrack",
    "candidate_addresses",
    "dominant_frequency",
    "frame_array",
    "loopback_pair",
    "negotiate",
    "new_pc",
    "pcm_array",
    "rms",
    "tone_pcm",
    "wait_connected",
]
