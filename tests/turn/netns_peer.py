"""One side of the relayed call of test_relay_across_namespaces.py, run inside a host
namespace: ``python -m tests.turn.netns_peer HOST PORT KEY ROLE``.

The SDK allows ws:// only to loopback, so signalling goes through a FaultProxy on this
namespace's 127.0.0.1 to the server at HOST:PORT; the call itself is what the test is about.

Prints one JSON line with what it saw (selected pairs, gathered candidate types, the data
channel message and audio it received), then waits for a line on stdin before closing.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from aiortc import AudioStreamTrack
from tests.peer.helpers import Expect, wait_state
from tests.support.faultproxy import FaultProxy
from tests.support.icepairs import local_candidate_types, selected_pairs

from metered_realtime.events import DataChannelOpened, DCMessage, DCOpen, PeerJoined, Track
from metered_realtime.peer import DataChannel, MeteredPeer, RemotePeer

CHANNEL = "across-namespaces"
STEP = 60.0


class Remote:
    """The first remote peer, with its event streams opened as it appears (before any
    negotiation step can emit on it)."""

    def __init__(self, peer: MeteredPeer) -> None:
        self.found: asyncio.Future[RemotePeer] = asyncio.get_running_loop().create_future()
        peer.on(PeerJoined, lambda ev: self._found(ev.peer))

    def _found(self, remote: RemotePeer) -> None:
        if not self.found.done():
            self.opened = Expect(remote, DataChannelOpened)
            self.track = Expect(remote, Track)
            self.found.set_result(remote)


async def caller(remote: RemotePeer, peer: MeteredPeer) -> dict[str, Any]:
    """Sends audio, opens the data channel, says ping and expects pong."""
    peer.add_track(AudioStreamTrack())
    channel = DataChannel(remote.create_data_channel("chat"))
    opened = Expect(channel, DCOpen)
    if channel.ready_state != "open":
        await opened.get(STEP)
    reply = Expect(channel, DCMessage)
    await channel.send("ping")
    return {"dc": (await reply.get(STEP)).data}


async def callee(remote: Remote) -> dict[str, Any]:
    """Answers ping with pong and receives one audio frame."""
    channel = DataChannel((await remote.opened.get(STEP)).channel)
    message = Expect(channel, DCMessage)
    got = (await message.get(STEP)).data
    await channel.send("pong")
    frame = await asyncio.wait_for((await remote.track.get(STEP)).track.recv(), STEP)
    return {"dc": got, "audio_samples": frame.samples}


async def main(host: str, port: str, key: str, role: str) -> None:
    async with FaultProxy(host, int(port)) as proxy:
        await call(proxy.url, key, role)


async def call(url: str, key: str, role: str) -> None:
    peer = MeteredPeer(api_key=key, url=url)
    try:
        first = Remote(peer)
        await asyncio.wait_for(peer.join(CHANNEL), STEP)
        remote = await asyncio.wait_for(first.found, STEP)
        seen = await (caller(remote, peer) if role == "caller" else callee(first))
        await wait_state(remote, "connected", STEP)
        seen["gathered"] = sorted(local_candidate_types(remote.pc))
        seen["pairs"] = [[p.local_type, p.remote_type] for p in selected_pairs(remote.pc)]
        print(json.dumps(seen), flush=True)
        await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline), STEP
        )
    finally:
        await asyncio.wait_for(peer.close(), 10)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
