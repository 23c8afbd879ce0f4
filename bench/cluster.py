"""Cluster benchmark: metered-realtime nodes joined over Redis against ONE node, same run.

Every figure is measured twice in the same run, on the cluster and on one node, and reported
with its ratio (cluster / one node):

1. ``fanout``: one publisher (on node 1) and N subscribers on one channel, half of them on
   each of 2 nodes (``--subscribers``, default 1000), against the same workload on one node
   without Redis. The closed loop, latency phase and subscriber processes are bench/fanout.py's
   (imported, not copied). ``cpu_s_per_100k`` sums the user+system CPU of every server process
   (read from /proc) from the start of the throughput phase's warm-up until every message sent
   has been delivered, per 100,000 deliveries; redis-server's share is ``redis_cpu_s_per_100k``,
   apart. ``cpu_per_delivery_ratio`` divides the medians over the tries (goal <= 1.15).
   Latency (publish -> receive, every delivery) is measured twice per try: at light load
   (``light_load``, ``--light-rate`` publishes/s) and at one common rate for every setup, half
   the first one-node try's sustained rate, so the p50s compare the same offered load.
   ``p50_ms_by_node`` splits the 2-node figures by the node the subscribers are on (node 2's
   deliveries cross Redis), and ``redis_p50_ms`` is when the messages reached Redis (a passive
   subscriber on the cluster's channel streams, timed like the subscribers).
2. ``presence_formation``: a channel of ``--members`` (default 5000) members, half on each
   node: the time from all of them subscribing at once until every member holds the full
   membership (snapshot + deltas = members - 1 others), and the same on one node (goal <= 3 s
   on 2 nodes); the fastest of ``--repeat`` alternating tries, every try's time beside it.
3. ``node_kill``: ``--kill-members`` (default 200) members on each of 2 nodes in one channel,
   plus an observer member on node 1; node 2 is SIGKILLed and ``converge_s`` is the time until
   the observer has seen ``left`` for every member node 2 held. The one-node figure is the
   nearest equivalent there: the client process holding those members is SIGKILLed instead
   (the server sees the connections close at once; a cluster node has to notice a silent
   node through its heartbeat's expiry).
4. ``server_workers``: ``serve --workers 2 --redis`` (processes sharing one port, SO_REUSEPORT)
   against one process, the fan-out workload of 1. Run in the same rounds as 1 and sharing its
   one-node tries. On a 2-core machine the subscribers and the publisher compete with the
   server processes for the same cores: read the rates with ``machine_busy_cores`` beside.

redis-server is started here on a free loopback port (``--save "" --appendonly no``), each
measurement gets its own key prefix, and every process started here is stopped by its pid at
the end. Past ``--budget`` seconds no new step starts (what runs fails and is stopped), and
at ``--budget`` + 60 s the run is cut off and cleans up; ``--quick`` runs everything small in
well under a minute. Progress on stderr, ONE JSON line on stdout.

    .venv/bin/python bench/cluster.py --quick
    .venv/bin/python bench/cluster.py                      # 1000 subscribers, 5000 members
    .venv/bin/python bench/cluster.py --parts kill --kill-members 500

Other load on the machine moves rates and latencies a lot (``background_busy_cores`` is what
other processes used just before each try); CPU seconds per delivery move much less.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fanout  # noqa: E402  (bench/fanout.py: subscriber workers, closed loop, CPU accounting)

HOST = "127.0.0.1"
ADMIN_TOKEN = "bench-" + os.urandom(12).hex()
PREFIXES = itertools.count(1)
# What one fanout.py latency phase reports (and p50_ms_by_node, added here).
LATENCY_KEYS = (
    *("latency_publishes_per_s", "latency_samples", "latency_lost"),
    *("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "p50_ms_by_node", "redis_p50_ms"),
)
# Every node and redis-server started here, so that nothing outlives the run.
STARTED: list[asyncio.subprocess.Process] = []


def log(msg: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def split(total: int, parts: int) -> list[int]:
    """`total` in `parts` shares differing by at most one."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def percentile_ms(values: array[int], pct: int) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, len(ordered) * pct // 100)] / 1e6, 3)


