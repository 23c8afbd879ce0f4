"""The cluster over Redis (or Valkey) pub/sub, with redis-py's asyncio client.

One connection publishes (everything this node says, pipelined in order), one listens
(pub/sub). A heartbeat key with a TTL says the node is alive; a node whose key is gone is
declared gone by the others and its members leave. When Redis is unreachable the node keeps
serving its own clients; what it publishes meanwhile is lost and counted, and on reconnect it
listens again, re-announces its members and re-learns everyone else's (``ClusterNode.recover``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import Connection
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from ..hub import Hub
from .node import Action, ClusterNode, Listen, Publish

log = logging.getLogger("metered_realtime.server.cluster")

HEARTBEAT_INTERVAL = 0.5
PUBLISH_BUFFER_LIMIT = 16 * 1024 * 1024
NODE_TTL = 2.0
MAX_QUEUED = 100_000
RPC_TIMEOUT = 1.0
STOP_STEP = 1.0  # each Redis call made while leaving the cluster
STOP_WAIT = 4.0  # each stage of stopping, however Redis and redis-py behave

# Admit one connection of an app if the cluster-wide count stays within the limit.
# KEYS: the node set; ARGV: key prefix, this node, app id, limit, TTL in ms.
_ADMIT = """
local total = 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  total = total + tonumber(redis.call('HGET', ARGV[1] .. ':conns:' .. node, ARGV[3]) or '0')
end
if total >= tonumber(ARGV[4]) then return 0 end
local mine = ARGV[1] .. ':conns:' .. ARGV[2]
redis.call('HINCRBY', mine, ARGV[3], 1)
redis.call('PEXPIRE', mine, ARGV[5])
return 1
"""


class _Publisher:
    """PUBLISH commands written straight into one Redis connection, in call order.

    A publish leaves for Redis before the hub goes on to write the message to this node's own
    subscribers, so the other nodes fan it out in parallel instead of a local fan-out later.
    redis-py packs each command and parses each reply; only the write is done here, because
    its own send path must be awaited and so would run after the local fan-out.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._unanswered = 0
        self._wake = asyncio.Event()
        self._answered = asyncio.Event()
        self._answered.set()

    def publish(self, name: str, payload: bytes) -> bool:
        """Write one PUBLISH; False when the connection cannot take it (closed or backed up)."""
        writer = self.connection._writer  # redis-py has no synchronous write of its own
        if writer is None or writer.transport.is_closing():
            return False
        if writer.transport.get_write_buffer_size() > PUBLISH_BUFFER_LIMIT:
            return False
        writer.writelines(self.connection.pack_command("PUBLISH", name, payload))
        self._unanswered += 1
        self._answered.clear()
        self._wake.set()
        return True

    async def run(self) -> None:
        """Read the replies (subscriber counts); raises when the connection breaks."""
        while True:
            if not self._unanswered:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self.connection.read_response()
            except ResponseError as exc:
                log.warning("redis refused a publish: %s", exc)
            self._unanswered -= 1
            if not self._unanswered:
                self._answered.set()

    async def drained(self) -> None:
        """Wait until every publish written so far has been answered."""
        await self._answered.wait()


