"""Glare, replace_track, signalling cut, garbage SDP, killed connection: real parts only."""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc")

import asyncio
import fractions
from collections.abc import Awaitable, Callable
from typing import Any

import av
from aiortc import AudioStreamTrack, VideoStreamTrack
from tests.peer.helpers import Expect, latest_delivers, remote_of, wait_state
from tests.support.faultproxy import FaultProxy
from tests.support.waiting import until

from metered_realtime.errors import MeteredRealtimeError
from metered_realtime.events import (
    ConnectionReset,
    NegotiationError,
    PeerJoined,
    PeerLeft,
    StateChange,
    Track,
)
from metered_realtime.peer import MeteredPeer, RemotePeer


class SizedVideo(VideoStreamTrack):
    """A generated video track whose frames have a recognisable size."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.size = (width, height)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(width=self.size[0], height=self.size[1], format="yuv420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts = pts
        frame.time_base = fractions.Fraction(time_base.numerator, time_base.denominator)
        return frame


async def pair(make_peer: Any, channel: str, **kw: Any) -> tuple[MeteredPeer, MeteredPeer]:
    a, b = make_peer(**kw), make_peer()
    await a.join(channel)
    await b.join(channel)
    await until(lambda: bool(a.remote_peers and b.remote_peers), 10)
    return a, b


async def frame_of_width(track: Any, width: int, timeout: float = 10.0) -> None:
    async def scan() -> None:
        for _ in range(1000):
            frame = await track.recv()
            if frame.width == width:
                return
        raise AssertionError(f"no frame of width {width}")

    await asyncio.wait_for(scan(), timeout)


async def test_glare_both_add_tracks_at_once_converges(make_peer: Any) -> None:
    a, b = await pair(make_peer, "glare")
    ra, rb = remote_of(a, b), remote_of(b, a)
    # First get a connection, so both sides offer at once afterwards (a real collision).
    a.add_track(AudioStreamTrack())
    await wait_state(ra, "connected")
    await wait_state(rb, "connected")
    va, vb = SizedVideo(320, 240), SizedVideo(160, 120)
    at_a: list[Any] = []
    at_b: list[Any] = []
    ra.on(Track, lambda e: at_a.append(e.track) if e.track.kind == "video" else None)
    rb.on(Track, lambda e: at_b.append(e.track) if e.track.kind == "video" else None)
    a.add_track(va)
    b.add_track(vb)
    # Collisions rebuild connections, so earlier inbound tracks may die: converge on the
    # latest ones, within a bounded number of tries.
    await latest_delivers(at_b, of_width(320))
    await latest_delivers(at_a, of_width(160))
    await wait_state(ra, "connected")
    await wait_state(rb, "connected")
    assert ra._neg.signaling == "stable" and rb._neg.signaling == "stable"


def of_width(width: int) -> Callable[[Any], Awaitable[None]]:
    return lambda track: frame_of_width(track, width, timeout=3)


async def test_replace_track_swaps_without_renegotiation(make_peer: Any) -> None:
    a, b = await pair(make_peer, "replace")
    ra, rb = remote_of(a, b), remote_of(b, a)
    first = SizedVideo(320, 240)
    got = Expect(rb, Track)
    a.add_track(first, metadata={"role": "camera"})
    inbound = (await got.get()).track
    await wait_state(ra, "connected")
    await frame_of_width(inbound, 320)
    pc_a, pc_b = ra.pc, rb.pc
    remote_sdp = pc_b.remoteDescription.sdp
    second = SizedVideo(160, 120)
    await a.replace_track(first, second)
    await frame_of_width(inbound, 160)
    # Same connections, same descriptions: nothing was renegotiated.
    assert ra.pc is pc_a and rb.pc is pc_b
    assert pc_b.remoteDescription.sdp == remote_sdp
    assert a.get_track_metadata(second) == {"role": "camera"}
    assert a.get_track_metadata(first) is None
    await until(lambda: rb._track_meta.get(second.id) == {"role": "camera"}, 5)


async def test_signalling_cut_keeps_remote_identity_and_media(make_peer: Any, server: Any) -> None:
    async with FaultProxy("127.0.0.1", server.server.port) as proxy:
        a, b = await pair(make_peer, "cut", url=proxy.url)
        ra, rb = remote_of(a, b), remote_of(b, a)
        a.add_track(SizedVideo(320, 240), metadata={"role": "camera"})
        b.add_track(SizedVideo(160, 120))
        await wait_state(ra, "connected")
        await wait_state(rb, "connected")
        old_a_id, old_pc = a.peer_id, ra.pc

        reset = Expect(ra, ConnectionReset)
        b_lost_a = Expect(b, PeerLeft, lambda e: e.peer.id == old_a_id)
        b_sees_new_a = Expect(b, PeerJoined)
        a_back = Expect(a, StateChange, lambda e: e.to == "joined")
        video_at_a = Expect(ra, Track, lambda e: e.track.kind == "video")
        assert proxy.cut() == 1
        await a_back.get(20)
        ev = await reset.get(10)
        assert ev.peer is ra
        await b_lost_a.get(10)
        new_rb = (await b_sees_new_a.get(10)).peer
        assert new_rb.id == a.peer_id != old_a_id
        # Survivor: the very same RemotePeer object, on a fresh connection.
        assert remote_of(a, b) is ra and ra.pc is not old_pc
        video_at_new_b = Expect(new_rb, Track, lambda e: e.track.kind == "video")
        inbound_at_a = (await video_at_a.get(20)).track
        await wait_state(ra, "connected", 20)
        await frame_of_width(inbound_at_a, 160)
        ev_b = await video_at_new_b.get(20)
        assert ev_b.metadata == {"role": "camera"}
        await frame_of_width(ev_b.track, 320)


async def test_garbage_sdp_surfaces_negotiation_error(make_peer: Any) -> None:
    a, b = await pair(make_peer, "garbage")
    ra = remote_of(a, b)
    for text in ("this is not sdp", "v=0\r\nm=audio nonsense\r\na=mid:x\r\n"):
        err = Expect(ra, NegotiationError)
        await b._client.send(
            a.peer_id, {"type": "rtc-description", "description": {"type": "offer", "sdp": text}}
        )
        ev = await err.get(10)
        assert isinstance(ev.err, Exception)
    # The peer is still usable afterwards.
    got = Expect(remote_of(b, a), Track)
    a.add_track(AudioStreamTrack())
    await got.get(15)
    await wait_state(ra, "connected")


async def test_killed_connection_triggers_recovery_ladder(make_peer: Any) -> None:
    a, b = await pair(make_peer, "kill")
    ra, rb = remote_of(a, b), remote_of(b, a)
    a.add_track(SizedVideo(320, 240))
    got = Expect(rb, Track)
    await wait_state(ra, "connected")
    await wait_state(rb, "connected")
    await got.get()
    old_a, old_b = ra.pc, rb.pc
    went_down = Expect(ra, StateChange, lambda e: e.to == "reconnecting")
    came_back = Expect(ra, StateChange, lambda e: e.from_ == "reconnecting" and e.to == "connected")
    again: list[Any] = []
    rb.on(Track, lambda e: again.append(e.track))
    await old_b.close()  # the remote side's transport dies under the SDK
    await went_down.get(10)
    await came_back.get(25)
    assert ra.pc is not old_a and rb.pc is not old_b
    assert ra._neg.generation >= 1
    await latest_delivers(again, of_width(320))


async def test_send_rules_and_closed_remote(make_peer: Any) -> None:
    a, b = await pair(make_peer, "rules")
    rb = remote_of(b, a)
    from metered_realtime.errors import MeteredPeerOversizedError, MeteredPeerSendError

    try:
        await a.send_to(a.peer_id, {"x": 1})
    except MeteredPeerSendError as exc:
        assert exc.code == "self_send"
    else:
        raise AssertionError("self send accepted")
    big = "x" * (a._client.max_message_size + 1)
    try:
        await a.send(big)
    except MeteredPeerOversizedError as exc:
        assert exc.cap == a._client.max_message_size
    else:
        raise AssertionError("oversized accepted")
    left = Expect(b, PeerLeft)
    await a.close()
    ev = await left.get()
    assert isinstance(ev.peer, RemotePeer) and ev.peer is rb
    try:
        await rb.send("late")
    except MeteredRealtimeError as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("send on a removed peer accepted")
