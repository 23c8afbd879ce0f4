"""One rgb24 local track sent to several peers, with real encoders.

aiortc's encoders convert every non-yuv420p frame with ``frame.reformat("yuv420p")`` in an
executor thread. The fan-out hands the same frame object to every reader, and PyAV caches one
reformatter per frame, so two encoder threads reformatting one frame at once could hang for
good. The SDK converts video frames once, on the event loop, before they fan out.
"""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc")

import asyncio
import fractions
from typing import Any

import av
import numpy as np
from aiortc import VideoStreamTrack
from tests.peer.helpers import Expect, join_all, remote_of
from tests.support.waiting import until

from metered_realtime.events import Track

pytestmark = pytest.mark.timeout(60)


class Rgb24Video(VideoStreamTrack):
    """640x480 rgb24 frames with a moving bar (as a camera, a file or numpy would give)."""

    def __init__(self) -> None:
        super().__init__()
        self._n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        img = np.full((480, 640, 3), 60, dtype=np.uint8)
        x = (self._n * 8) % 640
        img[:, x : x + 32, :] = 255
        self._n += 1
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = pts
        frame.time_base = fractions.Fraction(time_base.numerator, time_base.denominator)
        return frame


async def _keeps_arriving(track: Any, seconds: float, gap: float = 3.0) -> int:
    """Receive frames for ``seconds``; fails if any frame takes longer than ``gap``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    count = 0
    for _ in range(10_000):
        if loop.time() >= end:
            return count
        frame = await asyncio.wait_for(track.recv(), gap)
        assert frame.width == 640
        count += 1
    return count


async def test_rgb24_video_to_three_peers_keeps_flowing(make_peer: Any) -> None:
    sender = make_peer()
    receivers = [make_peer() for _ in range(3)]
    await join_all([sender, *receivers], "fanout")
    await until(lambda: len(sender.remote_peers) == 3, 10)
    await until(lambda: all(len(r.remote_peers) == 3 for r in receivers), 10)
    expects = [Expect(remote_of(r, sender), Track) for r in receivers]
    source = Rgb24Video()
    sender.add_track(source)
    tracks = [(await e.get(15)).track for e in expects]
    # Every receiver decodes its first frame, then frames keep coming for a few seconds.
    await asyncio.gather(*(asyncio.wait_for(t.recv(), 15) for t in tracks))
    counts = await asyncio.gather(*(_keeps_arriving(t, 4.0) for t in tracks))
    assert all(c >= 30 for c in counts), counts
