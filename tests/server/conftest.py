"""The server suite runs twice: on one process, and on a two-node cluster over a real Redis
with each test's clients spread over both nodes (``url`` alternates between them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import ServerFactory
from tests.support.cluster import cluster_factory
from tests.support.redis import RedisServer


@pytest.fixture(params=["one-node", "redis-cluster"])
def server_factory(
    request: pytest.FixtureRequest, server_factory: ServerFactory, tmp_path: Path
) -> ServerFactory:
    """The parent factory on one node, or a two-node cluster over Redis."""
    if request.param == "one-node":
        return server_factory
    redis: RedisServer = request.getfixturevalue("redis_server")
    return cluster_factory(tmp_path, redis.url)
