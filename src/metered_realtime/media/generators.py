"""Generated audio tracks: ``ToneSource`` and ``SilenceSource``.

Both are aiortc audio tracks producing 20 ms frames of stereo ``s16`` at ``sample_rate``,
paced to real time like :class:`~metered_realtime.media.AudioSource` (first frame at
once, re-anchoring instead of bursting when the consumer falls behind). They run until
``stop()``.
"""

from __future__ import annotations

import array
import fractions
import math
import sys
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ._clock import FrameClock
from .audio_source import pcm_frame

__all__ = ["SilenceSource", "ToneSource"]


def _check_rate(sample_rate: int) -> int:
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, int)
        or sample_rate <= 0
        or sample_rate % 50
    ):
        raise ValueError(f"sample_rate must be a positive multiple of 50, not {sample_rate!r}")
    return sample_rate


class _GeneratedAudio(MediaStreamTrack):
    """A paced 20 ms stereo s16 audio track whose samples a subclass computes."""

    kind = "audio"

    def __init__(self, sample_rate: int) -> None:
        super().__init__()
        self._rate = _check_rate(sample_rate)
        self._samples = sample_rate // 50
        self._time_base = fractions.Fraction(1, sample_rate)
        self._clock = FrameClock(sample_rate, self._samples)

    @property
    def sample_rate(self) -> int:
        return self._rate

    def _pcm(self) -> bytes:
        raise NotImplementedError

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._clock.tick()
        if self.readyState != "live":  # stopped while waiting
            raise MediaStreamError
        frame = pcm_frame(self._pcm(), "stereo", self._rate)
        frame.pts = pts
        frame.time_base = self._time_base
        return frame


class ToneSource(_GeneratedAudio):
    """A continuous sine tone (test signal): ``frequency`` Hz at ``amplitude`` of full scale.

    The phase carries over from frame to frame, so the tone has no clicks. Raises
    ``ValueError`` for a frequency outside (0, sample_rate / 2), an amplitude outside
    [0, 1], or a sample rate that is not a positive multiple of 50.
    """

    def __init__(
        self, frequency: float = 440.0, *, amplitude: float = 0.5, sample_rate: int = 48000
    ) -> None:
        rate = _check_rate(sample_rate)
        if not (0 < frequency < rate / 2):
            raise ValueError(f"frequency must be in (0, {rate / 2}) Hz, not {frequency!r}")
        if not (0 <= amplitude <= 1):
            raise ValueError(f"amplitude must be in [0, 1], not {amplitude!r}")
        super().__init__(rate)
        self._frequency = float(frequency)
        self._amplitude = float(amplitude)
        self._step = 2 * math.pi * self._frequency / rate
        self._phase = 0.0

    @property
    def frequency(self) -> float:
        return self._frequency

    @property
    def amplitude(self) -> float:
        return self._amplitude

    def _pcm(self) -> bytes:
        peak = self._amplitude * 32767
        phase, step = self._phase, self._step
        mono = array.array(
            "h", (round(peak * math.sin(phase + i * step)) for i in range(self._samples))
        )
        self._phase = (phase + self._samples * step) % (2 * math.pi)
        stereo = array.array("h", bytes(4 * self._samples))
        stereo[0::2] = mono
        stereo[1::2] = mono
        if sys.byteorder == "big":
            stereo.byteswap()
        return stereo.tobytes()

    def __repr__(self) -> str:
        return f"<ToneSource id={self.id} {self._frequency:g}Hz state={self.readyState}>"


class SilenceSource(_GeneratedAudio):
    """Digital silence, for keeping an audio m-line alive or holding a slot for later media."""

    def __init__(self, *, sample_rate: int = 48000) -> None:
        super().__init__(sample_rate)
        self._silence = bytes(4 * self._samples)

    def _pcm(self) -> bytes:
        return self._silence

    def __repr__(self) -> str:
        return f"<SilenceSource id={self.id} state={self.readyState}>"
