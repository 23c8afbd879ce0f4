"""Issue #5, tests 2 and 3: media between Chromium (JS MeteredPeer) and a Python MeteredPeer.

2. The browser sends its (fake) camera and microphone with metadata {role: "camera"}; Python
   gets a Track of each kind and StreamAdded with that metadata, and decodes real frames.
3. Python sends an audio and a video track with metadata; the page gets stream-added with the
   metadata, and the tracks play: the <video> has videoWidth > 0 and advancing time, and
   WebAudio measures the tone's level.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from tests.support.browser import Browser, Watch, all_loopback

from metered_realtime.events import StreamAdded, Track
from metered_realtime.media import MediaStream
from metered_realtime.peer import sdp as sdp_util

pytestmark = pytest.mark.timeout(90)


async def _decode(track: Any, count: int, timeout: float = 15.0) -> list[Any]:
    async def take() -> list[Any]:
        return [await track.recv() for _ in range(count)]

    return await asyncio.wait_for(take(), timeout)


async def test_browser_camera_to_python(server: Any, browser: Browser, make_peer: Any) -> None:
    py = make_peer()
    watch = Watch(py)
    await py.join("room-cam")
    page = await browser.open("cam")
    page_id = await page.join(server.url, server.api_key, "room-cam")
    await watch.wait_remote(page_id)
    rec = watch.remote(page_id)

    sent = await page.call("startMedia", {"metadata": {"role": "camera"}})
    kinds = {t["kind"]: t["id"] for t in sent["tracks"]}
    assert set(kinds) == {"audio", "video"}

    added = await rec.next(StreamAdded, timeout=20)
    assert added.stream.id == sent["streamId"]
    assert added.metadata == {"role": "camera"}
    tracks = [await rec.next(Track, timeout=10) for _ in range(2)]
    by_kind = {ev.track.kind: ev for ev in tracks}
    assert set(by_kind) == {"audio", "video"}
    for ev in tracks:
        assert ev.metadata == {"role": "camera"}
        assert [s.id for s in ev.streams] == [sent["streamId"]]
    await watch.wait_state(page_id, "connected")
    await page.wait_remote_state(py.peer_id, "connected")

    # Real frames: Chromium's fake camera is a moving test pattern, its fake microphone beeps.
    frames = await _decode(by_kind["video"].track, 10)
    assert all(f.width > 0 and f.height > 0 for f in frames)
    lumas = [f.to_ndarray(format="gray") for f in frames]
    assert max(float(y.std()) for y in lumas) > 1.0, "decoded video is a flat picture"
    assert any(not np.array_equal(lumas[0], y) for y in lumas[1:]), "video does not change"
    audio = await _decode(by_kind["audio"].track, 150)  # about 3 s of 20 ms frames
    assert all(f.sample_rate == 48000 for f in audio)
    peak = max(int(np.abs(f.to_ndarray()).max()) for f in audio)
    assert peak > 1000, f"decoded audio is silent (peak {peak})"

    stats = await page.wait_stats(py.peer_id, lambda s: "video" in s["outbound"])
    assert all_loopback(stats), stats


async def test_python_media_plays_in_browser(server: Any, browser: Browser, make_peer: Any) -> None:
    from tests.browser.tracks import PatternTrack, ToneTrack

    py = make_peer()
    watch = Watch(py)
    await py.join("room-play")
    page = await browser.open("viewer")
    page_id = await page.join(server.url, server.api_key, "room-play")
    await watch.wait_remote(page_id)

    stream = MediaStream([ToneTrack(freq=440.0, level=0.6), PatternTrack()])
    py.add_stream(stream, {"role": "bot", "label": "tone and bars"})

    added = await page.next_event("stream-added", timeout=20)
    assert added["peer"] == py.peer_id
    assert added["streamId"] == stream.id
    assert added["metadata"] == {"role": "bot", "label": "tone and bars"}
    tracks = [await page.next_event("track") for _ in range(2)]
    assert {t["kind"] for t in tracks} == {"audio", "video"}
    for t in tracks:
        assert t["metadata"] == {"role": "bot", "label": "tone and bars"}
        assert t["streamIds"] == [stream.id]
    ids = {t.kind: t.id for t in stream.get_tracks()}
    assert {t["kind"]: t["trackId"] for t in tracks} == ids
    await page.wait_remote_state(py.peer_id, "connected")

    info = await page.wait_video(py.peer_id, stream.id)
    assert (info["videoWidth"], info["videoHeight"]) == (320, 240)
    level = await page.call("audioLevel", py.peer_id, stream.id, 800)
    assert level["rms"] > 0.05, level

    stats = await page.wait_stats(
        py.peer_id,
        lambda s: (
            s["inbound"].get("video", {}).get("framesDecoded", 0) > 10
            and s["inbound"].get("audio", {}).get("packetsReceived", 0) > 10
        ),
    )
    assert all_loopback(stats), stats


async def test_metadata_when_python_answers_with_media(
    server: Any, browser: Browser, make_peer: Any
) -> None:
    from tests.browser.tracks import PatternTrack, ToneTrack

    # The Python peer must be the polite one (it then answers the browser's first offer with
    # its own media attached); peer ids are random, so try fresh pairs (bounded). A fresh
    # Python peer each time too: one whose id sorts high would almost never be polite.
    for attempt in range(10):
        py = make_peer()
        watch = Watch(py)
        await py.join(f"room-answer-{attempt}")
        stream = MediaStream([ToneTrack(), PatternTrack()])
        py.add_stream(stream, {"role": "bot"})
        page = await browser.open(f"answer-{attempt}")
        page_id = await page.join(server.url, server.api_key, f"room-answer-{attempt}")
        remote = await watch.wait_remote(page_id)
        if remote.polite:
            break
        await page.call("close")
        await py.close()
    else:
        pytest.skip("no polite pairing in 10 tries")
    sent = await page.call("startMedia", {"metadata": {"role": "camera"}})
    added = await page.next_event("stream-added", lambda p: p["streamId"] == stream.id, timeout=20)
    await page.wait_video(py.peer_id, stream.id)
    assert added["metadata"] == {"role": "bot"}
    tracks = [
        await page.next_event("track", lambda p: p["streamIds"] == [stream.id]) for _ in range(2)
    ]
    assert all(t["metadata"] == {"role": "bot"} for t in tracks)
    # And the other way: the browser's media, offered first, reaches Python with its metadata.
    theirs = await watch.remote(page_id).next(
        StreamAdded, lambda e: e.stream.id == sent["streamId"], timeout=20
    )
    assert theirs.metadata == {"role": "camera"}


async def test_metadata_when_browser_sends_on_python_transceivers(
    server: Any, browser: Browser, make_peer: Any
) -> None:
    """Python offers first; the browser's camera then reuses the transceivers that offer made.

    Chromium's msid for a reused transceiver names a sender id it generated, not the
    MediaStreamTrack id the JS SDK keys its metadata message by (and that message has no
    kind or stream id), so the Python side matches it as the one unclaimed metadata.
    """
    from tests.browser.tracks import PatternTrack, ToneTrack

    py = make_peer()
    watch = Watch(py)
    await py.join("room-reuse")
    page = await browser.open("reuse")
    page_id = await page.join(server.url, server.api_key, "room-reuse")
    remote = await watch.wait_remote(page_id)
    stream = MediaStream([ToneTrack(), PatternTrack()])
    py.add_stream(stream, {"role": "bot"})
    mine = await page.next_event("stream-added", lambda p: p["streamId"] == stream.id, timeout=20)
    assert mine["metadata"] == {"role": "bot"}
    await page.wait_remote_state(py.peer_id, "connected")

    sent = await page.call("startMedia", {"metadata": {"role": "camera"}})
    rec = watch.remote(page_id)
    added = await rec.next(StreamAdded, lambda e: e.stream.id == sent["streamId"], timeout=20)
    tracks = [
        await rec.next(Track, lambda e: [s.id for s in e.streams] == [sent["streamId"]])
        for _ in range(2)
    ]
    # The scenario under test: the browser's media rides on m-sections of our offer, and
    # their msid does not name the browser's track ids.
    sections = sdp_util.parse_sections(remote.pc.remoteDescription.sdp)
    ours = {s.mid for s in sdp_util.parse_sections(remote.pc.localDescription.sdp)}
    theirs = [s for s in sections if s.msid and s.msid[0][0] == sent["streamId"]]
    assert theirs and all(s.mid in ours for s in theirs), "browser made its own m-sections"
    assert not {s.msid[0][1] for s in theirs} & {t["id"] for t in sent["tracks"]}
    assert added.metadata == {"role": "camera"}
    assert {ev.track.kind for ev in tracks} == {"audio", "video"}
    assert all(ev.metadata == {"role": "camera"} for ev in tracks)
    video = next(ev.track for ev in tracks if ev.track.kind == "video")
    frames = await _decode(video, 3)
    assert all(f.width > 0 for f in frames)
