"""Two and four Python peers over the real server and real aiortc, on loopback."""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc")

import asyncio
from typing import Any

from aiortc import AudioStreamTrack, VideoStreamTrack
from tests.peer.helpers import Expect, join_all, remote_of, wait_state
from tests.support.waiting import until

from metered_realtime.events import (
    Data,
    DataChannelOpened,
    DCMessage,
    DCOpen,
    PeerJoined,
    PeerLeft,
    StreamAdded,
    Track,
)
from metered_realtime.media import MediaStream
from metered_realtime.peer import DataChannel


async def test_two_peers_media_with_metadata_and_data(make_peer: Any) -> None:
    a, b = make_peer(), make_peer()
    await a.join("room-media")
    a_sees_b = Expect(a, PeerJoined)
    await b.join("room-media")
    await a_sees_b.get()
    ra, rb = remote_of(a, b), remote_of(b, a)
    assert ra.polite != rb.polite

    # Media: an audio and a video track in one stream, with metadata.
    stream = MediaStream([AudioStreamTrack(), VideoStreamTrack()])
    tracks_at_b = Expect(rb, Track)
    added_at_b = Expect(rb, StreamAdded)
    a.add_stream(stream, {"role": "camera", "label": "cam"})
    added = await added_at_b.get(20)
    assert added.stream.id == stream.id
    assert added.metadata == {"role": "camera", "label": "cam"}
    ev = await tracks_at_b.get()
    assert ev.streams and ev.streams[0].id == stream.id
    assert ev.metadata == {"role": "camera", "label": "cam"}
    await wait_state(ra, "connected")
    await wait_state(rb, "connected")
    # Both tracks of the stream arrive (the set is read after waiting, not before).
    await until(lambda: len(added.stream.get_tracks()) >= 2, timeout=10)
    assert sorted(t.kind for t in added.stream.get_tracks()) == ["audio", "video"]
    frame = await asyncio.wait_for(added.stream.get_video_tracks()[0].recv(), 10)
    assert frame.width > 0

    # Data both ways over send_to.
    got_b = Expect(b, Data)
    got_a = Expect(a, Data)
    await a.send_to(b.peer_id, {"hello": "b"})
    await rb.send({"hello": "a"})
    eb, ea = await got_b.get(), await got_a.get()
    assert (eb.data, eb.kind, eb.sender_peer_id) == ({"hello": "b"}, "direct", a.peer_id)
    assert (ea.data, ea.kind) == ({"hello": "a"}, "direct")

    # A data channel, str and bytes both ways.
    opened_at_b = Expect(rb, DataChannelOpened)
    raw = ra.create_data_channel("chat")
    dc_a = DataChannel(raw)
    opened = Expect(dc_a, DCOpen)
    remote_raw = (await opened_at_b.get()).channel
    dc_b = DataChannel(remote_raw)
    if raw.readyState != "open":
        await opened.get()
    msg_b = Expect(dc_b, DCMessage)
    await dc_a.send("text from a")
    assert (await msg_b.get()).data == "text from a"
    msg_b = Expect(dc_b, DCMessage)
    await dc_a.send(b"\x00\x01bytes")
    assert (await msg_b.get()).data == b"\x00\x01bytes"
    msg_a = Expect(dc_a, DCMessage)
    await dc_b.send(b"back")
    assert (await msg_a.get()).data == b"back"
    dc_a.close()
    dc_b.close()


async def test_four_peers_all_connect_and_leave(make_peer: Any) -> None:
    peers = [make_peer() for _ in range(4)]
    await join_all(peers, "room-four")
    await until(lambda: all(len(p.remote_peers) == 3 for p in peers), 10)
    for p in peers:
        p.add_track(AudioStreamTrack())
    await asyncio.wait_for(
        asyncio.gather(*(wait_state(r, "connected") for p in peers for r in p.remote_peers)), 25
    )
    leaving = peers[3]
    left = [Expect(p, PeerLeft, lambda e: e.peer.id == leaving.peer_id) for p in peers[:3]]
    await leaving.close()
    for exp in left:
        ev = await exp.get()
        assert ev.peer.state == "closed"
    for p in peers[:3]:
        assert len(p.remote_peers) == 2


async def test_data_channel_first_on_a_fresh_connection(make_peer: Any) -> None:
    a, b = make_peer(), make_peer()
    await a.join("room-dc")
    await b.join("room-dc")
    await until(lambda: bool(a.remote_peers and b.remote_peers), 10)
    ra, rb = remote_of(a, b), remote_of(b, a)
    # The polite side creates it: its first offer carries the SCTP section.
    creator, other = (ra, rb) if ra.polite else (rb, ra)
    opened = Expect(other, DataChannelOpened)
    dc = DataChannel(creator.create_data_channel("first"))
    is_open = Expect(dc, DCOpen)
    remote_dc = DataChannel((await opened.get(20)).channel)
    if dc.ready_state != "open":
        await is_open.get()
    got = Expect(remote_dc, DCMessage)
    await dc.send("hi")
    assert (await got.get()).data == "hi"
    await wait_state(creator, "connected")
