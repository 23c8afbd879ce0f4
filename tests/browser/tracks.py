"""Python media sources for the browser tests: a sine tone (so WebAudio measures a level) and a
moving colour pattern (so the browser decodes changing pictures), both paced to real time."""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

AUDIO_RATE = 48000
AUDIO_PTIME = 0.02


class ToneTrack(MediaStreamTrack):
    """Mono 48 kHz s16 sine at `freq` Hz, amplitude `level` (0..1), 20 ms frames."""

    kind = "audio"

    def __init__(self, freq: float = 440.0, level: float = 0.5) -> None:
        super().__init__()
        self.freq = freq
        self.level = level
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        samples = int(AUDIO_RATE * AUDIO_PTIME)
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += samples
            wait = self._start + self._pts / AUDIO_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (np.arange(samples) + self._pts) / AUDIO_RATE
        pcm = (np.sin(2 * np.pi * self.freq * t) * self.level * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


class PatternTrack(VideoStreamTrack):
    """320x240 rgb24 frames with a bar that moves every frame (aiortc paces them at 30 fps)."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width = width
        self.height = height
        self._n = 0

    async def recv(self) -> Any:
        pts, time_base = await self.next_timestamp()
        img = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        img[:, :, 0] = 40
        img[:, :, 2] = 160
        x = (self._n * 4) % self.width
        img[:, x : x + 16, :] = 255
        self._n += 1
        # rgb24 on purpose: the SDK converts relayed video to yuv420p once before fanning it
        # out to the peers (the mesh test sends this to two peers); see tests/browser/NOTES.md.
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = pts
        frame.time_base = time_base
        return frame
