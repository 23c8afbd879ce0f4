"""Issue #5, test 6: two Python peers and one Chromium tab in one room, full mesh: every pair
negotiates its own connection, reaches connected, and carries media."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.support.browser import Browser, Watch, all_loopback

from metered_realtime.events import StreamAdded, Track
from metered_realtime.media import MediaStream

pytestmark = pytest.mark.timeout(90)


async def test_two_python_peers_and_a_browser_full_mesh(
    server: Any, browser: Browser, make_peer: Any
) -> None:
    from tests.browser.tracks import PatternTrack, ToneTrack

    a, b = make_peer(), make_peer()
    wa, wb = Watch(a), Watch(b)
    await a.join("room-mesh")
    await b.join("room-mesh")
    await wa.wait_remote(b.peer_id)
    await wb.wait_remote(a.peer_id)
    streams = {}
    for peer, name in ((a, "a"), (b, "b")):
        streams[name] = MediaStream([ToneTrack(), PatternTrack()])
        peer.add_stream(streams[name], {"role": "camera", "label": name})

    page = await browser.open("mesh")
    page_id = await page.join(server.url, server.api_key, "room-mesh")
    await page.call("startMedia", {"metadata": {"role": "camera", "label": "browser"}})
    await wa.wait_remote(page_id)
    await wb.wait_remote(page_id)
    joined = {(await page.next_event("peer-joined"))["id"] for _ in range(2)}
    assert joined == {a.peer_id, b.peer_id}

    # Every pair connected, on both ends.
    await wa.wait_state(b.peer_id, "connected", 25)
    await wb.wait_state(a.peer_id, "connected", 25)
    for watch in (wa, wb):
        await watch.wait_state(page_id, "connected", 25)
    for peer in (a, b):
        await page.wait_remote_state(peer.peer_id, "connected", 25)

    # Media on every edge: Python <-> Python, browser -> each Python, each Python -> browser.
    async def python_receives(
        watch: Watch, sender_id: str, stream_id: str, metadata: dict[str, str] | None
    ) -> None:
        rec = watch.remote(sender_id)
        added = await rec.next(StreamAdded, lambda e: e.stream.id == stream_id, 25)
        if metadata is not None:
            assert added.metadata == metadata
        ev = await rec.next(Track, lambda e: e.track.kind == "video", 25)
        frame = await asyncio.wait_for(ev.track.recv(), 15)
        assert frame.width > 0

    await asyncio.gather(
        python_receives(wb, a.peer_id, streams["a"].id, {"role": "camera", "label": "a"}),
        python_receives(wa, b.peer_id, streams["b"].id, {"role": "camera", "label": "b"}),
    )
    # Whoever offered first, the browser's metadata arrives too (tests/browser/NOTES.md).
    local = await page.eval("H.local.stream.id")
    theirs = {"role": "camera", "label": "browser"}
    await asyncio.gather(
        python_receives(wa, page_id, local, theirs),
        python_receives(wb, page_id, local, theirs),
    )
    for peer, name in ((a, "a"), (b, "b")):
        await page.next_event(
            "stream-added",
            lambda p, pid=peer.peer_id, sid=streams[name].id: (
                p["peer"] == pid and p["streamId"] == sid
            ),
            timeout=25,
        )
        await page.wait_video(peer.peer_id, streams[name].id)
        stats = await page.wait_stats(
            peer.peer_id,
            lambda s: (
                s["inbound"].get("video", {}).get("framesDecoded", 0) > 5
                and s["outbound"].get("video", {}).get("packetsSent", 0) > 5
            ),
        )
        assert all_loopback(stats), stats
    assert len({r.id for r in a.remote_peers}) == 2
    assert len({r.id for r in b.remote_peers}) == 2