def _get_nodes(port: int) -> list[dict[str, Any]]:
    """GET /admin/nodes of the server on `port` (plain HTTP on loopback, no proxy)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=3)
    try:
        conn.request("GET", "/admin/nodes", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"/admin/nodes answered {response.status}: {body[:200]!r}")
        return list(json.loads(body)["nodes"])
    finally:
        conn.close()


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks after boot), or None once it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # After the ")" closing comm: state is field 3, starttime field 22.
    return None if fields[0] == b"Z" else int(fields[19])


async def stop_all() -> None:
    """Last resort: stop whatever this run started that still runs (SIGTERM, then SIGKILL)."""
    running = [p for p in STARTED if p.returncode is None]
    await asyncio.gather(*(fanout._reap(p, 10, signal.SIGTERM) for p in running))
    STARTED.clear()


class RedisServer:
    """redis-server on a free loopback port, no persistence."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.version = ""

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        for _ in range(3):  # another process may take the free port first
            self.port = free_port()
            self.proc = await asyncio.create_subprocess_exec(
                *(exe, "--port", str(self.port), "--bind", HOST, "--save", ""),
                *("--appendonly", "no", "--daemonize", "no"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=open(os.path.join(self.tmp, "redis.log"), "ab"),  # noqa: SIM115
                stderr=asyncio.subprocess.STDOUT,
            )
            STARTED.append(self.proc)
            if await self._ready(timeout):
                log(f"redis-server {self.version} on port {self.port}, pid {self.proc.pid}")
                return
            await self.stop()
        raise RuntimeError(f"redis-server did not start; see {self.tmp}/redis.log")

    async def _ready(self, timeout: float) -> bool:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        client = aioredis.Redis(host=HOST, port=self.port, socket_connect_timeout=1.0)
        stop = time.monotonic() + timeout
        try:
            while time.monotonic() < stop:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    return False
                try:
                    self.version = str((await client.info("server"))["redis_version"])
                    return True
                except (RedisError, OSError):
                    await asyncio.sleep(0.05)  # not listening yet: poll
            return False
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self.proc is not None:
            await fanout._reap(self.proc, 5, signal.SIGTERM)


class RedisTap:
    """A passive listener on the cluster's channel streams: when a message reaches Redis.

    The latency phase's payloads carry the publisher's send time (fanout.payload), so the
    delay from the publisher to Redis is read the way the subscribers read theirs.
    """

    def __init__(self, url: str, pattern: str) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.pattern = pattern
        self.lat: array[int] = array("q")
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.pubsub.psubscribe(self.pattern)
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        tag = b'"' + bytes((fanout.TAG_LATENCY,))
        while True:
            message = await self.pubsub.get_message(timeout=None)
            if message is None or message["type"] != "pmessage":
                continue
            now = time.monotonic_ns()
            data: bytes = message["data"]
            at = data.find(tag, data.find(b"\n"))  # the body: the message's data, as JSON
            if at >= 0:
                sent = at + len(tag) + fanout.SEQ_DIGITS
                self.lat.append(now - int(data[sent : sent + fanout.TS_DIGITS]))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        await self.client.aclose()


class ClusterRun(fanout.Run):
    """fanout.py's workload, with the subscribers spread over `nodes` server processes.

    ``nodes`` separate ``serve`` processes (joined over Redis when ``redis`` is given), each
    one ``--workers server_workers`` when that is above 1. Node 1 is ``self.server``, where
    the publisher connects; fanout.py's CPU figures about "the server" would be node 1's
    alone, so ``throughput`` adds the sum over every server process (``chosen`` drops them).
    """

    def __init__(
        self,
        args: argparse.Namespace,
        setup: str,
        n: int,
        deadline: float,
        *,
        nodes: int = 1,
        server_workers: int = 1,
        redis: RedisServer | None = None,
        plan: list[tuple[int, int, int]] | None = None,
    ) -> None:
        super().__init__(args, "metered-realtime", n, deadline)
        self.result = {"setup": setup, **self.result}
        self.nodes = nodes
        self.server_workers = server_workers
        self.redis = redis
        self.fixed_plan = plan
        self.procs: list[asyncio.subprocess.Process] = []
        self.logs: list[IO[bytes]] = []  # the nodes' stderr
        self.ports: list[int] = []
        self.pids: list[int] = []  # every server process, --workers children included
        self.node_ids: dict[int, str] = {}  # pid -> node id, from /admin/nodes
        self.started_at: dict[int, int | None] = {}  # pid -> start time, to know it is ours
        self.latency_rate: float | None = None  # publishes/s for the latency phase, if fixed
        self.prefix = f"bench-{os.getpid()}-{next(PREFIXES)}"  # Redis keys of this run only

    # --- servers --------------------------------------------------------------------

    async def start_server(self) -> None:
        env = dict(os.environ)
        env["METERED_REALTIME_RATE_PER_SECOND"] = str(self.args.server_rate_limit)
        env["METERED_REALTIME_RATE_BURST"] = str(self.args.server_rate_limit)
        env["METERED_REALTIME_ADMIN_TOKEN"] = ADMIN_TOKEN
        env["METERED_REALTIME_REDIS_PREFIX"] = self.prefix
        exe = shutil.which("metered-realtime", path=str(Path(sys.executable).parent))
        db = os.path.join(self.tmp, "cluster.db")  # one store: node 2 sees node 1's dev key
        pipes: dict[str, Any] = {"env": env, "stdout": asyncio.subprocess.PIPE}
        pipes["stdin"] = asyncio.subprocess.DEVNULL
        for i in range(self.nodes):
            cmd = [exe or "metered-realtime", "serve", "--host", HOST, "--port", "0"]
            cmd += ["--db", db, "--log-level", "warning"]
            if i == 0:
                cmd.append("--dev")
            if self.redis is not None:
                cmd += ["--redis", self.redis.url]
            if self.server_workers > 1:
                cmd += ["--workers", str(self.server_workers)]
            stderr = open(os.path.join(self.tmp, f"node{i + 1}.log"), "wb")  # noqa: SIM115
            self.logs.append(stderr)
            proc = await asyncio.create_subprocess_exec(*cmd, stderr=stderr, **pipes)
            STARTED.append(proc)
            self.procs.append(proc)
            banner = await self._banner(proc, {"url", "key"} if i == 0 else {"url"}, i + 1)
            port = urlsplit(banner["url"]).port
            if port is None:
                raise RuntimeError(f"no port in {banner['url']!r}")
            self.ports.append(port)
            if i == 0:
                self.key = banner["key"]
        self.server, self.port = self.procs[0], self.ports[0]
        await self._await_nodes()

    async def _banner(
        self, proc: asyncio.subprocess.Process, need: set[str], number: int
    ) -> dict[str, str]:
        """The `name: value` lines a node prints at start, until those in `need` are seen."""
        assert proc.stdout is not None
        seen: dict[str, str] = {}
        while not need <= seen.keys():
            line = await asyncio.wait_for(proc.stdout.readline(), self.left(30))
            if not line:
                raise RuntimeError(f"node {number} exited at start; see {self.tmp}")
            name, colon, value = line.decode().partition(":")
            if colon:
                seen[name.strip()] = value.strip()
        return seen

    async def _await_nodes(self) -> None:
        """Wait until every node lists them all in /admin/nodes; learn their pids and ids."""
        want = self.nodes * self.server_workers
        stop = time.monotonic() + self.left(30)
        listed: list[dict[str, Any]] = []
        for port in self.ports:
            while True:
                with contextlib.suppress(OSError, http.client.HTTPException):
                    listed = await asyncio.to_thread(_get_nodes, port)
                if len(listed) >= want:
                    break
                if time.monotonic() > stop:
                    raise RuntimeError(f"port {port} lists {len(listed)} of {want} nodes")
                await asyncio.sleep(0.1)  # a node still starting or not yet heard of: poll
        self.node_ids = {int(node["pid"]): str(node["id"]) for node in listed}
        self.pids = sorted({p.pid for p in self.procs} | set(self.node_ids))
        self.started_at = {pid: start_time(pid) for pid in self.pids}
        self.result["server_pids"] = self.pids

    # --- connections -------------------------------------------------------------------

    def plan(self) -> list[tuple[int, int, int]]:
        """(worker, node, connections): each worker on one node when they divide evenly."""
        if self.fixed_plan is not None:
            return self.fixed_plan
        workers, nodes = len(self.workers), len(self.ports)
        if workers % nodes == 0:
            pairs = [(w, w % nodes) for w in range(workers)]
        else:
            pairs = [(w, node) for w in range(workers) for node in range(nodes)]
        shares = split(self.n, len(pairs))
        return [(w, node, count) for (w, node), count in zip(pairs, shares, strict=True)]

    async def connect_all(self) -> None:
        plan = [entry for entry in self.plan() if entry[2] > 0]
        concurrency = max(1, self.args.connect_concurrency // len(plan))
        command = {"cmd": "open", "host": HOST, "path": self.path, "timeout": 30.0}
        command.update(concurrency=concurrency, expect_welcome=True)
        t0 = time.monotonic()
        for w, node, count in plan:
            await self.workers[w].send(**command, port=self.ports[node], count=count)
        opened: dict[int, int] = {}  # a worker reports all its connections so far
        errors: list[str] = []
        for w, _, _ in plan:
            report = await self.workers[w].expect("opened", self.left(180))
            opened[w] = max(opened.get(w, 0), int(report["n"]))
            errors += report["errors"]
        self.result["connect_s"] = round(time.monotonic() - t0, 3)
        want = sum(count for _, _, count in plan)
        if sum(opened.values()) != want:
            raise RuntimeError(f"only {sum(opened.values())}/{want} connections: {errors[:3]}")
        conn = await fanout.open_conn(
            HOST, self.ports[0], self.path, self._publisher_text, True, self.left(10)
        )
        self.publisher = fanout.Publisher(conn, True)
        listed = await asyncio.to_thread(_get_nodes, self.ports[0])
        self.result["connections_by_node"] = {n["id"]: n["connections"] for n in listed}

    # --- measurements --------------------------------------------------------------------

    async def throughput(self) -> None:
        """fanout.py's closed loop, with the CPU of every server process summed."""
        before = {pid: fanout.cpu_seconds(pid) for pid in self.pids}
        redis_before = fanout.cpu_seconds(self.redis.pid) if self.redis is not None else 0.0
        delivered, t0 = self.delivered(), time.monotonic()
        await super().throughput()  # warm-up, window, then until everything sent is delivered
        deliveries = max(1, self.delivered() - delivered)
        elapsed = time.monotonic() - t0
        used = {pid: fanout.cpu_seconds(pid) - cpu for pid, cpu in before.items()}
        total = sum(used.values())
        self.result["cpu_s_per_100k"] = round(total / deliveries * 1e5, 4)
        self.result["cpu_util"] = round(total / elapsed, 3)
        if len(used) > 1:
            self.result["cpu_s_per_100k_by_process"] = {
                self.node_ids.get(pid, f"parent-{pid}"): round(cpu / deliveries * 1e5, 4)
                for pid, cpu in used.items()
            }
        if self.redis is not None:
            redis_cpu = fanout.cpu_seconds(self.redis.pid) - redis_before
            self.result["redis_cpu_s_per_100k"] = round(redis_cpu / deliveries * 1e5, 4)

    async def latency(self) -> None:
        """fanout.py's latency phase twice: at light load, then at the common rate."""
        sustained = self.max_rate
        if self.args.light_rate > 0:
            self.max_rate = self.args.light_rate * 2 * self.n  # fanout publishes max_rate/2/n
            await self._latency_phase()
            self.result["light_load"] = {
                key: self.result.pop(key) for key in LATENCY_KEYS if key in self.result
            }
            for w in self.workers:  # fanout.py's phase ends with progress reports off
                await w.send(cmd="progress", interval=0.005)
                await w.expect("ok", self.left(10))
        self.max_rate = sustained if self.latency_rate is None else self.latency_rate * 2 * self.n
        await self._latency_phase()

    async def _latency_phase(self) -> None:
        tap = None
        if self.redis is not None:
            tap = RedisTap(self.redis.url, f"{self.prefix}:c:*")
            await tap.start()
        try:
            await super().latency()
        finally:
            if tap is not None:
                await tap.stop()
        if tap is not None and tap.lat:
            self.result["redis_p50_ms"] = percentile_ms(tap.lat, 50)
        if len(self.ports) > 1:
            self.result["p50_ms_by_node"] = self._p50_by_node()

    def _p50_by_node(self) -> list[float | None]:
        """p50 of the subscribers on each node (workers that hold connections to one only)."""
        nodes_of: dict[int, set[int]] = {}
        for w, node, _ in self.plan():
            nodes_of.setdefault(w, set()).add(node)
        by_node: list[float | None] = []
        for node in range(len(self.ports)):
            lat: array[int] = array("q")
            for w in (w for w, nodes in nodes_of.items() if nodes == {node}):
                # fanout.py's workers leave lat-<worker>-<pid>.bin in the run's directory.
                for path in glob.glob(os.path.join(self.tmp, f"lat-{w}-*.bin")):
                    with open(path, "rb") as fh:
                        lat.frombytes(fh.read())
            by_node.append(percentile_ms(lat, 50) if lat else None)
        return by_node

    # --- the whole run -------------------------------------------------------------------

    async def session(self, measure: Callable[[], Awaitable[None]]) -> dict[str, Any]:
        """As fanout.Run.execute, with `measure` instead of its phases: set up, measure, stop."""
        steps = (self.quiet, self.start_server, self.start_workers, self.connect_all, measure)
        try:
            for step in steps:
                await step()
        except Exception as exc:  # report it, and go on with the next measurement
            self.result.update(error=f"{type(exc).__name__}: {exc}", node_log_tail=self.log_tail())
            log(f"  failed: {self.result['error']}")
        finally:
            await self.stop()
        return self.result

    async def quiet(self) -> None:
        """Wait (bounded) for other load on the machine to pass, as fanout.py does."""
        wait = min(self.args.quiet_wait, self.left(60) / 4)
        busy = await fanout.quiet_machine(self.args.quiet_below, wait)
        self.result["background_busy_cores"] = busy

    def log_tail(self, lines: int = 5) -> dict[str, list[str]]:
        """The last lines each node wrote on stderr (its directory goes at the end)."""
        tails = {}
        for path in sorted(glob.glob(os.path.join(self.tmp, "node*.log"))):
            with open(path, errors="replace") as fh:
                tails[Path(path).stem] = fh.read().splitlines()[-lines:]
        return tails

    async def formation(self) -> None:
        await self.form()
        log(f"  connected in {self.result['connect_s']} s, formed in {self.result['form_s']} s")

    async def stop(self) -> None:
        others = [p for p in self.procs if p is not self.server]
        await asyncio.gather(super().stop(), *(fanout._reap(p, 10, signal.SIGTERM) for p in others))
        for proc in self.procs:
            with contextlib.suppress(ValueError):
                STARTED.remove(proc)
        for fh in self.logs:
            fh.close()
        # --workers children end with their parent; make sure of it.
        stop = time.monotonic() + 10
        for pid, started in self.started_at.items():
            if started is None:
                continue
            while start_time(pid) == started and time.monotonic() < stop:
                await asyncio.sleep(0.1)  # draining: poll
            if start_time(pid) == started:
                log(f"  server process {pid} outlived its parent: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


class Observer:
    """One member that tracks the channel's membership from the presence frames it gets."""

    def __init__(self) -> None:
        self.acked = False
        self.members: set[str] = set()
        self.left_at: dict[str, float] = {}
        self.changed = asyncio.Event()

    def on_text(self, conn: fanout.Conn, buf: bytes, start: int, end: int) -> None:
        frame = json.loads(buf[start:end])
        if frame.get("type") == "ack":
            self.acked = True
        elif frame.get("type") == "presence":
            now = time.monotonic()
            self.members.update(entry["peerId"] for entry in frame.get("joined", []))
            for entry in frame.get("left", []):
                self.members.discard(entry["peerId"])
                self.left_at[entry["peerId"]] = now
        else:
            return
        self.changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float) -> bool:
        stop = time.monotonic() + timeout
        while not condition():
            self.changed.clear()
            remaining = stop - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return True


class KillRun(ClusterRun):
    """M members on node 1 (worker 0 + an observer), M on the victim: node 2, or worker 1."""

    def __init__(
        self,
        args: argparse.Namespace,
        setup: str,
        members: int,
        deadline: float,
        *,
        nodes: int,
        redis: RedisServer | None,
    ) -> None:
        victim_node = nodes - 1
        plan = [(0, 0, members - 1), (1, victim_node, members)]
        super().__init__(
            args, setup, 2 * members - 1, deadline, nodes=nodes, redis=redis, plan=plan
        )
        self.members = members
        self.result["members"] = 2 * members  # the observer and the workers' connections
        self.victim = "node 2" if nodes > 1 else "the client process holding half the members"
        self.observer_conn: fanout.Conn | None = None

    async def _subscribe(
        self, worker: fanout.WorkerHandle, others: int, observer: Observer
    ) -> None:
        await worker.send(cmd="subscribe", channel=fanout.CHANNEL, members=others, timeout=30.0)
        settled = await worker.expect("settled", self.left(40))
        if not settled["ok"]:
            conn = self.observer_conn
            closed = None if conn is None or not conn.closed.done() else conn.closed.result()
            raise RuntimeError(
                f"worker {worker.index} did not settle: {settled}; the observer holds "
                f"{len(observer.members)} members, closed: {closed}"
            )

    async def measure(self) -> None:
        m = self.members
        observer = Observer()
        self.observer_conn = await fanout.open_conn(
            HOST, self.ports[0], self.path, observer.on_text, True, self.left(10)
        )
        frame = {"type": "subscribe", "channel": fanout.CHANNEL, "requestId": "observer"}
        self.observer_conn.send_text(json.dumps(frame))
        if not await observer.until(lambda: observer.acked, self.left(10)):
            raise RuntimeError("the observer's subscribe was not acknowledged")
        stayers, victims = self.workers
        await self._subscribe(stayers, m - 1, observer)  # the other stayers and the observer
        if not await observer.until(lambda: len(observer.members) >= m - 1, self.left(30)):
            raise RuntimeError(f"the observer saw {len(observer.members)}/{m - 1} members")
        staying = set(observer.members)
        await self._subscribe(victims, 2 * m - 1, observer)
        if not await observer.until(lambda: len(observer.members) >= 2 * m - 1, self.left(30)):
            raise RuntimeError(f"the observer saw {len(observer.members)}/{2 * m - 1} members")
        doomed = observer.members - staying
        victim = self.procs[1] if self.nodes > 1 else victims.proc
        log(f"  {len(observer.members)} members seen; SIGKILL {victim.pid}, {len(doomed)} go")
        t0 = time.monotonic()
        victim.kill()
        done = await observer.until(lambda: not doomed & observer.members, self.left(30))
        gone = [observer.left_at[p] - t0 for p in doomed if p in observer.left_at]
        self.result["members_killed"] = len(doomed)
        self.result["left_seen"] = len(gone)
        self.result["first_left_s"] = round(min(gone), 3) if gone else None
        self.result["converge_s"] = round(max(gone), 3) if done else None
        log(f"  left seen for {len(gone)}/{len(doomed)} in {self.result['converge_s']} s")

    async def stop(self) -> None:
        if self.observer_conn is not None and self.observer_conn.transport is not None:
            self.observer_conn.transport.abort()
        await super().stop()


# --------------------------------------------------------------------------------------------
# The four measurements
# --------------------------------------------------------------------------------------------


def chosen(tries: list[dict[str, Any]]) -> dict[str, Any]:
    """fanout.py's pick (the fastest try, every try's rate beside it), plus every try's CPU."""
    result = fanout.best(tries)
    cpu = [t["cpu_s_per_100k"] for t in tries if isinstance(t.get("cpu_s_per_100k"), float)]
    result["tries_cpu_s_per_100k"] = cpu
    result["median_cpu_s_per_100k"] = round(statistics.median(cpu), 4) if cpu else None
    # fanout.py's figures on "the server" would be node 1's alone (or the --workers parent's).
    for key in ("server_cpu_s_per_100k", "server_cpu_util"):
        result.pop(key, None)
    return result


def ratios(cluster: dict[str, Any], one: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: fanout.ratio(cluster.get(key), one.get(key)) for key in keys}


def difference(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return round(a - b, 3)
    return None


async def alternate(
    args: argparse.Namespace,
    setups: dict[str, dict[str, Any]],
    n: int,
    deadline: float,
    measure: Callable[[ClusterRun], Awaitable[dict[str, Any]]],
) -> dict[str, list[dict[str, Any]]]:
    """``--repeat`` rounds of every setup in turn, so drift on the machine hits all alike.

    The first latency phase's rate (or ``--latency-rate``) is every later one's.
    """
    tries: dict[str, list[dict[str, Any]]] = {name: [] for name in setups}
    rate = args.latency_rate
    for _ in range(args.repeat):
        for name, options in setups.items():
            run = ClusterRun(args, name, n, deadline, **options)
            run.latency_rate = rate
            log(f"{name}: {n} subscribers, {run.nodes} node(s) x {run.server_workers}")
            result = await measure(run)
            tries[name].append(result)
            if rate is None and isinstance(result.get("latency_publishes_per_s"), float):
                rate = result["latency_publishes_per_s"]
    return tries


async def fanout_and_workers(
    args: argparse.Namespace, deadline: float, redis: RedisServer
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Measurements 1 and 4, in alternating rounds that share the one-node tries."""
    setups: dict[str, dict[str, Any]] = {
        "one_node": {},
        "two_nodes": {"nodes": 2, "redis": redis},
        "server_workers": {"server_workers": args.server_workers, "redis": redis},
    }
    tries = await alternate(args, setups, args.subscribers, deadline, lambda run: run.execute())
    one, two, workers = (chosen(tries[name]) for name in setups)
    keys = ("deliveries_per_s", "median_cpu_s_per_100k", "p50_ms", "p99_ms")
    fan = {
        "subscribers": args.subscribers,
        "one_node": one,
        "two_nodes": two,
        "ratio": ratios(two, one, keys),
        "cpu_per_delivery_ratio": fanout.ratio(
            two.get("median_cpu_s_per_100k"), one.get("median_cpu_s_per_100k")
        ),
        "added_p50_ms": difference(two.get("p50_ms"), one.get("p50_ms")),
    }
    by_node = two.get("p50_ms_by_node") or [None, None]
    fan["added_p50_ms_node2_vs_node1"] = difference(by_node[-1], by_node[0])
    fan["added_p50_ms_node2_vs_one_node"] = difference(by_node[-1], one.get("p50_ms"))
    shared = ("deliveries_per_s", "tries_deliveries_per_s", "median_cpu_s_per_100k", "p50_ms")
    work = {
        "processes": args.server_workers,
        "one_process": {key: one.get(key) for key in shared} | {"same_as": "fanout.one_node"},
        "server_workers": workers,
        "ratio": ratios(workers, one, keys),
    }
    return fan, work


async def presence_formation(
    args: argparse.Namespace, deadline: float, redis: RedisServer
) -> dict[str, Any]:
    """Measurement 2: presence formation of one large channel; the fastest of the tries."""
    setups: dict[str, dict[str, Any]] = {"one_node": {}, "two_nodes": {"nodes": 2, "redis": redis}}
    tries = await alternate(
        args, setups, args.members, deadline, lambda run: run.session(run.formation)
    )
    results = {}
    for name, done in tries.items():
        formed = [t for t in done if isinstance(t.get("form_s"), float)]
        results[name] = dict(min(formed, key=lambda t: t["form_s"]) if formed else done[-1])
        results[name]["tries_form_s"] = [t.get("form_s") for t in done]
    one, two = results["one_node"], results["two_nodes"]
    return {
        "members": args.members,
        **results,
        "ratio": ratios(two, one, ("connect_s", "form_s")),
    }


async def node_kill(
    args: argparse.Namespace, deadline: float, redis: RedisServer
) -> dict[str, Any]:
    """Measurement 3: presence convergence after a SIGKILL."""
    two_workers = argparse.Namespace(**{**vars(args), "workers": 2})
    results = {}
    for name, nodes in (("one_node", 1), ("two_nodes", 2)):
        run = KillRun(
            two_workers,
            name,
            args.kill_members,
            deadline,
            nodes=nodes,
            redis=redis if nodes > 1 else None,
        )
        log(f"{name}: {2 * args.kill_members} members, SIGKILL of {run.victim}")
        results[name] = await run.session(run.measure)
    one, two = results["one_node"], results["two_nodes"]
    return {
        "members_per_node": args.kill_members,
        **results,
        "ratio": ratios(two, one, ("first_left_s", "converge_s")),
    }


def summary(out: dict[str, Any]) -> dict[str, Any]:
    fan = out.get("fanout", {})
    form = out.get("presence_formation", {})
    kill = out.get("node_kill", {})
    work = out.get("server_workers", {})
    two = fan.get("two_nodes", {})
    light_one = fan.get("one_node", {}).get("light_load") or {}
    light_two = two.get("light_load") or {}
    cpu_ratio = fan.get("cpu_per_delivery_ratio")
    added = fan.get("added_p50_ms")
    form_s = form.get("two_nodes", {}).get("form_s")
    return {
        "cpu_per_delivery_ratio": cpu_ratio,
        "cpu_per_delivery_ratio_goal_le_1.15": None if cpu_ratio is None else cpu_ratio <= 1.15,
        "p50_ms_one_node": fan.get("one_node", {}).get("p50_ms"),
        "p50_ms_two_nodes": two.get("p50_ms"),
        "added_p50_ms": added,
        "added_p50_goal_lt_1ms": None if added is None else added < 1.0,
        "p50_ms_two_nodes_by_node": two.get("p50_ms_by_node"),
        "redis_arrival_p50_ms": two.get("redis_p50_ms"),
        "light_p50_ms_one_node": light_one.get("p50_ms"),
        "light_p50_ms_two_nodes": light_two.get("p50_ms"),
        "light_p50_ms_two_nodes_by_node": light_two.get("p50_ms_by_node"),
        "light_redis_arrival_p50_ms": light_two.get("redis_p50_ms"),
        "deliveries_per_s_ratio": fan.get("ratio", {}).get("deliveries_per_s"),
        "form_s_one_node": form.get("one_node", {}).get("form_s"),
        "form_s_two_nodes": form_s,
        "form_goal_le_3s": None if form_s is None else form_s <= 3.0,
        "kill_converge_s_one_node": kill.get("one_node", {}).get("converge_s"),
        "kill_converge_s_two_nodes": kill.get("two_nodes", {}).get("converge_s"),
        "server_workers_deliveries_per_s_ratio": work.get("ratio", {}).get("deliveries_per_s"),
    }


async def controller(args: argparse.Namespace, out: dict[str, Any]) -> None:
    fanout.raise_nofile(max(args.subscribers, args.members, 2 * args.kill_members) + 1024)
    deadline = time.monotonic() + args.budget
    tmp = tempfile.mkdtemp(prefix="cluster-")
    redis = RedisServer(tmp)
    try:
        await redis.start(10)
        out["redis_version"] = redis.version
        if "fanout" in args.parts:
            out["fanout"], out["server_workers"] = await fanout_and_workers(args, deadline, redis)
        if "formation" in args.parts:
            out["presence_formation"] = await presence_formation(args, deadline, redis)
        if "kill" in args.parts:
            out["node_kill"] = await node_kill(args, deadline, redis)
    finally:
        await redis.stop()
        await stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


async def bounded(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """The controller, cut off (cleaning up) at the budget plus a margin, or on SIGTERM."""
    task = asyncio.ensure_future(controller(args, out))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await asyncio.wait_for(task, args.budget + 60)
    except asyncio.TimeoutError:
        out["error"] = "stopped at the budget's end"
    except asyncio.CancelledError:
        out["error"] = "interrupted"


QUICK = {
    "subscribers": 200,
    "members": 500,
    "kill_members": 50,
    "repeat": 1,
    "warmup": 0.5,
    "duration": 1.5,
    "quiet_wait": 0.0,
    "light_rate": 20.0,
    "budget": 120.0,
}
FULL = {
    "subscribers": 1000,
    "members": 5000,
    "kill_members": 200,
    "repeat": 2,
    "warmup": 1.0,
    "duration": 4.0,
    "quiet_wait": 10.0,
    "light_rate": 5.0,
    "budget": 900.0,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="cluster benchmark (one JSON line on stdout)")
    parser.add_argument("--quick", action="store_true", help="everything small, about 1 min")
    parser.add_argument("--subscribers", type=int, help="fan-out subscribers (1000)")
    parser.add_argument("--members", type=int, help="presence formation members (5000)")
    parser.add_argument("--kill-members", type=int, help="node kill: members per node (200)")
    parser.add_argument("--repeat", type=int, help="fan-out tries per setup (2)")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (1)")
    parser.add_argument("--duration", type=float, help="seconds per measurement (4)")
    parser.add_argument("--quiet-wait", type=float, help="max wait for a quiet machine (10)")
    parser.add_argument("--budget", type=float, help="whole-run time cap, s (900)")
    parser.add_argument(
        "--parts",
        type=lambda text: set(text.split(",")),
        default={"fanout", "formation", "kill"},
        help="comma-separated: fanout (measurements 1 and 4), formation, kill (default all)",
    )
    parser.add_argument("--server-workers", type=int, default=2, help="serve --workers N")
    parser.add_argument(
        "--subscriber-procs",
        dest="workers",
        type=int,
        default=2,
        help="subscriber processes (fanout.py's workers); 2 puts one on each node",
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        help="publishes/s in every latency phase (default: half the first one-node rate)",
    )
    parser.add_argument(
        "--light-rate",
        type=float,
        help="publishes/s of a first, light-load latency phase (5; 0: none)",
    )
    parser.add_argument("--window", type=int, default=32, help="messages in flight")
    parser.add_argument("--lazy-ms", type=float, default=2.0, help="see bench/fanout.py")
    parser.add_argument("--connect-concurrency", type=int, default=64)
    parser.add_argument("--server-rate-limit", type=float, default=1e6)
    parser.add_argument("--quiet-below", type=float, default=0.3, help="busy cores")
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.kill_members < 2 or args.members < 2 or args.subscribers < 2:
        parser.error("--subscribers, --members and --kill-members need at least 2")
    return args


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    out: dict[str, Any] = {
        "bench": "cluster",
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "repeat": args.repeat,
        "duration_s": args.duration,
        "window": args.window,
        "lazy_ms": args.lazy_ms,
        "subscriber_procs": args.workers,
        "server_overrides": {"rate_per_second": args.server_rate_limit},
    }
    fanout._event_loop_runner()(bounded(args, out))
    out["summary"] = summary(out)
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(out, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
