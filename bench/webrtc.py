"""WebRTC benchmark: time to first media, join-to-connected, data-channel throughput.

Runs a real server on 127.0.0.1 and real aiortc peers in one process; ICE is kept on the
loopback interface. Prints ONE JSON line.

First media, for rooms of each size and for a sender that is polite towards every other
member (its peer id sorts first) and one that is impolite towards all (it sorts last):

* ``join_to_media``: the other members are in the room with nothing to send; the sender,
  its track attached, calls ``join()``; until every member has decoded a frame of it. (Every
  signalling connection is opened first, to learn the peer ids and pick the sender.)
* ``add_track_to_media``: everybody is in the room, idle; the sender calls ``add_track()``;
  until every member has decoded a frame of it.
* ``join_to_first_rtp`` and ``add_track_to_first_rtp``: the same runs, until every member has
  received the track's first RTP packet (media flowing). aiortc's receiver hands out a video
  frame only when the next frame's first packet arrives (one frame interval, 33 ms here, that
  a browser does not wait), and an audio frame after four packets (80 ms).

Each is run ``--runs`` times; median and worst are reported in milliseconds. Garbage left by
one run is collected before the next starts, and the longest collection pause that still
fell inside a run is reported (``gc_pause_ms_longest_in_runs``). The track is
aiortc's generated video (``--kind video``) or silent audio (``--kind audio``); aiortc's audio
receiver holds four packets (80 ms of audio) before it hands out the first frame.

    .venv/bin/python bench/webrtc.py [--sizes 2,8] [--runs 20] [--kind video|audio]
                                     [--megabytes 16] [--chunk 16384]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import AudioStreamTrack, RTCRtpReceiver, VideoStreamTrack

from metered_realtime.demo import embedded_server, restrict_ice_to_loopback
from metered_realtime.events import (
    DataChannelOpened,
    DCMessage,
    DCOpen,
    PeerJoined,
    StateChange,
    Track,
)
from metered_realtime.peer import DataChannel, MeteredPeer
from metered_realtime.signalling import SignallingClient

restrict_ice_to_loopback()


async def wait_connected(peer: MeteredPeer, expected: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remotes = peer.remote_peers
        if len(remotes) == expected and all(r.state == "connected" for r in remotes):
            return
        if loop.time() >= deadline:
            raise TimeoutError("peers did not all connect")
        pending = [r for r in remotes if r.state != "connected"]
        if pending:
            stream = pending[0].events(StateChange)
            try:
                if pending[0].state != "connected":
                    await asyncio.wait_for(stream.__anext__(), max(0.01, deadline - loop.time()))
            except (StopAsyncIteration, asyncio.TimeoutError):
                pass
            finally:
                stream.close()
        else:
            await asyncio.sleep(0.01)  # roster still filling in: cheap bounded poll


async def await_roster(peers: list[MeteredPeer], timeout: float = 30) -> None:
    """Until every peer knows every other one (bounded poll of in-memory state)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not all(len(p.remote_peers) == len(peers) - 1 for p in peers):
        if loop.time() >= deadline:
            raise TimeoutError("roster incomplete")
        await asyncio.sleep(0.005)


FIRST_RTP: dict[int, float] = {}
"""id(receiving track) -> perf_counter time its first RTP packet arrived."""


def record_first_rtp() -> None:
    """Note when each receiver's first RTP packet arrives (a bench-only wrap of aiortc's
    packet handler; nothing else is changed)."""
    handle = RTCRtpReceiver._handle_rtp_packet

    async def recording(self: RTCRtpReceiver, packet: Any, arrival_time_ms: int) -> None:
        FIRST_RTP.setdefault(id(self.track), time.perf_counter())
        await handle(self, packet, arrival_time_ms)

    RTCRtpReceiver._handle_rtp_packet = recording  # type: ignore[method-assign]


record_first_rtp()


def first_frames(receivers: list[MeteredPeer]) -> list[asyncio.Future[tuple[float, float]]]:
    """For each receiver: when (perf_counter) it decoded its first inbound frame, and when
    that track's first RTP packet arrived."""
    loop = asyncio.get_running_loop()
    done: list[asyncio.Future[tuple[float, float]]] = []
    for peer in receivers:
        fut: asyncio.Future[tuple[float, float]] = loop.create_future()
        done.append(fut)

        async def decode(track: Any, fut: asyncio.Future[tuple[float, float]] = fut) -> None:
            await track.recv()
            if not fut.done():
                fut.set_result((time.perf_counter(), FIRST_RTP[id(track)]))

        def on_track(ev: Track, fut: asyncio.Future[tuple[float, float]] = fut) -> None:
            if not fut.done():
                task = asyncio.ensure_future(decode(ev.track, fut))
                fut.add_done_callback(lambda _: task.cancel())

        def on_peer(ev: PeerJoined, on_track: Callable[[Track], None] = on_track) -> None:
            ev.peer.on(Track, on_track)

        peer.on(PeerJoined, on_peer)
        for remote in peer.remote_peers:
            remote.on(Track, on_track)
    return done


