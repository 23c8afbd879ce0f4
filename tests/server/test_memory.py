"""What a connection and a channel membership cost the server, measured (docs/guarantees.md).

The server runs in this process with ``tracemalloc`` on; the clients run in a child
process, so that nothing of theirs is counted. Phases, each measured once every frame has
been read by the clients and the server is idle (so no outbound buffer holds anything):

1. baseline, after a warm-up of 50 connections opened, subscribed and closed;
2. N idle connections (welcome sent, nothing else): the per-connection cost;
3. each of them subscribed to the same K channels, with presence: the cost of one
   membership (K channel objects amortised over N x K memberships);
4. each subscribed to one more channel of its own: the cost of a channel with one member;
5. N connections opened with a JWT (no peer metadata): what a token adds;
6. N connections and K channels again, with a JWT carrying METADATA bytes of peer
   metadata: what each byte of metadata costs per connection and per membership.

Run ``scripts/test tests/server/test_memory.py -s`` to print the figures (alone, so that the
RSS figure is not hidden by memory an earlier test freed). The bounds asserted are about
1.5x what was measured on CPython 3.10 to 3.13 when docs/guarantees.md was written, so the
documented formula stays true within that margin.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import textwrap
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

from metered_realtime.demo import embedded_server
from metered_realtime.server.app import Server
from metered_realtime.tokens import mint_token

N = 500
K = 10
METADATA = 1000

CLIENTS = textwrap.dedent(
    """
    import asyncio, json, sys
    from websockets.asyncio.client import connect

    async def main(*urls):
        conns, readers, counter = [], [], [0]

        async def read(ws):
            async for raw in ws:
                counter[0] += 1

        async def quiet():  # every frame read, nothing for 0.3 s
            last = -1
            while last != counter[0]:
                last = counter[0]
                await asyncio.sleep(0.3)

        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            cmd, *args = line.split()
            if cmd == "open":  # open N URL-NUMBER
                for _ in range(int(args[0])):
                    target = urls[int(args[1]) if len(args) > 1 else 0]
                    ws = await connect(target, ping_interval=None, compression=None)
                    await ws.recv()
                    conns.append(ws)
                    readers.append(asyncio.ensure_future(read(ws)))
            elif cmd == "sub":
                for i, ws in enumerate(conns):
                    for k in range(int(args[0])):
                        await ws.send(json.dumps({"type": "subscribe", "channel": f"{args[1]}{k}",
                                                  "requestId": "s"}))
                    await asyncio.sleep(0)
            elif cmd == "own":
                for i, ws in enumerate(conns):
                    await ws.send(json.dumps({"type": "subscribe", "channel": f"own-{i}",
                                              "requestId": "o"}))
            elif cmd == "close":
                for ws in conns:
                    await ws.close()
                conns.clear()
            elif cmd == "exit":
                return
            await quiet()
            print("ok", flush=True)

    asyncio.run(main(*sys.argv[1:]))
    """
)


@contextlib.asynccontextmanager
async def one_server(tmp_path: Path) -> AsyncIterator[tuple[Server, list[str]]]:
    meta = {"name": "m" * (METADATA - 11)}  # {"name":"…"} is METADATA bytes of JSON
    # No protocol pings during the measurement: their timers are not part of the state.
    db = str(tmp_path / "memory.db")
    async with embedded_server(db=db, app_name="memory", ws_ping_interval=None) as srv:
        plain = mint_token(srv.secret_key_id, srv.secret, ttl=3600)
        token = mint_token(srv.secret_key_id, srv.secret, peer_metadata=meta, ttl=3600)
        base = f"{srv.url}/v1"
        yield (
            srv.server,
            [f"{base}?key={srv.api_key}", f"{base}?token={plain}", f"{base}?token={token}"],
        )


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_measure_connection_and_membership_cost(tmp_path):
    async with one_server(tmp_path) as (server, urls):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENTS,
            *urls,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdin is not None and child.stdout is not None

        async def run(command: str) -> tuple[int, int, int]:
            child.stdin.write((command + "\n").encode())
            await child.stdin.drain()
            assert (await asyncio.wait_for(child.stdout.readline(), 120)).strip() == b"ok"
            for _ in range(10):  # handler tasks finish, closing handshakes end
                await asyncio.sleep(0.05)
            gc.collect()
            return tracemalloc.get_traced_memory()[0], sys.getallocatedblocks(), rss()

        # RSS first, without tracemalloc (whose own bookkeeping would inflate it).
        await run("open 50")
        await run("sub 3 warm-")
        await run("close")
        rss_base = await run("open 0")
        rss_idle = await run(f"open {N}")
        await run("close")
        tracemalloc.start(1)
        try:
            await run("open 50")
            await run("sub 3 warm-")
            await run("close")
            assert not server.hub.conns
            base = await run("open 0")
            before = tracemalloc.take_snapshot()
            idle = await run(f"open {N}")
            where = tracemalloc.take_snapshot().compare_to(before, "filename")[:6]
            subscribed = await run(f"sub {K} room-")
            own = await run("own")
            await run("close")
            base_jwt = await run("open 0")
            idle_jwt = await run(f"open {N} 1")
            await run("close")
            base_meta = await run("open 0")
            idle_meta = await run(f"open {N} 2")
            subscribed_meta = await run(f"sub {K} room-")
            await run("close")
        finally:
            tracemalloc.stop()
        child.stdin.write(b"exit\n")
        await child.stdin.drain()
        await asyncio.wait_for(child.wait(), 30)
    per_conn = (idle[0] - base[0]) / N
    per_member = (subscribed[0] - idle[0]) / (N * K)
    per_channel = (own[0] - subscribed[0]) / N - per_member
    jwt_per_conn = (idle_jwt[0] - base_jwt[0]) / N - per_conn
    meta_per_conn = (idle_meta[0] - base_meta[0]) / N - per_conn - jwt_per_conn
    meta_per_member = (subscribed_meta[0] - idle_meta[0]) / (N * K) - per_member
    blocks_per_conn = (idle[1] - base[1]) / N
    rss_per_conn = (rss_idle[2] - rss_base[2]) / N
    print(
        f"\nserver memory, measured with tracemalloc ({N} connections, {K} shared channels):"
        f"\n  idle connection:         {per_conn:8.0f} B ({blocks_per_conn:.0f} allocator blocks;"
        f" RSS {rss_per_conn:.0f} B, meaningful when this test runs alone in its process)"
        f"\n  channel membership:      {per_member:8.0f} B"
        f"\n  channel (one member):    {per_channel:8.0f} B on top of its membership"
        f"\n  a JWT (no metadata) adds: {jwt_per_conn:8.0f} B per connection"
        f"\n  {METADATA} B of peer metadata add {meta_per_conn:.0f} B per connection"
        f" ({meta_per_conn / METADATA:.2f} B a byte) and {meta_per_member:.0f} B per membership"
        f" ({meta_per_member / METADATA:.2f} B a byte)"
        f"\n  where an idle connection's bytes are allocated (top files, {N} connections):\n    "
        + "\n    ".join(f"{s.size_diff / N:7.0f} B  {s.traceback[0].filename}" for s in where)
    )
    # About 1.5 times the figures in docs/guarantees.md (CPython 3.10 to 3.13 measured).
    assert 0 < per_conn <= 6_800
    assert 0 < per_member <= 450
    assert 0 < per_channel <= 1400
    assert 0 < jwt_per_conn <= 1500
    assert meta_per_conn <= 12.5 * METADATA and meta_per_member <= 1.5 * METADATA
