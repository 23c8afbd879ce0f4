"""Soak: a bounded count of connection cycles, on one node and on a 2-node cluster.

Sixteen clients run cycles back to back: connect (a publishable key, or a JWT with peer
metadata), subscribe to three channels out of a pool of forty (presence on; one with
``includeSenderMetadata``), publish, ``send`` to another live peer, sometimes unsubscribe,
then disconnect (a clean close, or the TCP connection dropped without a close frame).
``SOAK_CYCLES`` cycles run (default 2,400 per server, after a 2.5 s warm-up): a count,
not a duration, so a slow machine (or Python) runs as many and only takes longer.

What must hold:

- **No stale entry, ever.** Every 0.25 s during the churn, every node's tables are checked
  (``tables.stale_entries``): no ``hub.conns``, ``app.peers``, ``channel.subs`` or
  ``channel.members`` entry for a gone connection, no remote member outside
  ``app.remote_peers``, and the per-connection and per-channel views agree.
- **Everything empties.** Once the clients are gone: no connection, peer, channel or
  remote peer on any node, no cluster sync or direct in flight, at most 64 expiry entries
  (dropped lazily by design), and no ``Conn``/``Channel``/``RemoteMember`` or websockets
  server connection object left alive.
- **Memory returns to its baseline.** After a warm-up churn of ``WARMUP_SECONDS`` (which
  fills the allocator's free lists and arenas, the dicts' peak sizes and the caches) and a
  full garbage collection, two measures are taken before and after the measured churn:

  * ``sys.getallocatedblocks()``, the number of live Python allocator blocks (every object
    of up to 512 bytes, every small str, tuple, dict entry array, coroutine frame...). It
    costs nothing to keep, so the churn runs at full speed (``tracemalloc`` slowed it four
    times, to a few hundred cycles). Tolerance: 1,000 blocks, with at least 2,000 cycles
    run (asserted), so a leak of one small object every two cycles, far less than any real
    per-connection leak (a forgotten ``Conn`` holds over twenty blocks, a forgotten dict
    entry keyed by a peer id at least one), fails. Measured noise: a few hundred blocks
    either way, independent of the number of cycles.
  * the process's resident set size (``/proc/self/statm``), which also sees memory outside
    Python's allocator (websockets' and asyncio's buffers, hiredis). RSS keeps rising for a
    while after a warm-up (the C allocator's arenas reach their high-water mark slowly), so
    what is checked is that it has stopped: the measured churn runs in two halves, and the
    second half may add at most 1 MiB. Measured once warm: well under 100 KiB per 3,000
    cycles; a leak of 1 KiB a cycle (a forgotten buffer or transport) adds several MiB.

  Both cover the whole test process: the server (both nodes of a cluster), the clients and
  the Redis client, all of which must return to their baseline.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import random
import sys
import time
from typing import Any

import pytest
from tests.server.tables import stale_entries, wait_empty
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from metered_realtime.server.endpoint import Endpoint
from metered_realtime.server.hub import Channel, Conn, RemoteMember

SOAK_CYCLES = int(os.environ.get("SOAK_CYCLES", "2400"))
CLIENTS = 16
WARMUP_SECONDS = 2.5
CHANNELS = [f"soak-{i}" for i in range(40)]


class Client:
    """A raw connection that reads everything and resolves requests by requestId."""

    def __init__(self, ws: ClientConnection, peer_id: str) -> None:
        self.ws = ws
        self.peer_id = peer_id
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count()
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str) -> Client:
        ws = await connect(url, ping_interval=None, max_size=2**20, compression=None)
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
        return cls(ws, welcome["peerId"])

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                waiter = self.pending.pop(frame.get("requestId", ""), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(frame)
        except ConnectionClosed:
            pass

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        rid = f"r{next(self.ids)}"
        waiter = asyncio.get_running_loop().create_future()
        self.pending[rid] = waiter
        await self.ws.send(json.dumps({**frame, "requestId": rid}))
        return await asyncio.wait_for(waiter, 10)

    async def leave(self, abrupt: bool) -> None:
        if abrupt:
            self.ws.transport.abort()  # no close frame: the server sees the TCP reset
        else:
            await self.ws.close()
        await asyncio.wait_for(self.reader, 10)


async def cycle(srv: Any, rng: random.Random, peers: list[str], n: int) -> None:
    """One client's life."""
    if n % 2:
        url = srv.key_url()
    else:
        meta = {"name": f"user-{n}", "tags": ["a", "b"]}
        url = srv.token_url(srv.mint(peer_metadata=meta, ttl=3600))
    client = await Client.open(url)
    peers.append(client.peer_id)
    try:
        channels = rng.sample(CHANNELS, 3)
        for i, channel in enumerate(channels):
            frame = {"type": "subscribe", "channel": channel}
            if i == 0:
                frame["includeSenderMetadata"] = True
            reply = await client.request(frame)
            assert reply["type"] == "ack", reply
        reply = await client.request(
            {"type": "publish", "channel": channels[1], "data": {"n": n, "pad": "x" * 200}}
        )
        assert reply["type"] == "ack", reply
        target = rng.choice(peers[-CLIENTS:])
        reply = await client.request({"type": "send", "to": target, "data": n})
        # The target may have left meanwhile: peer_not_found is the answer then.
        assert reply["type"] == "ack" or reply.get("code") == "peer_not_found", reply
        if rng.random() < 0.3:
            reply = await client.request({"type": "unsubscribe", "channel": channels[2]})
            assert reply["type"] == "ack", reply
    finally:
        await client.leave(abrupt=rng.random() < 0.3)
        peers.remove(client.peer_id)


