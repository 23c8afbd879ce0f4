"""A service of several server nodes in this process, joined over a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from tests.conftest import RunningServer, ServerFactory

from metered_realtime.demo.embedded import provision_app
from metered_realtime.server.app import Server
from metered_realtime.server.config import ServerConfig
from metered_realtime.server.store import open_store

_clusters = itertools.count()


@dataclasses.dataclass
class ClusterServer(RunningServer):
    """A service of several nodes; each ``url`` read names the next node in turn."""

    cluster: list[Server] = dataclasses.field(default_factory=list)
    _turn: Iterator[int] = dataclasses.field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        node = self.cluster[next(self._turn) % len(self.cluster)]
        return f"ws://127.0.0.1:{node.port}"

    @property
    def nodes(self) -> list[Server]:
        return self.cluster


async def until_cluster_formed(nodes: list[Server], timeout: float = 10.0) -> None:
    """Wait until every node counts every other as alive."""
    ids = {node.node_id for node in nodes}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if all(node.broker is not None and ids <= node.broker.live_nodes() for node in nodes):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the cluster did not form")


def cluster_factory(tmp_path: Path, redis_url: str, size: int = 2) -> ServerFactory:
    """``async with factory(**ServerConfig overrides) as srv`` starts ``size`` nodes."""
    counter = itertools.count()

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[RunningServer]:
        db = overrides.pop("db", None) or str(tmp_path / f"cluster-{next(counter)}.db")
        prefix = f"t{os.getpid()}-{next(_clusters)}"
        settings = {"host": "127.0.0.1", "port": 0, "db": db, "redis": redis_url}
        config = ServerConfig(**{**settings, "redis_prefix": prefix, **overrides})
        store = open_store(db)
        keys = provision_app(store, "test")
        nodes: list[Server] = []
        try:
            for _ in range(size):
                node = Server(config)
                await node.start()
                nodes.append(node)
            await until_cluster_formed(nodes)
            yield ClusterServer(nodes[0], store, *dataclasses.astuple(keys), cluster=nodes)
        finally:
            for node in nodes:
                await node.stop()
            store.close()

    return start
