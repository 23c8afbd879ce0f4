"""Cluster nodes as real ``metered-realtime serve`` processes, and a Redis of their own."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import redis_process
from tests.server.test_admin import call
from tests.support.redis import RedisServer

from metered_realtime.demo.embedded import provision_app
from metered_realtime.server.store import open_store

ADMIN_TOKEN = "cluster-test-admin-token"
_prefixes = itertools.count()


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A redis-server for one test, which the test may stop and restart."""
    yield from redis_process()


async def http(port: int, method: str, path: str, admin: bool = True) -> tuple[int, Any]:
    """One plain-HTTP request to a node (with the admin token unless ``admin`` is off)."""
    status, body, _ = await call(port, method, path, token=ADMIN_TOKEN if admin else None)
    return status, body


class Node:
    """One ``serve`` process (or, with ``--workers``, the parent of several)."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"ws://127.0.0.1:{port}"

    @classmethod
    async def start(cls, db: str, redis_url: str, prefix: str, *extra: str) -> Node:
        env = {**os.environ, "METERED_REALTIME_REDIS_PREFIX": prefix}
        env["METERED_REALTIME_ADMIN_TOKEN"] = ADMIN_TOKEN
        command = [sys.executable, "-m", "metered_realtime.cli", "serve", "--host", "127.0.0.1"]
        command += ["--db", db, "--redis", redis_url, "--log-level", "warning", *extra]
        if "--port" not in extra:
            command += ["--port", "0"]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        if not line.startswith("url: "):
            proc.kill()
            raise AssertionError(f"serve printed {line!r}")
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        return cls(proc, port)

    def signal(self, signum: int) -> None:
        """Send a signal to this process (and only it)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    async def wait(self, timeout: float = 20.0) -> int:
        """The exit code, once the process has ended."""
        return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)

    async def nodes(self) -> list[dict[str, Any]]:
        """The cluster's nodes as this one sees them (admin API)."""
        status, body = await http(self.port, "GET", "/admin/nodes")
        assert status == 200, body
        return list(body["nodes"])

    async def ready(self) -> bool:
        """Whether ``/readyz`` says ready."""
        return (await http(self.port, "GET", "/readyz", admin=False))[0] == 200


class Cluster:
    """An app with an all-permission key in a shared SQLite file, and the nodes serving it."""

    def __init__(self, tmp_path: Path, redis: RedisServer) -> None:
        self.db = str(tmp_path / "cluster.db")
        self.redis = redis
        self.prefix = f"c{os.getpid()}x{next(_prefixes)}"
        store = open_store(self.db)
        keys = provision_app(store, "cluster")
        self.app_id, self.key = keys.app_id, keys.api_key
        store.close()
        self.nodes: list[Node] = []

    async def add(self, *extra: str) -> Node:
        """Start one more node."""
        node = await Node.start(self.db, self.redis.url, self.prefix, *extra)
        self.nodes.append(node)
        return node

    def key_url(self, node: Node) -> str:
        """Where a client of ``node`` connects."""
        return f"{node.url}/v1?key={self.key}"

    async def formed(self, size: int, timeout: float = 10.0) -> None:
        """Wait until every live node lists ``size`` nodes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            live = [n for n in self.nodes if n.proc.poll() is None]
            try:
                counts = [len(await n.nodes()) for n in live]
            except OSError:  # a node still starting
                counts = []
            if counts and all(count == size for count in counts):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the cluster did not reach {size} nodes")

    async def close(self) -> None:
        """SIGTERM (a parent of workers passes it on), SIGKILL what is left after 15 s."""
        for node in self.nodes:
            node.signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                await node.wait(15)
            except asyncio.TimeoutError:
                node.signal(signal.SIGKILL)
                await node.wait()


@pytest.fixture
async def cluster(tmp_path: Path, redis: RedisServer) -> AsyncIterator[Cluster]:
    """A cluster with no node yet; ``await cluster.add()`` starts them."""
    built = Cluster(tmp_path, redis)
    try:
        yield built
    finally:
        await built.close()
