"""What a cluster does when a node dies, Redis restarts or goes away, or a node drains:
each with real server processes and a real redis-server."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from tests.cluster.conftest import Cluster, http
from tests.server.wire import Wire

from metered_realtime import Presence, ReconnectOptions, SignallingClient

pytestmark = pytest.mark.timeout(90)


async def presence_until(wire: Wire, pred: Any, timeout: float) -> list[dict[str, Any]]:
    """Presence frames received until ``pred(frames)`` holds."""
    frames: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred(frames):
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"no such presence within {timeout} s: {frames}")
        frame = await wire.recv(timeout=left)
        if frame["type"] == "presence":
            frames.append(frame)
    return frames


def left_ids(frames: list[dict[str, Any]]) -> set[str]:
    return {e["peerId"] for f in frames for e in f["left"]}


def joined_ids(frames: list[dict[str, Any]]) -> set[str]:
    return {e["peerId"] for f in frames for e in f["joined"]}


async def test_killed_node_members_leave_within_5_s_and_no_ghost_remains(cluster: Cluster):
    a = await cluster.add()
    b = await cluster.add()
    await cluster.formed(2)
    watcher = await Wire.open(cluster.key_url(a))
    assert await watcher.subscribe("room") == []
    doomed = [await Wire.open(cluster.key_url(b)) for _ in range(3)]
    for wire in doomed:
        await wire.subscribe("room")
    ids = {w.peer_id for w in doomed}
    await presence_until(watcher, lambda fs: joined_ids(fs) >= ids, 5)

    b.signal(signal.SIGKILL)
    killed = time.monotonic()
    await presence_until(watcher, lambda fs: left_ids(fs) >= ids, 5.0)
    print(f"presence converged {time.monotonic() - killed:.2f} s after SIGKILL")

    newcomer = await Wire.open(cluster.key_url(a))
    assert await newcomer.subscribe("room") == [watcher.peer_id]
    assert len(await a.nodes()) == 1


async def test_redis_restart_heals_without_clients_reconnecting(cluster: Cluster):
    a = await cluster.add()
    b = await cluster.add()
    await cluster.formed(2)
    w = await Wire.open(cluster.key_url(a))
    x = await Wire.open(cluster.key_url(b))
    await w.subscribe("room")
    await x.subscribe("room")
    await presence_until(w, lambda fs: x.peer_id in joined_ids(fs), 5)

    cluster.redis.stop()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await a.ready() or await b.ready():  # both nodes noticed the loss
        assert loop.time() < deadline, "/readyz stayed ready with Redis down"
        await asyncio.sleep(0.05)
    cluster.redis.start()
    deadline = loop.time() + 15
    while not (await a.ready() and await b.ready()):
        assert loop.time() < deadline, "nodes did not reconnect to Redis"
        await asyncio.sleep(0.05)

    # Messages flow again over the same client connections (once the node has listened to
    # the channel again, which follows its reconnect by a moment: retry, bounded).
    got = None
    for attempt in range(50):
        await x.send({"type": "publish", "channel": "room", "data": attempt})
        try:
            while got is None:
                frame = await w.recv(timeout=0.2)
                if frame["type"] == "message":
                    got = frame
        except asyncio.TimeoutError:
            continue
        break
    assert got is not None and got["from"] == x.peer_id
    await w.send({"type": "send", "to": x.peer_id, "data": "hi", "requestId": "d"})
    direct = await x.recv(timeout=5)
    while direct["type"] != "direct":
        direct = await x.recv(timeout=5)
    assert direct == {"type": "direct", "from": w.peer_id, "data": "hi"}

    # Presence converges: a newcomer on either node sees both, and joins reach the others.
    y = await Wire.open(cluster.key_url(b))
    assert set(await y.subscribe("room")) == {w.peer_id, x.peer_id}
    await presence_until(w, lambda fs: y.peer_id in joined_ids(fs), 5)
    z = await Wire.open(cluster.key_url(a))
    assert set(await z.subscribe("room")) == {w.peer_id, x.peer_id, y.peer_id}
    # Nothing misrouted: a channel nobody else is in stays private to its subscriber.
    await z.subscribe("alone")
    await y.send({"type": "publish", "channel": "alone", "data": "z-only"})
    frame = await z.recv()
    while frame["type"] != "message":
        frame = await z.recv()
    assert frame["channel"] == "alone"
    for wire in (w, x):
        assert wire.ws.close_code is None


async def test_redis_down_serves_locally_counts_losses_and_is_not_ready(cluster: Cluster):
    a = await cluster.add()
    b = await cluster.add()
    await cluster.formed(2)
    w1 = await Wire.open(cluster.key_url(a))
    w2 = await Wire.open(cluster.key_url(a))
    remote = await Wire.open(cluster.key_url(b))
    for wire in (w1, w2, remote):
        await wire.subscribe("room")
    assert await a.ready()

    cluster.redis.stop()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await a.ready():
        assert loop.time() < deadline, "/readyz stayed ready with Redis down"
        await asyncio.sleep(0.05)
    await w1.send({"type": "publish", "channel": "room", "data": "local", "requestId": "p"})
    frame = await w2.recv()
    while frame["type"] != "message":
        frame = await w2.recv()
    assert frame == {"type": "message", "channel": "room", "from": w1.peer_id, "data": "local"}
    status, text = await http(a.port, "GET", "/metrics", admin=False)
    assert status == 200
    metrics = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert metrics["metered_realtime_broker_connected"] == "0.0"
    assert float(metrics["metered_realtime_broker_lost_total"]) >= 1
    with pytest.raises(asyncio.TimeoutError):
        while True:
            frame = await remote.recv(timeout=0.5)
            assert frame.get("data") != "local", "a message crossed nodes with Redis down"


async def test_sigterm_drains_a_worker_and_the_room_heals(cluster: Cluster):
    parent = await cluster.add("--workers", "2")
    await cluster.formed(2, timeout=20)
    fast = ReconnectOptions(initial_delay=0.05, max_delay=0.5, jitter_ratio=0.0)
    clients = [
        SignallingClient(url=parent.url, api_key=cluster.key, reconnect=fast) for _ in range(12)
    ]
    seen: list[list[Presence]] = [[] for _ in clients]
    for client, log in zip(clients, seen, strict=True):
        client.on(Presence, log.append)
        await client.connect()
        await client.subscribe("room")
    try:
        status, body = await http(parent.port, "GET", "/admin/connections")
        assert status == 200
        by_node: dict[str, set[str]] = {}
        for conn in body["connections"]:
            by_node.setdefault(conn["node"], set()).add(conn["peerId"])
        # The kernel spreads connections by a hash: 12 all on one worker has odds of 1 in 2048.
        assert len(by_node) == 2, "SO_REUSEPORT spread no connection to one of the workers"
        nodes = {n["id"]: n for n in await parent.nodes()}
        victim = min(by_node, key=lambda n: len(by_node[n]))
        moving = by_node[victim]
        staying = [c for c in clients if c.peer_id not in moving]
        old_ids = {c.peer_id for c in clients}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        for client, log in zip(clients, seen, strict=True):
            # Start from a settled room: everyone has seen everyone join.
            while {p.peer_id for ev in log for p in ev.joined} != old_ids - {client.peer_id}:
                assert loop.time() < deadline, "the room did not settle"
                await asyncio.sleep(0.05)
        for log in seen:
            log.clear()

        os.kill(nodes[victim]["pid"], signal.SIGTERM)
        deadline = loop.time() + 20
        while {c.peer_id for c in clients} & moving:
            assert loop.time() < deadline, "drained clients did not reconnect"
            await asyncio.sleep(0.05)
        new_ids = {c.peer_id for c in clients} - old_ids
        assert len(new_ids) == len(moving)
        await cluster.formed(1, timeout=10)
        # Each member that stayed sees exactly the moved peers leave and come back as new ids.
        for client in staying:
            log = seen[clients.index(client)]
            while True:
                joined = {p.peer_id for ev in log for p in ev.joined}
                left = {p.peer_id for ev in log for p in ev.left}
                if joined >= new_ids and left >= moving:
                    break
                assert loop.time() < deadline, (joined, left)
                await asyncio.sleep(0.05)
            assert joined == new_ids and left == moving
    finally:
        for client in clients:
            await client.close()
        parent.signal(signal.SIGTERM)
        assert await parent.wait() == 0
