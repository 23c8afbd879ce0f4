"""MeteredPeer and DataChannel rules against the real server."""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc")

from typing import Any

from tests.peer.helpers import Expect, remote_of
from tests.support.waiting import until

from metered_realtime.errors import (
    DataChannelOverflowError,
    MeteredPeerSendError,
    MeteredPeerStateError,
    MeteredRealtimeError,
)
from metered_realtime.events import DataChannelOpened, DCClose, DCOpen, Joined, Left
from metered_realtime.peer import DataChannel, MeteredPeer


async def test_join_rules_and_joined_context(server: Any) -> None:
    peer = MeteredPeer(api_key=server.api_key, url=server.url)
    with pytest.raises(MeteredPeerSendError) as exc:
        await peer.join("_Metered/x")
    assert exc.value.code == "reserved_channel" and peer.state == "idle"
    with pytest.raises(MeteredPeerSendError):
        await peer.send({"x": 1})
    joined = Expect(peer, Joined)
    left = Expect(peer, Left)
    async with peer.joined("rules-room") as p:
        assert p is peer and peer.state == "joined" and peer.channel == "rules-room"
        assert (await joined.get()).channel == "rules-room"
        with pytest.raises(MeteredPeerStateError) as st:
            await peer.join("other")
        assert st.value.code == "invalid_state" and st.value.current_state == "joined"
    assert peer.state == "closed" and peer.channel is None
    assert (await left.get()).channel == "rules-room"
    with pytest.raises(MeteredPeerStateError):
        peer.add_track(object())


async def test_idle_close_and_context_manager(server: Any) -> None:
    async with MeteredPeer(api_key=server.api_key, url=server.url) as peer:
        assert peer.state == "idle"
    assert peer.state == "closed"


async def test_datachannel_limits(make_peer: Any) -> None:
    a, b = make_peer(), make_peer()
    await a.join("dc-rules")
    await b.join("dc-rules")
    await until(lambda: bool(a.remote_peers and b.remote_peers), 10)
    ra, rb = remote_of(a, b), remote_of(b, a)
    opened = Expect(rb, DataChannelOpened)
    dc = DataChannel(ra.create_data_channel("limits"), max_buffered_amount=1000, max_queued_sends=1)
    assert dc.label == "limits"
    with pytest.raises(MeteredRealtimeError):
        await dc.send("not open yet")
    is_open = Expect(dc, DCOpen)
    remote = DataChannel((await opened.get(20)).channel)
    if dc.ready_state != "open":
        await is_open.get()
    with pytest.raises(MeteredRealtimeError):
        await dc.send(b"x" * 1001)
    with pytest.raises(TypeError):
        await dc.send(123)  # type: ignore[arg-type]
    await dc.send("é" * 400)  # 800 bytes fits
    dc._waiting = 1  # one send already waiting: the next one overflows
    with pytest.raises(DataChannelOverflowError) as over:
        await dc.send("x")
    assert (over.value.queued, over.value.cap) == (1, 1)
    dc._waiting = 0
    closed = Expect(remote, DCClose)
    dc.close()
    dc.close()  # idempotent
    assert dc.ready_state == "closed"
    with pytest.raises(MeteredRealtimeError):
        await dc.send("after close")
    await closed.get(10)
