"""``AudioSource``: an aiortc audio track fed by pushed PCM or ``av`` frames."""

from __future__ import annotations

import array
import asyncio
import fractions
import math
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, AudioResampler

from .._logging import Logger, NoopLogger
from ._clock import FrameClock

__all__ = ["AudioSource"]

#: The output format every frame has: 48 kHz, stereo, signed 16-bit, 20 ms.
OUTPUT_RATE = 48000
OUTPUT_LAYOUT = "stereo"
FRAME_SAMPLES = 960
_OUT_BYTES_PER_SAMPLE = 4  # two channels of two bytes
_FRAME_BYTES = FRAME_SAMPLES * _OUT_BYTES_PER_SAMPLE
_TIME_BASE = fractions.Fraction(1, OUTPUT_RATE)

_LAYOUT_CHANNELS = {"mono": 1, "stereo": 2}


def frame_pcm(frame: Any, channels: int) -> bytes:
    """The interleaved s16 bytes of a packed ``s16`` frame (the plane may carry padding)."""
    return bytes(frame.planes[0])[: frame.samples * channels * 2]


def mono_to_stereo(pcm: bytes) -> bytes:
    """Interleave each 16-bit sample of ``pcm`` twice (mono to stereo at full level)."""
    mono = array.array("h")
    mono.frombytes(pcm)
    stereo = array.array("h", bytes(2 * len(pcm)))
    stereo[0::2] = mono
    stereo[1::2] = mono
    return stereo.tobytes()


