"""Keys and apps shared by every node: one PostgreSQL store, changes reach live sessions on
every node (through the admin API at once, through the store alone within ``store_refresh``)."""

from __future__ import annotations

import pytest
from tests.cluster.conftest import ADMIN_TOKEN
from tests.server.test_admin import call
from tests.server.wire import Wire
from tests.support.cluster import cluster_factory
from tests.support.redis import RedisServer

pytestmark = pytest.mark.timeout(60)


async def test_store_revocation_closes_sessions_on_every_node(
    tmp_path, redis: RedisServer, postgres_store_url
):
    async with cluster_factory(tmp_path, redis.url)(
        db=postgres_store_url, store_refresh=0.5
    ) as srv:
        key = srv.new_key()
        token = srv.mint()
        by_key = [await Wire.open(srv.key_url(key)) for _ in srv.nodes]
        by_token = [await Wire.open(srv.token_url(token)) for _ in srv.nodes]
        bystander = await Wire.open(srv.key_url())
        # What the CLI on another machine does: write the store, tell no server.
        srv.store.revoke(key)
        for wire in by_key:
            assert (await wire.closed(timeout=3))[0] == 4001
        srv.store.revoke(srv.secret_key_id)
        for wire in by_token:
            assert (await wire.closed(timeout=3))[0] == 4001
        assert await bystander.request({"type": "ping"}) == {"type": "pong"}
        refused = await Wire.open(srv.key_url(key), welcome=False)
        assert (await refused.refused())[0] == 4001


async def test_admin_suspend_on_one_node_closes_the_app_everywhere(tmp_path, redis: RedisServer):
    # A long refresh period: only the admin API's cluster message can explain a fast close.
    async with cluster_factory(tmp_path, redis.url)(
        admin_token=ADMIN_TOKEN, store_refresh=3600
    ) as srv:
        wires = [await Wire.open(srv.key_url()) for _ in range(4)]
        status, body, _ = await call(
            srv.nodes[0].port, "POST", f"/admin/apps/{srv.app_id}/suspend", token=ADMIN_TOKEN
        )
        assert status == 200 and body["closed"] == 4
        for wire in wires:
            assert (await wire.closed(timeout=1))[0] == 4012
        refused = await Wire.open(
            f"ws://127.0.0.1:{srv.nodes[1].port}/v1?key={srv.api_key}", welcome=False
        )
        assert (await refused.refused())[0] == 4012
        status, _, _ = await call(
            srv.nodes[1].port, "POST", f"/admin/apps/{srv.app_id}/resume", token=ADMIN_TOKEN
        )
        assert status == 200
        again = await Wire.open(f"ws://127.0.0.1:{srv.nodes[0].port}/v1?key={srv.api_key}")
        assert again.welcome["type"] == "welcome"
