"""Cross-SDK: the published JavaScript SDK (Node) and our Python SignallingClient talk
through our server: presence both ways, publish both ways, direct messages both ways."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.jsclient import MakeJS
from tests.support.waiting import event_matching, next_event

from metered_realtime import (
    Direct,
    Message,
    Presence,
    PresencePeer,
    SignallingClient,
    SubscribeOptions,
)

pytestmark = pytest.mark.timeout(30)
CHANNEL = "cross-sdk"


async def test_python_and_javascript_clients_exchange_everything(server: Any, js: MakeJS) -> None:
    token = server.mint(ttl=600, peer_metadata={"sdk": "python"})
    py = SignallingClient(token_provider=lambda: token, url=server.url)
    presence, messages, directs = py.events(Presence), py.events(Message), py.events(Direct)
    async with py:
        await py.subscribe(CHANNEL, SubscribeOptions(include_sender_metadata=True))
        assert (await next_event(presence)).joined == ()

        node = await js("node")
        connected = await node.connect(
            server.url, token=server.mint(ttl=600, peer_metadata={"sdk": "js"})
        )
        assert connected is not None
        js_id = connected["peerId"]
        await node.subscribe(CHANNEL, include_sender_metadata=True)

        # each sees the other's presence, with the token's peer metadata
        snap = await node.next_event("presence")
        assert snap["joined"] == [{"peerId": py.peer_id, "metadata": {"sdk": "python"}}]
        joined = await next_event(presence)
        assert joined.joined == (PresencePeer(js_id, {"sdk": "js"}),)

        # publish Python -> JS (non-ASCII, nested, null)
        data = {"text": "héllo ✓", "n": [1, 2.5, None, True]}
        await py.publish(CHANNEL, data)
        got = await node.next_event("message", lambda m: m["from"] == py.peer_id)
        assert got["data"] == data and got["channel"] == CHANNEL
        assert got.get("fromMetadata") == {"sdk": "python"}

        # publish JS -> Python
        await node.publish(CHANNEL, {"from": "js", "list": [1, "two"]})
        msg = await event_matching(messages, lambda m: m.sender_peer_id == js_id)
        assert msg.data == {"from": "js", "list": [1, "two"]}
        assert msg.sender_metadata == {"sdk": "js"}

        # direct both ways
        assert py.peer_id is not None
        await py.send(js_id, {"dm": "to js"})
        dm = await node.next_event("direct")
        assert (dm["from"], dm["data"]) == (py.peer_id, {"dm": "to js"})
        await node.send(py.peer_id, ["to", "python"])
        direct = await next_event(directs)
        assert (direct.sender_peer_id, direct.data) == (js_id, ["to", "python"])

        # JS leaves: Python sees it in presence
        await node.close()
        left = await event_matching(presence, lambda p: bool(p.left))
        assert [p.peer_id for p in left.left] == [js_id]
