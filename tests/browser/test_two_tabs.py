"""Two Chromium tabs, each a JS MeteredPeer, over our server: signalling data both ways, then a
real WebRTC connection (a data channel) between the tabs, on loopback."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.browser import Browser, all_loopback

pytestmark = pytest.mark.timeout(60)


async def test_two_tabs_data_and_webrtc(server: Any, browser: Browser) -> None:
    url, key = server.url, server.api_key
    a = await browser.open("a")
    b = await browser.open("b")
    a_id = await a.join(url, key, "tabs")
    b_id = await b.join(url, key, "tabs")
    assert (await a.next_event("peer-joined"))["id"] == b_id
    assert (await b.next_event("peer-joined"))["id"] == a_id

    # Broadcast and direct both ways through the server.
    await a.call("send", {"hello": "everyone"})
    got = await b.next_event("data")
    assert got == {
        "senderPeerId": a_id,
        "data": {"hello": "everyone"},
        "kind": "broadcast",
        "senderMetadata": None,
    }
    await b.call("sendTo", a_id, {"hi": "a", "n": [1, 2, 3]})
    got = await a.next_event("data")
    assert (got["senderPeerId"], got["data"], got["kind"]) == (
        b_id,
        {"hi": "a", "n": [1, 2, 3]},
        "direct",
    )

    # WebRTC: a data channel from a triggers negotiation; both reach "connected".
    await a.call("openChannel", b_id, "chat")
    await a.wait_remote_state(b_id, "connected")
    await b.wait_remote_state(a_id, "connected")
    assert (await b.next_event("data-channel"))["label"] == "chat"
    await a.next_event("dc-open", lambda p: p["label"] == "chat")
    await b.next_event("dc-open", lambda p: p["label"] == "chat")
    await a.call("dcSend", b_id, "chat", "over webrtc")
    assert (await b.next_event("dc-message"))["data"] == "over webrtc"
    await b.call("dcSend", a_id, "chat", "and back")
    assert (await a.next_event("dc-message"))["data"] == "and back"

    # Everything stayed on loopback.
    for page, other in ((a, b_id), (b, a_id)):
        stats = await page.wait_stats(other, lambda s: s["pair"] is not None)
        assert all_loopback(stats, strict=False), stats
    assert (await a.call("filteredCandidates"))["keptOutbound"] >= 1
