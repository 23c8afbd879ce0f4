"""Real-time pacing shared by the audio tracks this package generates."""

from __future__ import annotations

import asyncio

#: A clock this far behind real time re-anchors instead of bursting to catch up.
MAX_LAG = 0.1


class FrameClock:
    """Hands out the pts of fixed-size frames at the pace of the wall clock.

    The first frame goes out at once; each later one waits until its due time. When the
    consumer falls more than :data:`MAX_LAG` seconds behind, the clock re-anchors on
    "now" (the frame goes out at once and the next is due one frame later), so a stalled
    consumer never gets a burst of back-to-back frames.
    """

    __slots__ = ("_frame", "_pts", "_rate", "_start", "reanchors")

    def __init__(self, rate: int, frame_samples: int) -> None:
        self._rate = rate
        self._frame = frame_samples
        self._start: float | None = None
        self._pts = 0
        self.reanchors = 0

    async def tick(self) -> int:
        """Wait until the next frame is due and return its pts (in 1/rate units)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            self._start = now
            self._pts = 0
            return 0
        self._pts += self._frame
        delay = self._start + self._pts / self._rate - now
        if delay > 0:
            await asyncio.sleep(delay)
        elif -delay > MAX_LAG:
            self._start = now - self._pts / self._rate
            self.reanchors += 1
        return self._pts
