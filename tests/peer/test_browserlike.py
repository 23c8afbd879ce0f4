"""A MeteredPeer against a browser-like remote (a plain aiortc connection the test drives).

Real server, real aiortc on loopback. The remote behaves as Chromium running the JS SDK does
where aiortc-to-MeteredPeer tests would not: its first offer carries media only (no SCTP
section), a data channel it opens later arrives in a re-offer that adds an ``application``
m-section, and it can send descriptions without candidates and trickle them afterwards.
"""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc")

import asyncio
from typing import Any

from aiortc import AudioStreamTrack
from tests.peer.helpers import Expect, wait_state
from tests.peer.rawpeer import RawPeer, split_candidates
from tests.support.waiting import until

from metered_realtime.events import DataChannelOpened, DCMessage, DCOpen, Track
from metered_realtime.peer import DataChannel, MeteredPeer, RemotePeer

pytestmark = pytest.mark.timeout(30)


async def _room(
    make_peer: Any, server: Any, channel: str
) -> tuple[MeteredPeer, RawPeer, RemotePeer]:
    py = make_peer()
    await py.join(channel)
    raw = RawPeer(server)
    await raw.join(channel, py.peer_id)
    await until(lambda: len(py.remote_peers) == 1, 10)
    return py, raw, py.remote_peers[0]


async def _frames(track: Any, count: int = 3, timeout: float = 10.0) -> None:
    async def recv() -> None:
        for _ in range(count):
            await track.recv()

    await asyncio.wait_for(recv(), timeout)


def test_split_candidates_makes_browser_shaped_inits() -> None:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=audio 5000 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 127.0.0.1\r\na=mid:0\r\n"
        "a=ice-ufrag:abcd\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"
        "a=end-of-candidates\r\n"
    )
    bare, cands = split_candidates(sdp)
    assert "a=candidate" not in bare and "end-of-candidates" not in bare
    assert "m=audio 9 " in bare and "c=IN IP4 0.0.0.0" in bare
    assert cands == [
        {
            "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"
            " generation 0 ufrag abcd network-id 1",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "usernameFragment": "abcd",
        }
    ]


async def test_data_channel_in_a_later_offer_from_a_browser_like_peer(
    make_peer: Any, server: Any
) -> None:
    _py, raw, remote = await _room(make_peer, server, "late-dc")
    try:
        got_track = Expect(remote, Track)
        raw.pc.addTrack(AudioStreamTrack())
        await raw.offer()
        assert "m=application" not in raw.pc.localDescription.sdp  # media only, like Chromium
        track = (await got_track.get()).track
        await wait_state(remote, "connected")
        await _frames(track)

        # The browser opens its first data channel: a re-offer adding an application section.
        opened = Expect(remote, DataChannelOpened)
        dc = raw.pc.createDataChannel("late")
        is_open = asyncio.Event()
        dc.on("open", is_open.set)
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        dc.on("message", inbox.put_nowait)
        answer = await raw.offer()
        assert "m=application" in raw.pc.localDescription.sdp
        assert "m=application" in answer
        theirs = DataChannel((await opened.get(15)).channel)
        if theirs.ready_state != "open":
            await Expect(theirs, DCOpen).get(10)
        await asyncio.wait_for(is_open.wait(), 10)

        got = Expect(theirs, DCMessage)
        dc.send("text from the browser")
        assert (await got.get(10)).data == "text from the browser"
        got = Expect(theirs, DCMessage)
        dc.send(b"\x00\xffbytes from the browser")
        assert (await got.get(10)).data == b"\x00\xffbytes from the browser"
        await theirs.send("text from python")
        assert await asyncio.wait_for(inbox.get(), 10) == "text from python"
        await theirs.send(b"\x01bytes from python")
        assert await asyncio.wait_for(inbox.get(), 10) == b"\x01bytes from python"

        # Media from the browser is still arriving on the connection that now has SCTP.
        await wait_state(remote, "connected")
        current = track
        if remote.pc.getReceivers()[0].track is not track:
            current = remote.pc.getReceivers()[0].track
        await _frames(current)
    finally:
        await raw.close()


async def test_trickled_browser_candidates_on_an_offer(make_peer: Any, server: Any) -> None:
    _py, raw, remote = await _room(make_peer, server, "trickle-offer")
    try:
        got_track = Expect(remote, Track)
        raw.pc.addTrack(AudioStreamTrack())
        await raw.offer(trickle=True)
        sent = raw.sent
        assert "a=candidate" not in sent[0]["description"]["sdp"]
        trickled = [m["candidate"] for m in sent[1:] if m["candidate"] is not None]
        assert trickled and all(c["candidate"].startswith("candidate:") for c in trickled)
        track = (await got_track.get()).track
        await wait_state(remote, "connected")
        await _frames(track)
    finally:
        await raw.close()


