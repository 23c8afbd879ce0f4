"""Per-app limits counted across the nodes of a cluster (Redis)."""

from __future__ import annotations

import asyncio
import json

import pytest
from tests.server.wire import Wire
from tests.support.cluster import cluster_factory
from tests.support.redis import RedisServer
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.timeout(30)


async def publish_all(wire: Wire, count: int, tag: str) -> tuple[int, int]:
    """Publish ``count`` messages; return (acked, refused over quota)."""
    acked = refused = 0
    for i in range(count):
        reply = await wire.request(
            {"type": "publish", "channel": "q", "data": i, "requestId": f"{tag}{i}"}
        )
        if reply["type"] == "ack":
            acked += 1
        else:
            assert reply["code"] == "over_message_quota", reply
            refused += 1
    return acked, refused


async def test_message_quota_is_shared_by_the_nodes(tmp_path, redis_server: RedisServer):
    async with cluster_factory(tmp_path, redis_server.url)(app_message_quota=10) as srv:
        first, second = srv.nodes
        a = await Wire.open(f"ws://127.0.0.1:{first.port}/v1?key={srv.api_key}")
        b = await Wire.open(f"ws://127.0.0.1:{second.port}/v1?key={srv.api_key}")
        assert await publish_all(a, 6, "a") == (6, 0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        # The second node learns the first one's use at its next report to Redis.
        while second.hub.apps[srv.app_id].quota_others < 6:
            assert loop.time() < deadline, "the quota use never reached the other node"
            await asyncio.sleep(0.05)
        assert await publish_all(b, 10, "b") == (4, 6)
        assert await publish_all(a, 1, "c") in ((0, 1), (1, 0))


async def test_connection_limit_counts_every_node(tmp_path, redis_server: RedisServer):
    async with cluster_factory(tmp_path, redis_server.url)(max_connections_per_app=3) as srv:
        first, second = srv.nodes
        url = {n: f"ws://127.0.0.1:{n.port}/v1?key={srv.api_key}" for n in srv.nodes}
        held = [
            await Wire.open(url[first]),
            await Wire.open(url[second]),
            await Wire.open(url[first]),
        ]
        refused = await Wire.open(url[second], welcome=False)
        assert (await refused.refused())[0] == 4010
        await held[1].close()
        await held[1].ws.wait_closed()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:  # the count drops once the server has seen the close
            wire = await Wire.open(url[first], welcome=False)
            try:
                frame = json.loads(await wire.ws.recv())
            except ConnectionClosed:
                assert wire.ws.close_code == 4010, wire.ws.close_code
                assert loop.time() < deadline, "the freed slot never came back"
                await asyncio.sleep(0.05)
                continue
            assert frame["type"] == "welcome"
            break
        # The slot is taken again: the cluster is back at its limit.
        again = await Wire.open(url[second], welcome=False)
        assert (await again.refused())[0] == 4010
