"""WebRTC benchmark: join-to-connected for 2, 4 and 8 peers; data-channel throughput.

Runs a real server on 127.0.0.1 and real aiortc peers in one process; ICE is kept on the
loopback interface. Prints ONE JSON line.

    .venv/bin/python bench/webrtc.py [--sizes 2,4,8] [--megabytes 16] [--chunk 16384]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from aiortc import AudioStreamTrack

from metered_realtime.demo import embedded_server, restrict_ice_to_loopback
from metered_realtime.events import DataChannelOpened, DCMessage, DCOpen, StateChange
from metered_realtime.peer import DataChannel, MeteredPeer

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


async def main(sizes: list[int], megabytes: int, chunk: int) -> dict[str, Any]:
    async with embedded_server(app_name="bench") as server:
        url, key = server.url, server.api_key
        result: dict[str, Any] = {"bench": "webrtc"}
        for i, n in enumerate(sizes):
            result[f"join_to_all_connected_s_{n}"] = round(await room(url, key, n, i), 3)
        result.update(await throughput(url, key, megabytes, chunk))
        return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,4,8")
    parser.add_argument("--megabytes", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=16384)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(json.dumps(asyncio.run(main(sizes, args.megabytes, args.chunk))))
