"""Consumers of received tracks: ``AudioSink`` and ``VideoFrameSink``.

Each sink reads its track with one background task from the moment it is built (or, when
built outside a running event loop, from its first use). Reading promptly matters: an
aiortc remote track queues every decoded frame until someone calls ``recv()``. A sink
never stops the track it reads; the track's owner does. ``close()`` stops reading.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from types import TracebackType
from typing import Any

from aiortc.mediastreams import MediaStreamError
from av import AudioResampler

from .._logging import Logger, NoopLogger
from .audio_source import frame_pcm

__all__ = ["AudioSink", "VideoFrameSink"]

_CHANNELS = {"mono": 1, "stereo": 2}


class _TrackReader:
    """One task calling ``track.recv()`` until the track ends or the reader is closed."""

    def __init__(self, track: Any, kind: str, logger: Logger | None) -> None:
        track_kind = getattr(track, "kind", kind)
        if track_kind != kind:
            raise ValueError(f"{type(self).__name__} needs a {kind} track, not {track_kind!r}")
        self._track = track
        self._logger: Logger = logger if logger is not None else NoopLogger()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._done = False
        self._error: BaseException | None = None
        with contextlib.suppress(RuntimeError):  # no running loop: start on first use
            asyncio.get_running_loop()
            self._start()

    @property
    def track(self) -> Any:
        return self._track

    @property
    def ended(self) -> bool:
        """True once the track has ended (or the sink was closed) and nothing more will come."""
        return self._done

    def _start(self) -> None:
        if self._task is None and not self._done:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                try:
                    frame = await self._track.recv()
                except MediaStreamError:
                    break
                self._on_frame(frame)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._logger.warning(
                f"{type(self).__name__}: reading the track failed", {"error": repr(err)}
            )
            self._error = err
        finally:
            if not self._done:
                self._on_end()
                self._done = True
            self._wake()

    def _on_frame(self, frame: Any) -> None:
        raise NotImplementedError

    def _on_end(self) -> None:
        """The track ended on its own (not called on close)."""

    def _wake(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop reading (sync, idempotent). The track itself keeps running."""
        if self._closed:
            return
        self._closed = True
        self._done = True
        if self._task is not None:
            self._task.cancel()
        self._wake()

    async def aclose(self) -> None:
        """:meth:`close`, then wait for the reading task to finish."""
        self.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> Any:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AudioSink(_TrackReader):
    """An async iterator of PCM chunks from an audio track, e.g. for speech-to-text.

    Each chunk is signed 16-bit little-endian PCM at ``rate`` Hz, ``layout`` ("mono" or
    "stereo"; stereo interleaved), holding the resampled content of one received frame
    (20 ms for WebRTC audio). Iteration ends cleanly when the track ends, after the
    chunks already buffered; a failure other than the track ending is raised to the
    iterating code after those chunks.

    The buffer is bounded to ``max_buffered_seconds`` of audio. When the consumer lags
    behind the track, the **oldest** chunks are dropped to make room (live audio is more
    useful than stale audio); ``dropped_chunks`` counts them. One consumer at a time.
    """

    def __init__(
        self,
        track: Any,
        rate: int = 16000,
        layout: str = "mono",
        *,
        max_buffered_seconds: float = 10.0,
        logger: Logger | None = None,
    ) -> None:
        if layout not in _CHANNELS:
            raise ValueError(f"layout must be 'mono' or 'stereo', not {layout!r}")
        if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
            raise ValueError(f"rate must be a positive int, not {rate!r}")
        if not (max_buffered_seconds > 0) or math.isinf(max_buffered_seconds):
            raise ValueError(
                f"max_buffered_seconds must be a positive number, not {max_buffered_seconds!r}"
            )
        self._rate = rate
        self._layout = layout
        self._channels = _CHANNELS[layout]
        self._cap_bytes = max(1, int(max_buffered_seconds * rate)) * 2 * self._channels
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered_bytes = 0
        self._dropped = 0
        self._resampler: Any = None
        self._resampler_key: tuple[str, str, int] | None = None
        self._ready = asyncio.Event()
        super().__init__(track, "audio", logger)

    @property
    def rate(self) -> int:
        return self._rate

    @property
    def layout(self) -> str:
        return self._layout

    @property
    def buffered_seconds(self) -> float:
        """Seconds of audio waiting for the consumer."""
        return self._buffered_bytes / (2 * self._channels * self._rate)

    @property
    def dropped_chunks(self) -> int:
        """Chunks discarded because the consumer lagged more than the buffer holds."""
        return self._dropped

    def _on_frame(self, frame: Any) -> None:
        key = (str(frame.format.name), str(frame.layout.name), int(frame.sample_rate))
        if key != self._resampler_key:
            self._flush()
            self._resampler = AudioResampler(format="s16", layout=self._layout, rate=self._rate)
            self._resampler_key = key
        self._put(b"".join(frame_pcm(f, self._channels) for f in self._resampler.resample(frame)))

    def _on_end(self) -> None:
        self._flush()

    def _flush(self) -> None:
        resampler, self._resampler, self._resampler_key = self._resampler, None, None
        if resampler is not None:
            self._put(b"".join(frame_pcm(f, self._channels) for f in resampler.resample(None)))

    def _put(self, chunk: bytes) -> None:
        if not chunk or self._closed:
            return
        self._chunks.append(chunk)
        self._buffered_bytes += len(chunk)
        while self._buffered_bytes > self._cap_bytes and len(self._chunks) > 1:
            self._buffered_bytes -= len(self._chunks.popleft())
            self._dropped += 1
        self._ready.set()

    def _wake(self) -> None:
        if self._closed:
            self._chunks.clear()
            self._buffered_bytes = 0
        self._ready.set()

    def __aiter__(self) -> AudioSink:
        return self

    async def __anext__(self) -> bytes:
        self._start()
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered_bytes -= len(chunk)
                return chunk
            if self._done:
                err, self._error = self._error, None
                if err is not None:
                    raise err
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    async def read(self) -> bytes:
        """The next chunk, or ``b""`` once the track has ended and the buffer is empty."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            return b""

    def __repr__(self) -> str:
        return (
            f"<AudioSink {self._rate}Hz/{self._layout} buffered={self.buffered_seconds:.3f}s "
            f"dropped={self._dropped} ended={self._done}>"
        )


class VideoFrameSink(_TrackReader):
    """Keeps the latest decoded frame of a video track (older frames are let go).

    ``latest()`` returns it as an :class:`av.VideoFrame` (None before the first one),
    ``latest_array()`` as a ``height x width x 3`` ``uint8`` numpy array in RGB (needs
    numpy), and ``await wait_frame(timeout)`` waits for one.
    """

    def __init__(self, track: Any, *, logger: Logger | None = None) -> None:
        self._latest: Any = None
        self._count = 0
        self._next = asyncio.Event()
        super().__init__(track, "video", logger)

    @property
    def frames_received(self) -> int:
        return self._count

    def _on_frame(self, frame: Any) -> None:
        self._latest = frame
        self._count += 1
        self._wake()

    def _wake(self) -> None:
        event, self._next = self._next, asyncio.Event()
        event.set()

    def latest(self) -> Any:
        """The most recent frame (an :class:`av.VideoFrame`), or None before the first."""
        return self._latest

    def latest_array(self) -> Any:
        """The most recent frame as an RGB ``uint8`` numpy array (``H x W x 3``), or None."""
        try:
            import numpy  # noqa: F401  (to_ndarray needs it; fail with a clear message)
        except ImportError as err:
            raise ImportError("VideoFrameSink.latest_array() needs numpy installed") from err
        frame = self._latest
        return None if frame is None else frame.to_ndarray(format="rgb24")

    async def wait_frame(self, timeout: float | None = None, *, fresh: bool = False) -> Any:
        """A frame: the latest one if any (unless ``fresh``), else the next to arrive.

        With ``fresh=True`` it always waits for a frame received after the call.
        Raises ``TimeoutError`` after ``timeout`` seconds and
        :class:`aiortc.mediastreams.MediaStreamError` when the track ends (or the sink is
        closed) before such a frame.
        """
        self._start()
        if not fresh and self._latest is not None:
            return self._latest
        count = self._count
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._count == count:
            if self._done:
                raise MediaStreamError("the video track ended before a frame arrived")
            event = self._next
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"no video frame within {timeout} s")
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no video frame within {timeout} s") from None
        return self._latest

    def __repr__(self) -> str:
        return f"<VideoFrameSink frames={self._count} ended={self._done}>"
