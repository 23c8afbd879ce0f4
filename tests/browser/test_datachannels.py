"""Issue #5, test 4: data channels between Chromium and a Python peer, opened from each side,
carrying text and binary both ways; including one the browser opens after media is already
flowing on a connection whose first offer (the browser's) had no SCTP section."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.support.browser import Browser, Page, Recorder, Watch, all_loopback, b64, unb64

from metered_realtime.events import ConnectionReset, DataChannelOpened, DCMessage, DCOpen, Track
from metered_realtime.peer import DataChannel

pytestmark = pytest.mark.timeout(90)


async def _wrap_open(raw: Any) -> tuple[DataChannel, Recorder]:
    """Wrap an aiortc channel; return once it is open, with a recorder of its messages."""
    dc = DataChannel(raw)
    rec = Recorder(dc, DCOpen, DCMessage)
    if dc.ready_state != "open":
        await rec.next(DCOpen, timeout=15)
    return dc, rec


async def _both_ways(page: Page, py_id: str, label: str, dc: DataChannel, rec: Recorder) -> None:
    """Text and binary, page -> Python and Python -> page, on one channel."""
    await page.call("dcSend", py_id, label, f"text on {label} from the browser")
    assert (await rec.next(DCMessage)).data == f"text on {label} from the browser"
    await page.call("dcSend", py_id, label, b64(b"\x00\xffbinary from the browser"))
    assert (await rec.next(DCMessage)).data == b"\x00\xffbinary from the browser"

    def on(p: dict[str, Any]) -> bool:
        return bool(p["label"] == label)

    await dc.send(f"text on {label} from python")
    got = await page.next_event("dc-message", on)
    assert got["data"] == f"text on {label} from python"
    await dc.send(b"\x01\x02binary from python\x00")
    got = await page.next_event("dc-message", on)
    assert unb64(got["data"]) == b"\x01\x02binary from python\x00"


@pytest.mark.parametrize("media_from", ["browser", "python"])
async def test_data_channels_both_sides_and_after_media(
    server: Any, browser: Browser, make_peer: Any, media_from: str
) -> None:
    from tests.browser.tracks import PatternTrack

    py = make_peer()
    watch = Watch(py)
    await py.join(f"room-dc-{media_from}")
    page = await browser.open("dc")
    page_id = await page.join(server.url, server.api_key, f"room-dc-{media_from}")
    remote = await watch.wait_remote(page_id)
    rec = watch.remote(page_id)

    video = None
    if media_from == "browser":
        # The browser makes the first offer, with audio and video only: the SCTP section
        # comes in a later offer, once the browser opens its first data channel.
        await page.call("startMedia", {"metadata": {"role": "camera"}})
        for _ in range(2):
            ev = await rec.next(Track, timeout=20)
            if ev.track.kind == "video":
                video = ev.track
        assert video is not None
        await watch.wait_state(page_id, "connected")
        frame = await asyncio.wait_for(video.recv(), 15)
        assert frame.width > 0

        def flowing(s: dict[str, Any]) -> int:
            return int(s["outbound"].get("video", {}).get("packetsSent", 0))
    else:
        # Python makes the first offer (its offers always carry an SCTP section).
        py.add_track(PatternTrack(), metadata={"role": "pattern"})
        await page.next_event("track", timeout=20)
        await page.wait_remote_state(py.peer_id, "connected")

        def flowing(s: dict[str, Any]) -> int:
            return int(s["inbound"].get("video", {}).get("framesDecoded", 0))

    await page.wait_stats(py.peer_id, lambda s: flowing(s) > 20)

    # Now the browser opens a data channel, after media is flowing.
    await page.call("openChannel", py.peer_id, "late")
    opened = await rec.next(DataChannelOpened, lambda e: e.channel.label == "late", timeout=30)
    await page.next_event("dc-open", lambda p: p["label"] == "late", timeout=30)
    dc_late, late = await _wrap_open(opened.channel)
    await _both_ways(page, py.peer_id, "late", dc_late, late)

    # Media kept flowing through whatever the SDKs did to add the channel.
    before = flowing(await page.call("rtpStats", py.peer_id))
    await page.wait_stats(py.peer_id, lambda s: flowing(s) > before + 20)
    assert not rec.of(ConnectionReset) and not page.events("connection-reset")
    if video is not None:
        frame = await asyncio.wait_for(video.recv(), 15)
        assert frame.width > 0

    # A channel opened from the Python side.
    raw = remote.create_data_channel("from-python")
    dc_py, py_rec = await _wrap_open(raw)
    got = await page.next_event("data-channel", lambda p: p["label"] == "from-python")
    assert got["peer"] == py.peer_id
    await page.next_event("dc-open", lambda p: p["label"] == "from-python")
    await _both_ways(page, py.peer_id, "from-python", dc_py, py_rec)

    # And one more from the browser, now that SCTP is up.
    await page.call("openChannel", py.peer_id, "second")
    opened = await rec.next(DataChannelOpened, lambda e: e.channel.label == "second")
    dc_second, second = await _wrap_open(opened.channel)
    await page.next_event("dc-open", lambda p: p["label"] == "second")
    await _both_ways(page, py.peer_id, "second", dc_second, second)

    # The earlier channels still work.
    await _both_ways(page, py.peer_id, "late", dc_late, late)
    assert all_loopback(await page.call("rtpStats", py.peer_id)), "left loopback"