async def first_media(
    url: str, key: str, n: int, polite: bool, on_join: bool, room: str, kind: str
) -> tuple[float, float]:
    """Milliseconds from the sender's join() or add_track() until all n-1 members decoded a
    frame, and until all of them had received an RTP packet."""
    clients = [SignallingClient(api_key=key, url=url) for _ in range(n)]
    peers: list[MeteredPeer] = []
    try:
        await asyncio.gather(*(c.connect() for c in clients))
        # The sender's id sorts first (polite towards everyone) or last (impolite).
        clients.sort(key=lambda c: c.peer_id or "")
        sender_client = clients[0] if polite else clients[-1]
        receivers = [MeteredPeer(_client=c) for c in clients if c is not sender_client]
        peers.extend(receivers)
        for p in receivers:
            await p.join(room)
        sender = MeteredPeer(_client=sender_client)
        peers.append(sender)
        frames = first_frames(receivers)
        track = VideoStreamTrack() if kind == "video" else AudioStreamTrack()
        if on_join:
            sender.add_track(track)
            start = time.perf_counter()
            await sender.join(room)
        else:
            await sender.join(room)
            await await_roster(peers)
            start = time.perf_counter()
            sender.add_track(track)
        ends = await asyncio.wait_for(asyncio.gather(*frames), 60)
        FIRST_RTP.clear()
        decoded = max(end[0] for end in ends)
        arrived = max(end[1] for end in ends)
        return (decoded - start) * 1000, (arrived - start) * 1000
    finally:
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


class GcPauses:
    """The longest garbage-collection pause that fell inside a timed run."""

    def __init__(self) -> None:
        self.timing = False
        self.longest_ms = 0.0
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self.timing:
            self.longest_ms = max(self.longest_ms, (time.perf_counter() - self._started) * 1000)


PAUSES = GcPauses()


async def repeat(
    runs: int, once: Callable[[int], Awaitable[tuple[float, float]]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Median and worst of ``runs``: of the first figure, and of the second."""
    values: list[tuple[float, float]] = []
    for i in range(runs):
        # A closed room of 8 leaves ~60k objects in reference cycles (aiortc's connections);
        # collected during the next run they paused it 100-170 ms. Collect them in between,
        # so each run measures itself; pauses inside runs are still reported (gc_pause_ms).
        gc.collect()
        PAUSES.timing = True
        try:
            values.append(await once(i))
        finally:
            PAUSES.timing = False

    def summary(figures: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(figures), 1), "worst": round(max(figures), 1)}

    return summary([v[0] for v in values]), summary([v[1] for v in values])


async def first_media_figures(url: str, key: str, n: int, runs: int, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for on_join, what in ((True, "join"), (False, "add_track")):
        for polite in (True, False):
            order = f"{n}_{'polite' if polite else 'impolite'}_sender"
            room = f"{what}-{order}"

            async def once(
                i: int, on_join: bool = on_join, polite: bool = polite, room: str = room
            ) -> tuple[float, float]:
                return await first_media(url, key, n, polite, on_join, f"{room}-{i}", kind)

            decoded, arrived = await repeat(runs, once)
            out[f"{what}_to_media_ms_{order}"] = decoded
            out[f"{what}_to_first_rtp_ms_{order}"] = arrived
    return out


async def room(url: str, key: str, n: int, index: int) -> float:
    peers = [MeteredPeer(api_key=key, url=url) for _ in range(n)]
    for p in peers:
        p.add_track(AudioStreamTrack())
    try:
        start = time.perf_counter()
        await asyncio.gather(*(p.join(f"bench-{index}") for p in peers))
        await asyncio.wait_for(asyncio.gather(*(wait_connected(p, n - 1, 60) for p in peers)), 90)
        return time.perf_counter() - start
    finally:
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)


async def throughput(url: str, key: str, megabytes: int, chunk: int) -> dict[str, float]:
    a, b = MeteredPeer(api_key=key, url=url), MeteredPeer(api_key=key, url=url)
    try:
        await a.join("bench-dc")
        await b.join("bench-dc")
        for _ in range(500):
            if a.remote_peers and b.remote_peers:
                break
            await asyncio.sleep(0.01)
        ra, rb = a.remote_peers[0], b.remote_peers[0]
        opened = rb.events(DataChannelOpened)
        dc_a = DataChannel(ra.create_data_channel("bench"))
        a_open = dc_a.events(DCOpen)
        remote_raw = (await asyncio.wait_for(opened.__anext__(), 20)).channel
        if dc_a.ready_state != "open":
            await asyncio.wait_for(a_open.__anext__(), 20)
        dc_b = DataChannel(remote_raw)
        total = megabytes * 1024 * 1024
        received = 0
        done = asyncio.get_running_loop().create_future()

        def on_message(ev: DCMessage) -> None:
            nonlocal received
            received += len(ev.data)
            if received >= total and not done.done():
                done.set_result(time.perf_counter())

        dc_b.on(DCMessage, on_message)
        payload = b"\x5a" * chunk
        start = time.perf_counter()
        for _ in range(total // chunk):
            await dc_a.send(payload)
        end = await asyncio.wait_for(done, 120)
        seconds = end - start
        return {
            "dc_megabytes": megabytes,
            "dc_chunk_bytes": chunk,
            "dc_seconds": round(seconds, 3),
            "dc_mbit_per_s": round(total * 8 / seconds / 1e6, 1),
        }
    finally:
        await asyncio.gather(a.close(), b.close(), return_exceptions=True)


async def main(
    sizes: list[int], runs: int, kind: str, megabytes: int, chunk: int
) -> dict[str, Any]:
    async with embedded_server(app_name="bench") as server:
        url, key = server.url, server.api_key
        result: dict[str, Any] = {"bench": "webrtc", "runs": runs, "media_kind": kind}
        for n in sizes:
            result.update(await first_media_figures(url, key, n, runs, kind))
        result["gc_pause_ms_longest_in_runs"] = round(PAUSES.longest_ms, 1)
        for i, n in enumerate(sizes):
            result[f"join_to_all_connected_s_{n}"] = round(await room(url, key, n, i), 3)
        result.update(await throughput(url, key, megabytes, chunk))
        return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,8")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kind", choices=("video", "audio"), default="video")
    parser.add_argument("--megabytes", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=16384)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(json.dumps(asyncio.run(main(sizes, args.runs, args.kind, args.megabytes, args.chunk))))