def pcm_frame(pcm: bytes, layout: str, rate: int) -> Any:
    """A packed ``s16`` :class:`av.AudioFrame` holding ``pcm`` (a whole number of samples)."""
    channels = _LAYOUT_CHANNELS[layout]
    frame = AudioFrame(format="s16", layout=layout, samples=len(pcm) // (2 * channels))
    frame.planes[0].update(pcm)
    frame.sample_rate = rate
    return frame


class AudioSource(MediaStreamTrack):
    """An audio track whose samples the application pushes.

    ``await push(data)`` takes raw signed 16-bit little-endian PCM in the input format
    (``input_rate``, ``input_layout``) or an :class:`av.AudioFrame` (its own format
    applies). Input is resampled to 48 kHz stereo ``s16``. A trailing partial sample is
    carried over to the next push. Pushes are serialized; while ``max_buffered_seconds``
    or more of audio is queued, ``push`` suspends (also between the pieces of one large
    push).

    ``recv()`` returns 20 ms frames (960 samples, pts advancing by 960, time base
    1/48000) paced to real time: the first frame at once; more than 100 ms behind, the
    clock re-anchors instead of bursting. A short buffer is padded with silence, so the
    track stays live between pushes.

    ``end()`` (sync, idempotent) flushes the resampler, releases a blocked push and makes
    later pushes no-ops; once the queued audio has been played, ``recv()`` stops the track
    and raises :class:`aiortc.mediastreams.MediaStreamError`.
    """

    kind = "audio"

    def __init__(
        self,
        *,
        input_rate: int = 16000,
        input_layout: str = "mono",
        max_buffered_seconds: float = 5.0,
        logger: Logger | None = None,
    ) -> None:
        if input_layout not in _LAYOUT_CHANNELS:
            raise ValueError(f"input_layout must be 'mono' or 'stereo', not {input_layout!r}")
        if isinstance(input_rate, bool) or not isinstance(input_rate, int) or input_rate <= 0:
            raise ValueError(f"input_rate must be a positive int, not {input_rate!r}")
        if not (max_buffered_seconds > 0) or math.isinf(max_buffered_seconds):
            raise ValueError(
                f"max_buffered_seconds must be a positive number, not {max_buffered_seconds!r}"
            )
        super().__init__()
        self._input_rate = input_rate
        self._input_layout = input_layout
        self._in_sample_bytes = 2 * _LAYOUT_CHANNELS[input_layout]
        # One 20 ms piece of input per resample call keeps a large push interruptible.
        self._in_piece_bytes = max(1, input_rate // 50) * self._in_sample_bytes
        self._cap_bytes = max(1, int(max_buffered_seconds * OUTPUT_RATE)) * _OUT_BYTES_PER_SAMPLE
        self._logger: Logger = logger if logger is not None else NoopLogger()

        self._buf = bytearray()
        self._carry = b""
        self._in_pts = 0
        self._resampler: Any = None
        self._resampler_key: tuple[str, str, int] | None = None
        self._ended = False
        self._push_lock = asyncio.Lock()
        self._space = asyncio.Event()
        self._clock = FrameClock(OUTPUT_RATE, FRAME_SAMPLES)

    # --- properties -------------------------------------------------------------

    @property
    def buffered_seconds(self) -> float:
        """Seconds of 48 kHz audio queued and not yet returned by ``recv()``."""
        return len(self._buf) / (_OUT_BYTES_PER_SAMPLE * OUTPUT_RATE)

    @property
    def input_rate(self) -> int:
        return self._input_rate

    @property
    def input_layout(self) -> str:
        return self._input_layout

    @property
    def ended(self) -> bool:
        """True once :meth:`end` (or :meth:`stop`) was called."""
        return self._ended

    # --- producer side ------------------------------------------------------------

    async def push(self, data: bytes | bytearray | memoryview | Any) -> None:
        """Queue PCM bytes or an :class:`av.AudioFrame`; suspends while the buffer is full.

        Ignored after :meth:`end`. Raises ``TypeError`` for anything else.
        """
        if isinstance(data, (bytes, bytearray, memoryview)):
            pcm: bytes | None = bytes(data)
            frame = None
        elif isinstance(data, AudioFrame):
            pcm, frame = None, data
        else:
            raise TypeError(f"push() takes PCM bytes or an av.AudioFrame, not {type(data)!r}")
        if self._ended:
            return
        async with self._push_lock:
            if self._ended:
                return
            if pcm is not None:
                await self._push_pcm(pcm)
            else:
                await self._push_frame(frame)

    async def _push_pcm(self, data: bytes) -> None:
        buf = self._carry + data if self._carry else data
        usable = len(buf) - len(buf) % self._in_sample_bytes
        self._carry = buf[usable:]
        for offset in range(0, usable, self._in_piece_bytes):
            if not await self._wait_for_space():
                return
            piece = buf[offset : min(offset + self._in_piece_bytes, usable)]
            frame = pcm_frame(piece, self._input_layout, self._input_rate)
            frame.pts = self._in_pts
            frame.time_base = fractions.Fraction(1, self._input_rate)
            self._in_pts += frame.samples
            self._resample(frame)

    async def _push_frame(self, frame: Any) -> None:
        if not await self._wait_for_space():
            return
        out = self._resample(frame, append=False)
        for offset in range(0, len(out), _FRAME_BYTES):
            if offset and not await self._wait_for_space():
                return
            self._buf += out[offset : offset + _FRAME_BYTES]

    async def _wait_for_space(self) -> bool:
        """Suspend while the buffer is at its cap; False once the source has ended."""
        while not self._ended and len(self._buf) >= self._cap_bytes:
            self._space.clear()
            await self._space.wait()
        return not self._ended

    def _resample(self, frame: Any, *, append: bool = True) -> bytes:
        key = (str(frame.format.name), str(frame.layout.name), int(frame.sample_rate))
        if key != self._resampler_key:
            self._flush_resampler()
            target = "mono" if len(frame.layout.channels) == 1 else OUTPUT_LAYOUT
            self._resampler = AudioResampler(format="s16", layout=target, rate=OUTPUT_RATE)
            self._resampler_key = key
        out = self._to_stereo(self._resampler.resample(frame))
        if append:
            self._buf += out
        return out

    @staticmethod
    def _to_stereo(frames: list[Any]) -> bytes:
        """Packed s16 stereo bytes of resampled frames.

        Mono is resampled as mono and then copied to both channels at full level
        (FFmpeg's own upmix would lower it by 3 dB); other layouts are mixed by FFmpeg.
        """
        if not frames:
            return b""
        if len(frames[0].layout.channels) == 1:
            return mono_to_stereo(b"".join(frame_pcm(f, 1) for f in frames))
        return b"".join(frame_pcm(f, 2) for f in frames)

    def _flush_resampler(self) -> None:
        resampler, self._resampler, self._resampler_key = self._resampler, None, None
        if resampler is None:
            return
        try:
            self._buf += self._to_stereo(resampler.resample(None))
        except Exception as err:  # a broken flush only loses the resampler's tail
            self._logger.warning("audio source: resampler flush failed", {"error": repr(err)})

    def end(self) -> None:
        """No more input: flush, release a blocked push, stop after the queue drains."""
        if self._ended:
            return
        self._ended = True
        self._carry = b""
        self._flush_resampler()
        self._space.set()
        self._logger.debug("audio source ended", {"buffered_seconds": self.buffered_seconds})

    # --- consumer side ----------------------------------------------------------

    async def recv(self) -> Any:
        """The next 20 ms frame, paced to real time (silence when nothing is queued)."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._ended and not self._buf:
            self.stop()
            raise MediaStreamError
        reanchors = self._clock.reanchors
        pts = await self._clock.tick()
        if self._clock.reanchors != reanchors:
            self._logger.debug("audio source clock re-anchored", {"pts": pts})
        chunk = bytes(self._buf[:_FRAME_BYTES])
        del self._buf[:_FRAME_BYTES]
        if len(chunk) < _FRAME_BYTES:
            chunk += bytes(_FRAME_BYTES - len(chunk))
        self._space.set()
        frame = pcm_frame(chunk, OUTPUT_LAYOUT, OUTPUT_RATE)
        frame.pts = pts
        frame.time_base = _TIME_BASE
        return frame

    def stop(self) -> None:
        """End the track now (queued audio is dropped from ``recv``'s point of view)."""
        self.end()
        self._buf.clear()
        super().stop()

    def __repr__(self) -> str:
        return (
            f"<AudioSource id={self.id} input={self._input_rate}Hz/{self._input_layout} "
            f"buffered={self.buffered_seconds:.3f}s state={self.readyState}>"
        )