class RedisBroker:
    """Connects one hub to the cluster; ``await start()``, ``await stop()``."""

    def __init__(
        self,
        hub: Hub,
        url: str,
        node_id: str,
        *,
        prefix: str = "mr",
        on_input: Callable[[], None] = lambda: None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.node = ClusterNode(hub, node_id, self._emit, prefix)
        self.hub = hub
        self.connected = False
        self._on_input = on_input
        self._info = json.dumps(info or {})
        self._queue: deque[Listen] = deque()
        self._wake = asyncio.Event()
        self._client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._publisher: _Publisher | None = None
        self._replies: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._missing: dict[str, int] = {}
        self._trust_after = 0.0
        self._rpcs: dict[str, tuple[asyncio.Future[dict[str, Any]], dict[str, Any], set[str]]] = {}
        self._admit = None
        self._quota_reported: dict[tuple[str, float], int] = {}
        self._stopping = False
        self.node.on_reply = self._on_reply

    @property
    def node_id(self) -> str:
        """This node's id, also the first characters of its peers' ids."""
        return self.node.node

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Connect (fails if Redis is unreachable) and start listening and beating."""
        await self._connect()
        self.node.hello()
        self._tasks = [
            asyncio.ensure_future(self._run_reader()),
            asyncio.ensure_future(self._run_writer()),
            asyncio.ensure_future(self._run_heartbeat()),
        ]

    async def stop(self) -> None:
        """Leave the cluster: remove the heartbeat so the others see this node gone at once.

        Every step is bounded without waiting on cancellation: on Python 3.10 redis-py's
        timeouts (async-timeout) can swallow a task's cancellation, and a stop that awaited
        the cancelled task would hang. The loops also end on ``_stopping``.
        """
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await _within(asyncio.gather(*self._tasks, return_exceptions=True), "the loops")
        if self._client is not None and self.connected:
            await _within(self._leave(), "leaving the cluster")
        await _within(self._disconnect(), "disconnecting")

    async def _leave(self) -> None:
        client = self._client
        assert client is not None
        with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self._flush_queue(), STOP_STEP)
            if self._publisher is not None:
                await asyncio.wait_for(self._publisher.drained(), STOP_STEP)
            pipe = client.pipeline(transaction=False)
            pipe.delete(self._key("node", self.node_id))
            pipe.srem(self._key("nodes"), self.node_id)
            await pipe.execute()

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def _connect(self) -> None:
        client = aioredis.Redis.from_url(
            self.url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=2.0,
            health_check_interval=0,
        )
        try:
            await client.ping()
            pubsub = client.pubsub()
            await pubsub.subscribe(*self.node.start())
            connection = await client.connection_pool.get_connection()
        except BaseException:
            await client.aclose()
            raise
        assert isinstance(connection, Connection)
        self._client, self._pubsub = client, pubsub
        self._publisher = _Publisher(connection)
        self._replies = asyncio.ensure_future(self._read_replies(self._publisher))
        self._admit = client.register_script(_ADMIT)
        self.connected = True
        self._trust_after = time.monotonic() + NODE_TTL
        await self._beat()

    async def _read_replies(self, publisher: _Publisher) -> None:
        try:
            await publisher.run()
        except (RedisError, OSError) as exc:
            await self._lost(exc)

    async def _disconnect(self) -> None:
        self.connected = False
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        publisher, self._publisher = self._publisher, None
        replies, self._replies = self._replies, None
        if replies is not None and replies is not asyncio.current_task():
            replies.cancel()
        if publisher is not None:
            with contextlib.suppress(RedisError, OSError):
                await publisher.connection.disconnect()
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    async def _lost(self, exc: BaseException) -> None:
        """Redis went away: serve locally, fail what waits on it, reconnect with backoff."""
        if not self.connected or self._stopping:
            return
        log.warning("redis connection lost (%s); serving local clients only", type(exc).__name__)
        await self._disconnect()
        self._queue.clear()  # recover() listens to everything again
        self.node.offline = True
        self.node.fail_pending(time.time())
        self._on_input()
        delay = 0.05
        while not self._stopping:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except (RedisError, OSError) as err:
                log.debug("redis reconnect failed: %s", type(err).__name__)
                delay = min(delay * 2, 2.0)
                continue
            break
        if self._stopping:
            return
        self.node.stats.reconnects += 1
        self.node.offline = False
        log.info("redis connection back; re-announcing this node's members")
        await self._report_connections()
        self.node.recover(time.time())
        self.node.hello()
        self._wake.set()
        self._on_input()

    # --- out ----------------------------------------------------------------------

    def _emit(self, action: Action) -> None:
        if isinstance(action, Publish):
            publisher = self._publisher
            if (
                publisher is None
                or not self.connected
                or not publisher.publish(action.name, action.payload)
            ):
                self.node.stats.lost += 1
            return
        if not self.connected:
            if action.on:
                # No one to ask for members: admit the subscribe with what this node knows.
                asyncio.get_running_loop().call_soon(self._listen_offline, action.name)
            return
        if len(self._queue) >= MAX_QUEUED:
            self.node.stats.lost += 1
            return
        self._queue.append(action)
        self._wake.set()

    def _listen_offline(self, name: str) -> None:
        self.node.listening(name, time.time())
        self._on_input()

    async def _run_writer(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if not self.connected:
                continue
            try:
                await self._flush_queue()
            except (RedisError, OSError) as exc:
                await self._lost(exc)

    async def _flush_queue(self) -> None:
        """Start or stop listening, in the order the node asked (publishes go straight out)."""
        queue = self._queue
        while queue and self._pubsub is not None:
            action = queue[0]
            assert isinstance(action, Listen)
            if action.on:
                await self._pubsub.subscribe(action.name)
            else:
                await self._pubsub.unsubscribe(action.name)
            queue.popleft()

    # --- in -----------------------------------------------------------------------

    async def _run_reader(self) -> None:
        while not self._stopping:
            pubsub = self._pubsub
            if pubsub is None or not self.connected:
                await asyncio.sleep(0.05)
                continue
            try:
                message = await pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                await self._lost(exc)
                continue
            if message is None:
                continue
            kind = message["type"]
            name = message["channel"]
            name = name.decode() if isinstance(name, bytes) else name
            now = time.time()
            if kind == "message":
                self.node.receive(name, message["data"], now)
            elif kind == "subscribe":
                self.node.listening(name, now)
            elif kind == "unsubscribe":
                self.node.unlistened(name)
            self._on_input()

    # --- liveness -------------------------------------------------------------------

    async def _run_heartbeat(self) -> None:
        while not self._stopping:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            if not self.connected:
                continue
            try:
                await self._beat()
                await self._sync_quotas()
            except (RedisError, OSError) as exc:
                await self._lost(exc)
                continue
            now = time.time()
            self.node.tick(now)
            self.node.send(self.node.node_stream, ["l", now])
            self._on_input()

    async def _beat(self) -> None:
        client = self._client
        assert client is not None
        ttl_ms = int(NODE_TTL * 1000)
        pipe = client.pipeline(transaction=False)
        pipe.set(self._key("node", self.node_id), self._info, px=ttl_ms)
        pipe.sadd(self._key("nodes"), self.node_id)
        pipe.pexpire(self._key("conns", self.node_id), ttl_ms)
        pipe.smembers(self._key("nodes"))
        members = (await pipe.execute())[-1]
        nodes = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
        alive = await client.mget([self._key("node", n) for n in nodes]) if nodes else []
        live = set()
        trusted = time.monotonic() >= self._trust_after
        for node, value in zip(nodes, alive, strict=True):
            if value is not None or node == self.node_id:
                self._missing.pop(node, None)
                live.add(node)
                continue
            # Gone only when missing twice and this node's own view is not freshly rebuilt.
            misses = self._missing.get(node, 0) + 1
            self._missing[node] = misses
            if misses < 2 or not trusted:
                live.add(node)
            else:
                self._missing.pop(node, None)
                pipe = client.pipeline(transaction=False)
                pipe.srem(self._key("nodes"), node)
                await pipe.execute()
        if not trusted:
            live |= self.node.live
        self.node.set_live(live, time.time())

    def live_nodes(self) -> set[str]:
        """The nodes this node believes alive, itself included."""
        return set(self.node.live)

    # --- cluster-wide limits --------------------------------------------------------

    async def admit(self, app_id: str, limit: int) -> bool:
        """Count one more connection of ``app_id`` if the cluster stays within ``limit``.

        With Redis unreachable only this node's own count is known; the hub checks that.
        """
        if not self.connected or self._admit is None:
            return True
        try:
            result = await self._admit(
                keys=[self._key("nodes")],
                args=[self.prefix, self.node_id, app_id, limit, int(NODE_TTL * 1000)],
            )
        except (RedisError, OSError):
            return True
        return bool(result)

    async def release(self, app_id: str) -> None:
        """One connection of ``app_id`` admitted by ``admit`` has ended."""
        if not self.connected or self._client is None:
            return  # the counts are rewritten from the hub on reconnect
        with contextlib.suppress(RedisError, OSError):
            pipe = self._client.pipeline(transaction=False)
            pipe.hincrby(self._key("conns", self.node_id), app_id, -1)
            await pipe.execute()

    async def _report_connections(self) -> None:
        """Rewrite this node's per-app connection counts from the hub (after an outage)."""
        if self.hub.config.max_connections_per_app is None or self._client is None:
            return
        counts = {app.id: len(app.peers) for app in self.hub.apps.values() if app.peers}
        key = self._key("conns", self.node_id)
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(key)
        if counts:
            pipe.hset(key, mapping=counts)
        pipe.pexpire(key, int(NODE_TTL * 1000))
        await pipe.execute()

    async def _sync_quotas(self) -> None:
        """Add this node's message counts to the cluster's, and learn the others' use."""
        config = self.hub.config
        if config.app_message_quota is None or self._client is None:
            return
        now = time.time()
        apps = list(self.hub.apps.values())
        if not apps:
            return
        for app in apps:
            self.hub.roll_quota(app, now)
        pipe = self._client.pipeline(transaction=False)
        for app in apps:
            window = app.quota_reset_at
            delta = app.quota_used - self._quota_reported.get((app.id, window), 0)
            key = self._key("quota", app.id, str(int(window)))
            pipe.incrby(key, delta)
            pipe.expireat(key, int(window) + 60)
        totals = (await pipe.execute())[::2]
        for app, total in zip(apps, totals, strict=True):
            self._quota_reported[(app.id, app.quota_reset_at)] = app.quota_used
            app.quota_others = max(0, int(total) - app.quota_used)
        for stale in [k for k in self._quota_reported if k[1] <= now]:
            del self._quota_reported[stale]

    # --- admin across the cluster ----------------------------------------------------

    async def ask(self, op: str, args: Any, node: str | None = None) -> dict[str, Any]:
        """Run an admin operation on every live node (or one); node id -> its result."""
        if not self.connected:
            raise ConnectionError("the cluster is unreachable (redis is down)")
        expected = {node} if node is not None else set(self.node.live)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        request_id = self.node.request(op, args, node)
        results: dict[str, Any] = {}
        self._rpcs[request_id] = (future, results, expected)
        try:
            return await asyncio.wait_for(future, RPC_TIMEOUT)
        except asyncio.TimeoutError:
            return results
        finally:
            self._rpcs.pop(request_id, None)

    def _on_reply(self, request_id: str, node: str, result: Any) -> None:
        pending = self._rpcs.get(request_id)
        if pending is None:
            return
        future, results, expected = pending
        results[node] = result
        if expected <= set(results) and not future.done():
            future.set_result(results)


async def _within(step: Awaitable[Any], what: str) -> None:
    """Run one stage of stopping; after ``STOP_WAIT`` seconds go on without it."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=STOP_WAIT)
    if not done:
        task.cancel()  # it may not honour this (see RedisBroker.stop): do not wait for it
        task.add_done_callback(_consume)
        log.warning("redis broker: %s did not finish while stopping; left behind", what)
    else:
        _consume(task)


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("redis broker: stop step failed: %r", task.exception())