async def test_trickled_browser_candidates_on_an_answer(make_peer: Any, server: Any) -> None:
    py, raw, remote = await _room(make_peer, server, "trickle-answer")
    try:
        inbound: asyncio.Queue[Any] = asyncio.Queue()
        raw.pc.on("track", inbound.put_nowait)
        py.add_track(AudioStreamTrack())
        await raw.answer(trickle=True)
        assert "a=candidate" not in raw.sent[0]["description"]["sdp"]
        await wait_state(remote, "connected")
        track = await asyncio.wait_for(inbound.get(), 10)
        await _frames(track)
    finally:
        await raw.close()


def _msids(sdp: str) -> dict[str, tuple[str, str]]:
    from metered_realtime.peer import sdp as sdp_util

    return sdp_util.msid_by_mid(sdp)


async def test_python_media_gets_its_own_m_section_not_the_browsers(
    make_peer: Any, server: Any
) -> None:
    """Metadata is matched by the msid track id, and a browser's receiver track for an
    m-section it created keeps the id it generated: our media must never ride on the
    remote's m-sections, neither in our answer nor in a later offer of ours."""
    from metered_realtime.media import MediaStream

    # Python must be polite, so the browser-like remote's offer comes first and Python
    # answers it with its media already attached (bounded tries with fresh pairs: ids are
    # random, and a Python id that sorts high would almost never be polite).
    raw: RawPeer | None = None
    for attempt in range(12):
        py = make_peer()
        await py.join(f"own-sections-{attempt}")
        mine = AudioStreamTrack()
        py.add_stream(MediaStream([mine]), {"role": "bot"})
        candidate = RawPeer(server)
        await candidate.join(f"own-sections-{attempt}", py.peer_id)
        await until(lambda c=candidate, p=py: any(r.id == c.peer_id for r in p.remote_peers), 10)
        remote = next(r for r in py.remote_peers if r.id == candidate.peer_id)
        if remote.polite:
            raw = candidate
            break
        await candidate.close()
        await py.close()
    if raw is None:
        pytest.skip("no polite pairing in 12 tries")
    try:
        inbound: asyncio.Queue[Any] = asyncio.Queue()
        raw.pc.on("track", inbound.put_nowait)
        raw.pc.addTrack(AudioStreamTrack())
        answer = await raw.offer()
        their_mids = set(_msids(raw.pc.localDescription.sdp))
        assert mine.id not in {t for _, t in _msids(answer).values()}
        offer = await raw.answer()  # the follow-up offer carries our media
        ours = {mid: ids for mid, ids in _msids(offer).items() if ids[1] == mine.id}
        assert len(ours) == 1
        assert not set(ours) & their_mids, "our track rides on the remote's m-section"
        track = await asyncio.wait_for(inbound.get(), 10)
        assert track.id == mine.id
        await wait_state(remote, "connected")
        await _frames(track)

        # Media added after the remote's m-sections exist gets its own m-section too.
        later = AudioStreamTrack()
        py.add_track(later)
        offer = await raw.answer()
        later_mids = [mid for mid, ids in _msids(offer).items() if ids[1] == later.id]
        assert len(later_mids) == 1 and later_mids[0] not in their_mids
    finally:
        await raw.close()


async def test_browser_track_on_our_m_section_gets_its_metadata(
    make_peer: Any, server: Any
) -> None:
    """Chromium attaching its track to a transceiver our offer created announces a generated
    sender id in msid, while the JS SDK's metadata message names the track id (no kind, no
    stream id): the metadata is matched as the one no m-section claims."""
    import uuid

    from metered_realtime.media import MediaStream

    py, raw, remote = await _room(make_peer, server, "reuse-meta")
    try:
        py.add_stream(MediaStream([AudioStreamTrack()]), {"role": "bot"})
        await raw.answer()  # our offer creates the remote's transceiver
        await wait_state(remote, "connected")

        theirs = AudioStreamTrack()
        sender = raw.pc.addTrack(theirs)  # reuses the transceiver our offer created
        sender._track_id = str(uuid.uuid4())  # as Chromium: msid names a sender id
        sender._stream_id = "browser-stream"
        meta = {"trackId": theirs.id, "metadata": {"role": "camera"}}
        await raw.client.send(py.peer_id, {"__meteredTrackMeta": meta})
        got = Expect(remote, Track, lambda e: [s.id for s in e.streams] == ["browser-stream"])
        await raw.offer()
        assert theirs.id not in {t for _, t in _msids(raw.pc.localDescription.sdp).values()}
        ev = await got.get(15)
        assert ev.metadata == {"role": "camera"}

        # Ambiguous orphans (two unclaimed JS-style messages that disagree) match nothing,
        # and messages that carry a stream id (Python's) never count as orphans.
        cache = remote._track_meta
        cache.store("js-other", {"role": "screen"}, None, None)
        assert cache.lookup("unknown", ev.track.id, "audio", "browser-stream") is None
        cache.store("js-other", None, None, None)
        cache.store("py-track", {"role": "screen"}, "audio", "s")
        assert cache.lookup("unknown", ev.track.id, "audio", "browser-stream") == {"role": "camera"}
    finally:
        await raw.close()
