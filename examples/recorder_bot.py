#!/usr/bin/env python3
"""A recorder bot: joins a room and records every remote peer to files.

Each inbound stream of each peer (a camera with its microphone, a screen share, ...) is
written to ``<out>/<peer id>-<stream id>.mkv`` with :class:`Recorder` (Opus audio, H.264
video, in Matroska, which takes both). A track sent without a stream gets a file of its
own. A recording ends when the peer leaves, the stream is removed, or the bot stops.

A Recorder takes all its tracks before it starts, and the tracks of one stream arrive as
separate ``Track`` events, so the bot waits ``--settle`` seconds (default 0.5) after a
stream's first track before it starts that stream's file; a track that arrives later
gets its own file. The bot publishes nothing; peers see it as a silent member. Tell
people they are being recorded.

Against the embedded server (prints the URL and key for the peers to record)::

    python examples/recorder_bot.py --server --out recordings/

or any server: ``--url``/``--key``, or the ``METERED_REALTIME_URL`` /
``METERED_REALTIME_KEY`` environment variables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
from pathlib import Path
from typing import Any

from metered_realtime import MeteredPeer, PeerJoined, PeerLeft, RemotePeer, StreamRemoved, Track
from metered_realtime.demo import (
    BackgroundTasks,
    add_connection_arguments,
    example_connection,
    loopback_requested,
    restrict_ice_to_loopback,
)
from metered_realtime.media import Recorder


def log(text: str) -> None:
    print(f"recorder: {text}", flush=True)


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "x"


class RecorderBot:
    """Starts one :class:`Recorder` per (peer, stream) and stops it when that ends."""

    def __init__(self, peer: MeteredPeer, out: Path, settle: float) -> None:
        self.peer, self.out, self.settle = peer, out, settle
        self.pending: dict[tuple[str, str], list[Any]] = {}  # (peer, group) -> tracks
        self.active: dict[tuple[str, str], Recorder] = {}
        self.tasks = BackgroundTasks()
        self.saved: list[str] = []
        peer.on(PeerJoined, self._on_peer)
        peer.on(PeerLeft, lambda ev: self.tasks.spawn(self.stop_peer(ev.peer.id)))

    def _on_peer(self, ev: PeerJoined) -> None:
        remote: RemotePeer = ev.peer
        log(f"peer joined: {remote.id}")

        def on_track(t: Track) -> None:
            group = t.streams[0].id if t.streams else f"track-{t.track.id}"
            key = (remote.id, group)
            if key in self.pending:
                self.pending[key].append(t.track)
                return
            if key in self.active:  # late track of a running stream: a file of its own
                key = (remote.id, f"{group}-{t.track.kind}-{safe(t.track.id)[:8]}")
            self.pending[key] = [t.track]
            self.tasks.spawn(self._start_after_settle(key))

        def on_removed(ev: StreamRemoved) -> None:
            self.tasks.spawn(self.stop((remote.id, ev.stream.id)))

        remote.on(Track, on_track)
        remote.on(StreamRemoved, on_removed)

    async def _start_after_settle(self, key: tuple[str, str]) -> None:
        await asyncio.sleep(self.settle)  # let the stream's other tracks arrive
        tracks = self.pending.pop(key, [])
        if not tracks:
            return
        path = self.out / f"{safe(key[0])}-{safe(key[1])}.mkv"
        recorder = Recorder(path)
        for track in tracks:
            recorder.add_track(track)
        await recorder.start()
        self.active[key] = recorder
        kinds = "+".join(sorted(t.kind for t in tracks))
        log(f"recording {key[0]} ({kinds}) to {path}")

    async def stop(self, key: tuple[str, str]) -> None:
        self.pending.pop(key, None)
        recorder = self.active.pop(key, None)
        if recorder is not None:
            await recorder.stop()
            self.saved.append(recorder.path)
            log(f"saved {recorder.path}")

    async def stop_peer(self, peer_id: str) -> None:
        log(f"peer left: {peer_id}")
        for key in [k for k in (*self.active, *self.pending) if k[0] == peer_id]:
            await self.stop(key)

    async def close(self) -> None:
        await self.tasks.aclose()
        for key in list(self.active):
            await self.stop(key)


async def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with example_connection(args, log) as (url, key):
        peer = MeteredPeer(api_key=key, url=url)
        bot = RecorderBot(peer, out, args.settle)
        try:
            await peer.join(args.room)
            log(f"joined room {args.room!r} as {peer.peer_id}; recording to {out}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration or None)
        finally:
            await bot.close()
            await peer.close()
    log(f"stopped; {len(bot.saved)} file(s) saved")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record every peer of a room to files.")
    add_connection_arguments(parser)
    parser.add_argument("--loopback", action="store_true", help="keep WebRTC on 127.0.0.1")
    parser.add_argument("--room", default="recorded")
    parser.add_argument("--out", default="recordings", help="output directory")
    parser.add_argument("--settle", type=float, default=0.5, help="seconds (see above)")
    parser.add_argument("--duration", type=float, default=0, help="stop after N s (0: Ctrl-C)")
    args = parser.parse_args(argv)
    if loopback_requested(args.loopback):
        restrict_ice_to_loopback()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
