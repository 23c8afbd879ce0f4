"""Issue #15: Chromium (JS SDK) and a Python peer, both with the relay-only ICE policy, call
each other through a real coturn: media (browser to Python) and a data channel flow, and both ends of the pair
each side selected are relay candidates."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.support.browser import Browser, Recorder, Watch
from tests.support.coturn import running_coturn
from tests.support.webrtc import peer_factory

from metered_realtime.events import DataChannelOpened, DCMessage, DCOpen, Track

pytestmark = pytest.mark.timeout(120)


async def test_browser_and_python_relay_only(
    browser: Browser, server_factory: Any, tmp_path: Path
) -> None:
    pytest.importorskip("aiortc")
    from tests.support.icepairs import local_candidate_types, selected_pairs

    from metered_realtime.peer import DataChannel

    async with (
        running_coturn(tmp_path) as coturn,
        server_factory(ice_urls=(coturn.url,), turn_secret=coturn.secret) as srv,
        peer_factory(srv) as make,
    ):
        py = make(ice_transport_policy="relay")
        watch = Watch(py)
        await py.join("relay-browser")
        page = await browser.open("relay")
        page_id = await page.join(srv.url, srv.api_key, "relay-browser", iceTransportPolicy="relay")
        remote = await watch.wait_remote(page_id)
        rec = watch.remote(page_id)

        # Media, browser -> Python, decoded here.
        await page.call("startMedia", {"audio": False})
        track = (await rec.next(Track, timeout=30)).track
        await watch.wait_state(page_id, "connected")
        frame = await asyncio.wait_for(track.recv(), 20)
        assert frame.width > 0
        stats = await page.wait_stats(
            py.peer_id, lambda s: s["outbound"].get("video", {}).get("packetsSent", 0) > 10
        )

        # A data channel the browser opens, both ways.
        await page.call("openChannel", py.peer_id, "chat")
        opened = await rec.next(DataChannelOpened, lambda e: e.channel.label == "chat", timeout=30)
        channel = DataChannel(opened.channel)
        messages = Recorder(channel, DCOpen, DCMessage)
        if channel.ready_state != "open":
            await messages.next(DCOpen, timeout=15)
        await page.next_event("dc-open", lambda p: p["label"] == "chat", timeout=30)
        await page.call("dcSend", py.peer_id, "chat", "through the relay")
        assert (await messages.next(DCMessage)).data == "through the relay"
        await channel.send("and back")
        got = await page.next_event("dc-message", lambda p: p["label"] == "chat")
        assert got["data"] == "and back"

        assert (stats["pair"]["localType"], stats["pair"]["remoteType"]) == ("relay", "relay")
        assert local_candidate_types(remote.pc) == {"relay"}
        assert {(p.local_type, p.remote_type) for p in selected_pairs(remote.pc)} == {
            ("relay", "relay")
        }
