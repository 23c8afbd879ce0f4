"""A browser whose camera is attached before our offer arrives still gets our track metadata.

The page starts its camera, then the Python peer joins with media of its own, so both sides
negotiate at once, in both politeness orders. Chromium associates transceivers that
``addTrack`` made with matching m-sections of a remote offer (JSEP 5.10), and the receiver
tracks of those transceivers keep the ids Chromium generated, which no metadata message
names. The Python side then moves its tracks to new m-sections, so the page may first see our
stream without metadata on those receivers, then ``stream-removed`` and ``stream-added`` again
with it. Whatever the order, the page ends up with our tracks, by our track ids, with our
metadata, and the video plays; we get theirs with their metadata.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.support.browser import Browser, Page, Watch

from metered_realtime.events import StreamAdded
from metered_realtime.media import MediaStream
from metered_realtime.peer import MeteredPeer

pytestmark = pytest.mark.timeout(110)

TRIES = 10


async def camera_first_pair(
    server: Any, browser: Browser, make_peer: Any, python_polite: bool
) -> tuple[Page, MeteredPeer, Watch, MediaStream, dict[str, Any]]:
    """A page with its camera on, then a Python peer with media joining the same room.

    Peer ids are random: fresh pairs until the Python side has the politeness wanted.
    """
    from tests.browser.tracks import PatternTrack, ToneTrack

    for attempt in range(TRIES):
        room = f"room-camfirst-{python_polite}-{attempt}"
        page = await browser.open(f"camfirst-{python_polite}-{attempt}")
        page_id = await page.join(server.url, server.api_key, room)
        sent = await page.call("startMedia", {"metadata": {"role": "camera"}})
        py = make_peer()
        watch = Watch(py)
        stream = MediaStream([ToneTrack(), PatternTrack()])
        py.add_stream(stream, {"role": "bot"})
        await py.join(room)
        remote = await watch.wait_remote(page_id)
        if remote.polite == python_polite:
            return page, py, watch, stream, sent
        await page.call("close")
        await py.close()
    pytest.skip(f"no {'polite' if python_polite else 'impolite'} Python side in {TRIES} tries")


@pytest.mark.parametrize("python_polite", [True, False], ids=["python-polite", "python-impolite"])
async def test_our_metadata_reaches_a_page_whose_camera_was_on_first(
    server: Any, browser: Browser, make_peer: Any, python_polite: bool
) -> None:
    page, py, watch, stream, sent = await camera_first_pair(
        server, browser, make_peer, python_polite
    )
    ids = {t.id for t in stream.get_tracks()}
    ours = await page.next_event(
        "stream-added",
        lambda p: p["streamId"] == stream.id and p["metadata"] is not None,
        timeout=30,
    )
    assert ours["metadata"] == {"role": "bot"}
    tracks = [
        await page.next_event("track", lambda p: p["trackId"] in ids, timeout=20) for _ in range(2)
    ]
    assert {t["kind"] for t in tracks} == {"audio", "video"}
    assert all(t["metadata"] == {"role": "bot"} for t in tracks), tracks
    assert all(t["streamIds"] == [stream.id] for t in tracks), tracks
    await page.wait_video(py.peer_id or "", stream.id)
    # And theirs reaches us, with its metadata.
    page_id = page.peer_id or ""
    theirs = await watch.remote(page_id).next(
        StreamAdded, lambda e: e.stream.id == sent["streamId"], timeout=20
    )
    assert theirs.metadata == {"role": "camera"}
    await asyncio.wait_for(page.wait_remote_state(py.peer_id or "", "connected"), 20)
