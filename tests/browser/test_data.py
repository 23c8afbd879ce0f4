"""Issue #5, test 1: Chromium (JS MeteredPeer) and a Python MeteredPeer join one room, see each
other, and exchange broadcast and direct data both ways."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.browser import Browser, Watch

from metered_realtime.events import Data

pytestmark = pytest.mark.timeout(60)


async def test_browser_and_python_exchange_data(
    server: Any, browser: Browser, make_peer: Any
) -> None:
    py = make_peer()
    watch = Watch(py)
    await py.join("room-data")
    page = await browser.open("tab")
    page_id = await page.join(server.url, server.api_key, "room-data")

    # Each side sees the other join.
    remote = await watch.wait_remote(page_id)
    assert remote.id == page_id
    seen = await page.next_event("peer-joined")
    assert seen["id"] == py.peer_id
    assert remote.polite == (py.peer_id < page_id)
    assert seen["polite"] == (page_id < py.peer_id)

    # Python -> browser: broadcast, then direct (MeteredPeer.send_to and RemotePeer.send).
    await py.send({"kind": "hello", "n": 1, "text": "héllo ✓"})
    got = await page.next_event("data")
    assert got["kind"] == "broadcast"
    assert got["senderPeerId"] == py.peer_id
    assert got["data"] == {"kind": "hello", "n": 1, "text": "héllo ✓"}
    await py.send_to(page_id, ["direct", 2, None, True])
    got = await page.next_event("data")
    assert (got["kind"], got["senderPeerId"], got["data"]) == (
        "direct",
        py.peer_id,
        ["direct", 2, None, True],
    )
    await remote.send("plain string")
    assert (await page.next_event("data"))["data"] == "plain string"

    # Browser -> Python: broadcast, sendTo, RemotePeer.send.
    await page.call("send", {"from": "browser", "nested": {"a": [1.5, "x"]}})
    ev = await watch.events.next(Data)
    assert (ev.kind, ev.sender_peer_id) == ("broadcast", page_id)
    assert ev.data == {"from": "browser", "nested": {"a": [1.5, "x"]}}
    await page.call("sendTo", py.peer_id, {"to": "python"})
    ev = await watch.events.next(Data)
    assert (ev.kind, ev.sender_peer_id, ev.data) == ("direct", page_id, {"to": "python"})
    await page.call("remoteSend", py.peer_id, 42)
    ev = await watch.events.next(Data)
    assert (ev.kind, ev.data) == ("direct", 42)

    # Nothing was negotiated: data-only peers stay idle on both ends.
    assert remote.state == "idle"
    state = await page.call("state")
    assert [r["state"] for r in state["remotes"]] == ["idle"]
    assert not page.events("negotiation-error")
