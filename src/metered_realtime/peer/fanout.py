"""One reader per local track, handing each frame to every copy that reads it.

aiortc's MediaRelay does this too, but keeps reading its source for good once started, after
every copy has stopped: a track removed from every peer (or a closed peer's track) went on
being captured, converted and dropped, 30 frames a second each. Here the reader runs only
while a copy is reading, and stops at once when the last one stops.

Copies are unbuffered: a copy that falls behind gets the newest frame, never a queue. Video
frames are converted to yuv420p once, on the event loop: every encoder reads the same frame
object from its executor thread, and concurrent ``reformat`` calls on one PyAV frame (which
keeps one reformatter per frame) hang or crash.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from .._logging import Logger
from . import aiortc_private


def _yuv420p(frame: Any) -> Any:
    fmt = getattr(getattr(frame, "format", None), "name", "yuv420p")
    if fmt == "yuv420p" or not hasattr(frame, "reformat"):
        return frame
    converted = frame.reformat(format="yuv420p")
    converted.pts = frame.pts
    converted.time_base = frame.time_base
    return converted


class Fanout:
    """Reads ``track`` while at least one copy is reading it."""

    def __init__(self, track: Any, log: Logger) -> None:
        self._track = track
        self._log = log
        self._convert = getattr(track, "kind", None) == "video"
        self._copies: set[FanoutCopy] = set()
        self._task: asyncio.Task[None] | None = None
        self._ended = False

    @property
    def reading(self) -> bool:
        """True while a reader task pulls frames from the track."""
        return self._task is not None

    def copy(self) -> FanoutCopy:
        """A new unbuffered copy of the track, with its id."""
        return FanoutCopy(self)

    def _join(self, copy: FanoutCopy) -> None:
        if self._ended:
            copy._deliver(None)
            return
        self._copies.add(copy)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def _leave(self, copy: FanoutCopy) -> None:
        self._copies.discard(copy)
        if not self._copies and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                frame = await self._track.recv()
            except MediaStreamError:
                frame = None
            except Exception as exc:  # the app's track failed: its copies end, none hangs
                self._log.warning(
                    "a local track failed; it is no longer sent",
                    {"track": self._track.id, "error": repr(exc)},
                )
                frame = None
            if frame is not None and self._convert:
                frame = _yuv420p(frame)
            for copy in list(self._copies):
                copy._deliver(frame)
            if frame is None:
                self._ended = True
                self._copies.clear()
                self._task = None
                return


class FanoutCopy(MediaStreamTrack):
    """One reader's view of a local track: the newest frame since its last ``recv``."""

    def __init__(self, fanout: Fanout) -> None:
        super().__init__()
        self.kind = fanout._track.kind
        setattr(self, aiortc_private.TRACK_ID, fanout._track.id)  # the receiver sees its id
        self._fanout = fanout
        self._frame: Any = None
        self._fresh = asyncio.Event()
        self._joined = False

    async def recv(self) -> Any:
        """The next frame of the track; MediaStreamError once it ended or this copy stopped."""
        if self.readyState != "live":
            raise MediaStreamError
        if not self._joined:
            self._joined = True
            self._fanout._join(self)
        await self._fresh.wait()
        self._fresh.clear()
        if self._frame is None:
            self.stop()
            raise MediaStreamError
        return self._frame

    def _deliver(self, frame: Any) -> None:
        self._frame = frame
        self._fresh.set()

    def stop(self) -> None:
        """Stop this copy; the track is no longer read once no copy reads it.

        A recv() already waiting is not woken, as with aiortc's relay: the peer stops a
        replaced copy only after its sender has moved on to the new one.
        """
        super().stop()
        if self._joined:
            self._joined = False
            self._fanout._leave(self)