async def churn(srv: Any, seconds: float | None, cycles: int | None, seed: int) -> int:
    """Run cycles on CLIENTS concurrent lanes; check the tables every 0.25 s."""
    loop = asyncio.get_running_loop()
    deadline = None if seconds is None else loop.time() + seconds
    counter = itertools.count()
    peers: list[str] = []
    problems: list[str] = []

    async def lane(k: int) -> None:
        rng = random.Random(f"{seed}-{k}")
        while True:
            n = next(counter)
            if (deadline is not None and loop.time() >= deadline) or (
                cycles is not None and n >= cycles
            ):
                return
            await cycle(srv, rng, peers, n)

    async def inspector() -> None:
        while True:
            await asyncio.sleep(0.25)
            for node in srv.nodes:
                problems.extend(stale_entries(node))

    watch = asyncio.ensure_future(inspector())
    try:
        await asyncio.gather(*(lane(k) for k in range(CLIENTS)))
    finally:
        watch.cancel()
    assert not problems, problems[:10]
    return next(counter) - CLIENTS  # each lane drew one number it did not run


def live_objects() -> dict[str, int]:
    counts = dict.fromkeys(("Conn", "Channel", "RemoteMember", "Endpoint"), 0)
    for obj in gc.get_objects():
        for kind in (Conn, Channel, RemoteMember, Endpoint):
            if isinstance(obj, kind):
                counts[kind.__name__] += 1
    return counts


async def settle(srv: Any) -> list[str]:
    left = await wait_empty(srv.nodes)
    for _ in range(20):  # closing handshakes and handler tasks finish
        await asyncio.sleep(0.05)
    gc.collect()
    return left


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.timeout(180)
async def test_churn_leaves_no_entry_and_memory_returns_to_baseline(server_factory):
    seed = int(os.environ.get("SOAK_SEED", random.randrange(2**32)))
    async with server_factory() as srv:
        await churn(srv, WARMUP_SECONDS, None, seed)
        left = await settle(srv)
        assert not left, left
        blocks_before, rss_before = sys.getallocatedblocks(), rss()
        started = time.monotonic()
        cycles = await churn(srv, None, SOAK_CYCLES // 2, seed + 1)
        left = await settle(srv)
        assert not left, left
        rss_half = rss()
        cycles += await churn(srv, None, SOAK_CYCLES // 2, seed + 2)
        took = time.monotonic() - started
        left = await settle(srv)
        blocks_after, rss_after = sys.getallocatedblocks(), rss()
        objects = live_objects()
    print(
        f"\nsoak seed={seed} ({len(srv.nodes)} node(s)): {cycles} cycles in {took:.1f} s; "
        f"allocated blocks {blocks_before} -> {blocks_after} ({blocks_after - blocks_before:+d}); "
        f"RSS {rss_before} -> {rss_half} -> {rss_after} B (second half {rss_after - rss_half:+d} B)"
    )
    assert not left, f"tables keep entries of gone connections: {left}"
    assert objects == dict.fromkeys(objects, 0), f"objects of gone connections alive: {objects}"
    assert cycles >= 2000, f"only {cycles} cycles: too few to tell a leak from noise"
    assert blocks_after - blocks_before <= 1000, "Python memory did not return to its baseline"
    assert rss_after - rss_half <= 1024 * 1024, "the process's memory is still growing"
