"""``Recorder``: audio and video tracks to one file through PyAV."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import os
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError
from av import AudioResampler

from .._logging import Logger, NoopLogger

__all__ = ["Recorder"]

AUDIO_RATE = 48000
_AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
_VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
#: Size of a video stream whose track delivered no frame before the header had to be written.
DEFAULT_VIDEO_SIZE = (640, 480)
#: Packets held back while a video track's first frame (its size) is awaited.
MAX_PENDING_PACKETS = 1000


#: Encoder settings that keep encoding cheap enough for the event loop thread (about a
#: millisecond per 640x480 frame) and hold no frames back.
VIDEO_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"preset": "veryfast", "tune": "zerolatency"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8"},
}


def codecs_for(container_format: str) -> tuple[str, str | None]:
    """(audio codec, video codec or None) for an output container format name."""
    names = set(container_format.split(","))
    if "webm" in names:
        return "libopus", "libvpx"
    if "matroska" in names:
        return "libopus", "libx264"
    if names & {"ogg", "opus"}:
        return "libopus", None
    if "wav" in names:
        return "pcm_s16le", None
    if "mp3" in names:
        return "libmp3lame", None
    return "aac", "libx264"


class _Track:
    """One recorded track: its output stream and timestamp state."""

    def __init__(self, track: Any) -> None:
        self.track = track
        self.kind: str = track.kind
        self.stream: Any = None
        self.task: asyncio.Task[None] | None = None
        self.configured = self.kind == "audio"
        self.resampler: Any = None
        self.resampler_key: tuple[str, str, int] | None = None
        self.next_sample: int | None = None  # audio pts (1/48000) of the next sample
        self.first_time: float | None = None  # video: media time of the first frame
        self.offset = 0.0  # seconds from start() to this track's first frame
        self.last_pts = -1
        self.frames = 0


class Recorder:
    """Records tracks to ``path`` with PyAV.

    The container comes from ``format`` or the file name (``.mkv`` is the safe choice:
    Matroska takes every codec used here). Audio is encoded as Opus in mkv, webm, ogg
    and opus files, PCM in wav, AAC otherwise (mp4, mov, ...); video as VP8 in webm and
    H.264 elsewhere (audio-only containers reject video tracks at :meth:`start`).

    Call :meth:`add_track` for each track, then ``await start()``; ``await stop()``
    flushes the encoders and closes the file. Each track's timeline starts when its
    first frame arrives, relative to :meth:`start`; audio timestamps count samples (so
    gaps in received audio are closed up), video timestamps follow the frames' own pts.
    The recorder never stops the tracks themselves. Encoding runs on the event loop
    thread with real-time encoder settings (:data:`VIDEO_OPTIONS`), which suits speech
    and video up to about 720p; record larger video in another process.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        logger: Logger | None = None,
    ) -> None:
        self._path = os.fspath(path)
        self._format = format
        self._logger: Logger = logger if logger is not None else NoopLogger()
        self._tracks: list[_Track] = []
        self._container: Any = None
        self._pending: list[Any] = []
        self._state = "new"  # new -> recording -> stopped
        self._t0 = 0.0

    @property
    def path(self) -> str:
        return self._path

    @property
    def state(self) -> str:
        """``new``, ``recording`` or ``stopped``."""
        return self._state

    def add_track(self, track: Any) -> None:
        """Record ``track`` (an audio or video track). Only before :meth:`start`."""
        if self._state != "new":
            raise RuntimeError("Recorder.add_track() must be called before start()")
        kind = getattr(track, "kind", None)
        if kind not in ("audio", "video"):
            raise ValueError(f"Recorder records audio or video tracks, not kind {kind!r}")
        if not any(t.track is track for t in self._tracks):
            self._tracks.append(_Track(track))

    async def start(self) -> None:
        """Open the file and start reading every added track. Idempotent."""
        if self._state != "new":
            return
        if not self._tracks:
            raise RuntimeError("Recorder.start() needs at least one track")
        container = av.open(self._path, mode="w", format=self._format)
        try:
            audio_codec, video_codec = codecs_for(str(container.format.name))
            for rec in self._tracks:
                if rec.kind == "audio":
                    rec.stream = container.add_stream(audio_codec, rate=AUDIO_RATE)
                    rec.stream.layout = "stereo"
                else:
                    if video_codec is None:
                        raise ValueError(
                            f"container {container.format.name!r} cannot hold a video track"
                        )
                    rec.stream = container.add_stream(
                        video_codec, rate=30, options=dict(VIDEO_OPTIONS.get(video_codec, {}))
                    )
                    rec.stream.pix_fmt = "yuv420p"
                    # One encoder thread: libvpx's threading costs ~50 ms per frame on
                    # small machines, and frame threads would hold frames back.
                    rec.stream.codec_context.thread_count = 1
                    rec.stream.codec_context.time_base = _VIDEO_TIME_BASE
        except BaseException:
            container.close()
            with contextlib.suppress(OSError):
                os.remove(self._path)
            raise
        self._container = container
        self._state = "recording"
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        for rec in self._tracks:
            rec.task = loop.create_task(self._run(rec))
        self._logger.debug("recorder started", {"path": self._path, "tracks": len(self._tracks)})

    async def stop(self) -> None:
        """Stop reading, flush the encoders and close the file. Idempotent."""
        if self._state != "recording":
            self._state = "stopped"
            return
        self._state = "stopped"
        tasks = [rec.task for rec in self._tracks if rec.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            for rec in self._tracks:
                if not rec.configured:
                    self._configure_video(rec, *DEFAULT_VIDEO_SIZE)
            for rec in self._tracks:
                if rec.kind == "audio" and rec.resampler is not None:
                    for frame in rec.resampler.resample(None):
                        self._encode_audio(rec, frame)
                if rec.frames:
                    self._mux(rec.stream.encode(None))
            self._flush_pending()
        finally:
            self._container.close()
            self._container = None
        self._logger.debug(
            "recorder stopped", {"path": self._path, "frames": [r.frames for r in self._tracks]}
        )

    # --- per-track work -----------------------------------------------------------

    async def _run(self, rec: _Track) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await rec.track.recv()
            except MediaStreamError:
                return
            if rec.frames == 0:
                rec.offset = loop.time() - self._t0
            try:
                if rec.kind == "audio":
                    self._write_audio(rec, frame)
                else:
                    self._write_video(rec, frame)
            except Exception as err:  # one bad frame must not end the recording
                self._logger.warning(
                    "recorder: dropped a frame", {"kind": rec.kind, "error": repr(err)}
                )

    def _write_audio(self, rec: _Track, frame: Any) -> None:
        key = (str(frame.format.name), str(frame.layout.name), int(frame.sample_rate))
        if key != rec.resampler_key:
            if rec.resampler is not None:
                for out in rec.resampler.resample(None):
                    self._encode_audio(rec, out)
            rec.resampler = AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE)
            rec.resampler_key = key
        for out in rec.resampler.resample(frame):
            self._encode_audio(rec, out)

    def _encode_audio(self, rec: _Track, frame: Any) -> None:
        if rec.next_sample is None:
            rec.next_sample = round(rec.offset * AUDIO_RATE)
        pts = rec.next_sample
        rec.next_sample += frame.samples
        self._mux(_encode_stamped(rec.stream, frame, pts, _AUDIO_TIME_BASE))
        rec.frames += 1

    def _write_video(self, rec: _Track, frame: Any) -> None:
        if not rec.configured:
            self._configure_video(rec, frame.width, frame.height)
        if frame.pts is not None and frame.time_base is not None:
            media_time = float(frame.pts * frame.time_base)
        else:
            media_time = asyncio.get_running_loop().time()
        if rec.first_time is None:
            rec.first_time = media_time
        pts = round((rec.offset + media_time - rec.first_time) * _VIDEO_TIME_BASE.denominator)
        pts = max(pts, rec.last_pts + 1)
        rec.last_pts = pts
        self._mux(_encode_stamped(rec.stream, frame, pts, _VIDEO_TIME_BASE))
        rec.frames += 1

    def _configure_video(self, rec: _Track, width: int, height: int) -> None:
        # yuv420p needs even dimensions; later frames of another size are scaled to this one.
        rec.stream.width = max(2, width - width % 2)
        rec.stream.height = max(2, height - height % 2)
        rec.configured = True

    # --- muxing ---------------------------------------------------------------------

    def _mux(self, packets: list[Any]) -> None:
        """Write packets, holding them back until every video stream knows its size.

        The container header (written at the first packet) needs every stream's codec
        parameters. If a video track is slow to deliver, after ``MAX_PENDING_PACKETS``
        its stream takes :data:`DEFAULT_VIDEO_SIZE`.
        """
        if not packets:
            return
        if self._pending or not all(rec.configured for rec in self._tracks):
            self._pending.extend(packets)
            if len(self._pending) < MAX_PENDING_PACKETS and not all(
                rec.configured for rec in self._tracks
            ):
                return
            for rec in self._tracks:
                if not rec.configured:
                    self._configure_video(rec, *DEFAULT_VIDEO_SIZE)
            self._flush_pending()
            return
        for packet in packets:
            self._mux_one(packet)

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, []
        for packet in pending:
            self._mux_one(packet)

    def _mux_one(self, packet: Any) -> None:
        try:
            self._container.mux(packet)
        except av.FFmpegError as err:
            self._logger.warning("recorder: packet not written", {"error": repr(err)})

    def __repr__(self) -> str:
        return f"<Recorder {self._path!r} tracks={len(self._tracks)} state={self._state}>"


def _encode_stamped(stream: Any, frame: Any, pts: int, time_base: fractions.Fraction) -> list[Any]:
    """Encode ``frame`` with our timestamps, leaving the caller's frame as it was.

    The frame may be shared (a relay hands one frame to several consumers), so its own
    pts is restored once the encoder has taken its reference (a time base of None cannot
    be set back, so such a frame keeps ours).
    """
    saved_pts, saved_base = frame.pts, frame.time_base
    frame.pts, frame.time_base = pts, time_base
    try:
        return list(stream.encode(frame))
    finally:
        frame.pts = saved_pts
        if saved_base is not None:
            frame.time_base = saved_base
