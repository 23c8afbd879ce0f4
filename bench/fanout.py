"""Fan-out benchmark: one publisher, N subscribers on one channel, 128-byte payloads.

For each N (default 1000 and 5000) it runs the same workload against

* our server, `metered-realtime serve --dev` as its own process, and
* the baseline, a bare `websockets` broadcast server (bench/baseline_server.py),

and measures

* ``connect_s``: all N WebSocket connections open (our server: each has its welcome);
* ``form_s`` (our server only): from N simultaneous subscribes to every subscriber holding its
  ack and the full membership (snapshot + presence deltas = N - 1 other peers);
* ``deliveries_per_s``: the highest sustained delivery rate, found closed-loop: the publisher
  keeps at most ``--window`` messages in flight per subscriber, so nothing queues without bound
  and the rate is what the server and the subscribers actually sustain;
* ``p50_ms`` / ``p90_ms`` / ``p99_ms``: publish -> receive latency over every delivery,
  publishing open-loop at half that rate (or, measured first, at ``--latency-deliveries``);
* ``server_cpu_s_per_100k``: the server process's user+system CPU seconds per 100,000 deliveries
  during the throughput window (read from /proc/<pid>/stat), and ``server_cpu_util``.

Each server runs ``--repeat`` times (alternating with the other one, a fresh process each time);
the try with the highest rate is reported, with every try's rate beside it. The machine's load
from other processes just before a try is ``background_busy_cores``: rates and latencies from a
busy machine are low and noisy, while CPU seconds per delivery stay comparable.

Subscribers are raw WebSocket connections in worker processes (default: one per core not taken
by the server), using a minimal client written here: server frames are counted in place and only
latency-phase frames are parsed. ``subscriber_cpu_util`` is their CPU use; ``subscriber_bound``
says they, not the server, were saturated. The publisher sends more than the server's default
200 frames/s per connection, so our server runs with ``METERED_REALTIME_RATE_PER_SECOND`` and
``_RATE_BURST`` raised (``--server-rate-limit``). Loopback only; bounded by ``--budget``.
Prints progress on stderr and ONE JSON line on stdout.

    .venv/bin/python bench/fanout.py                         # N = 1000 and 5000
    .venv/bin/python bench/fanout.py --subscribers 1000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHANNEL = "bench"
PAYLOAD_BYTES = 128  # compact JSON of `data` (a string: 126 characters plus the quotes)
SEQ_DIGITS = 12
TS_DIGITS = 19
MSG_PREFIX = b'{"type":"message"'
MSG_TYPE = b'"type":"message"'
DATA_KEY = b'"data":"'
TAG_LATENCY = ord("L")
FAKE_FROM = "B" * 20  # baseline frames carry a `from` as long as a real peer id
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def log(msg: str) -> None:
    print(f"[fanout {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def raise_nofile(need: int) -> int:
    """Raise RLIMIT_NOFILE to at least `need` (up to the hard limit, or past it as root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    target = need if hard == resource.RLIM_INFINITY else max(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(target, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    # After the ")" closing comm: state is field 3, utime field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat", "rb") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


def payload(tag: str, seq: int, ts_ns: int) -> str:
    head = f"{tag}{seq:0{SEQ_DIGITS}d}{ts_ns:0{TS_DIGITS}d}"
    return head + "x" * (PAYLOAD_BYTES - 2 - len(head))


# --------------------------------------------------------------------------------------------
# A minimal WebSocket client (RFC 6455): text frames out (masked), frames in (unmasked).
# --------------------------------------------------------------------------------------------


def client_frame(data: bytes, opcode: int = 0x1) -> bytes:
    n = len(data)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    if n == 0:
        return head + key
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return head + key + masked


class Conn(asyncio.Protocol):
    """One client connection. `on_text(conn, buf, start, end)` sees each text frame in place."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        on_text: Callable[[Conn, bytes, int, int], None],
        expect_welcome: bool,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.on_text = on_text
        self.expect_welcome = expect_welcome
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.handshaking = True
        self.key = base64.b64encode(os.urandom(16))
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int | None] = loop.create_future()
        self.acked = False
        self.members = 0
        self.settled = False
        self.close_code: int | None = None
        self.opened = False  # handshake done and, with expect_welcome, the welcome seen
        self.welcome = b""
        # Fast path: message frames are counted into `sink.delivered` without a call, unless
        # `sink.latency_on` (then on_text sees them).
        self.sink: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.write(
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (self.path.encode(), self.host.encode(), self.port, self.key)
        )

    def send_text(self, text: str | bytes) -> None:
        assert self.transport is not None
        data = text.encode() if isinstance(text, str) else text
        self.transport.write(client_frame(data))

    def _handshake(self, data: bytes) -> bytes | None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > 65536:
                self._fail(ConnectionError("oversized handshake response"))
            return None
        head, rest = self.buf[:end], self.buf[end + 4 :]
        self.buf = b""
        self.handshaking = False
        status = head.split(b"\r\n", 1)[0]
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest())
        if b" 101 " not in status + b" " or accept not in head:
            self._fail(ConnectionError(f"upgrade refused: {status.decode(errors='replace')}"))
            return None
        if not self.expect_welcome and not self.ready.done():
            self.opened = True
            self.ready.set_result(None)
        return rest

    def _fail(self, exc: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.handshaking:
            rest = self._handshake(data)
            if not rest:
                return
            data = rest
        buf = self.buf + data if self.buf else data
        n = len(buf)
        pos = 0
        on_text = self.on_text
        sink = self.sink
        fast = sink is not None and not sink.latency_on
        counted = 0
        while n - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
            if b1 < 126:
                start = pos + 2
            elif b1 == 126:
                if n - pos < 4:
                    break
                b1 = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 4
            else:
                if n - pos < 10:
                    break
                b1 = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + b1
            if end > n:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 0x1:
                if fast and buf.startswith(MSG_PREFIX, start):
                    counted += 1
                elif self.opened:
                    on_text(self, buf, start, end)
                else:
                    self.opened = True
                    self.welcome = buf[start:end]
                    self.ready.set_result(None)
            elif opcode == 0x9:  # ping -> pong
                self.transport.write(client_frame(buf[start:end], 0xA))  # type: ignore[union-attr]
            elif opcode == 0x8:  # close: answer and let the server close TCP
                code = int.from_bytes(buf[start : start + 2], "big") if end - start >= 2 else 1005
                self.close_code = code
                with contextlib.suppress(Exception):
                    self.transport.write(client_frame(buf[start : start + 2], 0x8))  # type: ignore[union-attr]
            # continuation / binary / pong frames are not used by either server here
            pos = end
        if counted:
            sink.delivered += counted
        self.buf = buf[pos:] if pos < n else b""

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)


async def open_conn(
    host: str,
    port: int,
    path: str,
    on_text: Callable[[Conn, bytes, int, int], None],
    expect_welcome: bool,
    timeout: float,
) -> Conn:
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(lambda: Conn(host, port, path, on_text, expect_welcome), host, port),
        timeout,
    )
    await asyncio.wait_for(asyncio.shield(conn.ready), timeout)
    return conn


# --------------------------------------------------------------------------------------------
# Worker process: a share of the subscribers. JSON commands on stdin, JSON lines on stdout.
# --------------------------------------------------------------------------------------------


class Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.conns: list[Conn] = []
        self.delivered = 0
        self.latency_on = False
        self.lat = array("q")
        self.expected_members = 0
        self.settled = 0
        self.max_members = 0
        self.lost = 0
        self.settle_waiter: asyncio.Future[None] | None = None
        self.progress_task: asyncio.Task[None] | None = None
        self.lazy_s = 0.0
        self.lazy_handle: asyncio.Handle | None = None

    def out(self, **msg: Any) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    def on_text(self, conn: Conn, buf: bytes, start: int, end: int) -> None:
        if buf.startswith(MSG_PREFIX, start) or buf.find(MSG_TYPE, start, start + 64) >= 0:
            self.delivered += 1
            if self.latency_on:
                i = buf.find(DATA_KEY, start, end) + len(DATA_KEY)
                if buf[i] == TAG_LATENCY:
                    t0 = i + 1 + SEQ_DIGITS
                    self.lat.append(time.monotonic_ns() - int(buf[t0 : t0 + TS_DIGITS]))
            return
        frame = buf[start:end]
        if b'"presence"' in frame:
            if b'"left":[]' in frame:
                conn.members += frame.count(b'"peerId"')
            else:
                parsed = json.loads(frame)
                conn.members += len(parsed.get("joined", [])) - len(parsed.get("left", []))
            self.max_members = max(self.max_members, conn.members)
        elif b'"ack"' in frame:
            conn.acked = True
        else:
            return
        if not conn.settled and conn.acked and conn.members >= self.expected_members:
            conn.settled = True
            self.settled += 1
            waiter = self.settle_waiter
            if self.settled == len(self.conns) and waiter is not None and not waiter.done():
                waiter.set_result(None)

    def on_lost(self, fut: asyncio.Future[int | None]) -> None:
        self.lost += 1

    async def open(self, cmd: dict[str, Any]) -> None:
        sem = asyncio.Semaphore(int(cmd["concurrency"]))
        failures: list[str] = []

        async def one() -> None:
            async with sem:
                try:
                    conn = await open_conn(
                        cmd["host"],
                        int(cmd["port"]),
                        cmd["path"],
                        self.on_text,
                        bool(cmd["expect_welcome"]),
                        float(cmd["timeout"]),
                    )
                except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
                    failures.append(repr(exc))
                    return
                conn.closed.add_done_callback(self.on_lost)
                conn.sink = self
                self.conns.append(conn)

        await asyncio.gather(*(one() for _ in range(int(cmd["count"]))))
        self.out(ev="opened", n=len(self.conns), failed=len(failures), errors=failures[:3])

    async def subscribe(self, cmd: dict[str, Any]) -> None:
        self.expected_members = int(cmd["members"])
        self.settle_waiter = asyncio.get_running_loop().create_future()
        frame_tpl = '{"type":"subscribe","channel":"%s","requestId":"w%d-%d"}'
        for i, conn in enumerate(self.conns):
            conn.send_text(frame_tpl % (cmd["channel"], self.index, i))
        try:
            await asyncio.wait_for(self.settle_waiter, float(cmd["timeout"]))
            self.out(ev="settled", ok=True)
        except asyncio.TimeoutError:
            self.out(ev="settled", ok=False, **self.settle_state())

    def settle_state(self) -> dict[str, Any]:
        members = [c.members for c in self.conns]
        return {
            "acked": sum(c.acked for c in self.conns),
            "settled": self.settled,
            "min_members": min(members) if members else 0,
            "max_members": self.max_members,
        }

    async def progress(self, interval: float) -> None:
        while True:
            self.out(ev="p", d=self.delivered)
            await asyncio.sleep(interval)

    def _lazy(self) -> None:
        # Block the loop briefly once per iteration: frames pile up in the socket buffers and
        # each read then takes many at once, so subscribers spend far fewer syscalls per
        # delivery. Only for the throughput phase; it would add to measured latency.
        time.sleep(self.lazy_s)
        self.lazy_handle = asyncio.get_running_loop().call_soon(self._lazy)

    def set_lazy(self, seconds: float) -> None:
        if self.lazy_handle is not None:
            self.lazy_handle.cancel()
            self.lazy_handle = None
        self.lazy_s = seconds
        if seconds > 0:
            self.lazy_handle = asyncio.get_running_loop().call_soon(self._lazy)

    def stats(self, lat_dir: str) -> None:
        path = os.path.join(lat_dir, f"lat-{self.index}-{os.getpid()}.bin")
        with open(path, "wb") as fh:
            self.lat.tofile(fh)
        self.out(
            ev="stats",
            delivered=self.delivered,
            lat_file=path,
            lat_n=len(self.lat),
            lost=self.lost,
            cpu_s=cpu_seconds(os.getpid()),
            **self.settle_state(),
        )
        self.lat = array("q")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
        )
        self.out(ev="ready", pid=os.getpid())
        tasks: set[asyncio.Task[None]] = set()
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = json.loads(line)
            op = cmd["cmd"]
            if op == "open":
                task = asyncio.create_task(self.open(cmd))
            elif op == "subscribe":
                task = asyncio.create_task(self.subscribe(cmd))
            elif op == "progress":
                if self.progress_task is not None:
                    self.progress_task.cancel()
                    self.progress_task = None
                if cmd["interval"] > 0:
                    self.progress_task = asyncio.create_task(self.progress(cmd["interval"]))
                self.out(ev="ok", op=op)
                continue
            elif op == "lazy":
                self.set_lazy(float(cmd["seconds"]))
                self.out(ev="ok", op=op)
                continue
            elif op == "latency":
                self.latency_on = bool(cmd["on"])
                self.out(ev="ok", op=op)
                continue
            elif op == "stats":
                self.stats(cmd["lat_dir"])
                continue
            elif op == "quit":
                break
            else:
                self.out(ev="error", message=f"unknown command {op}")
                continue
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.abort()


def worker_main(index: int) -> None:
    raise_nofile(65536)
    runner = _event_loop_runner()
    runner(Worker(index).run())


def _event_loop_runner() -> Callable[[Any], Any]:
    try:
        import uvloop

        return uvloop.run  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.run


# --------------------------------------------------------------------------------------------
# Controller
# --------------------------------------------------------------------------------------------


class WorkerHandle:
    def __init__(self, index: int, proc: asyncio.subprocess.Process) -> None:
        self.index = index
        self.proc = proc
        self.delivered = 0
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def read(self, on_progress: Callable[[], None]) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                self.queue.put_nowait({"ev": "exited"})
                return
            msg = json.loads(line)
            if msg.get("ev") == "p":
                self.delivered = int(msg["d"])
                on_progress()
            else:
                self.queue.put_nowait(msg)

    async def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, ev: str, timeout: float) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.queue.get(), timeout)
        if msg.get("ev") != ev:
            raise RuntimeError(f"worker {self.index}: expected {ev}, got {msg}")
        return msg


class Publisher:
    """The one publishing connection, in the controller process."""

    def __init__(self, conn: Conn, ours: bool) -> None:
        self.conn = conn
        self.ours = ours
        self.sent = 0
        self.acks = 0
        self.errors: list[str] = []

    def on_text(self, conn: Conn, buf: bytes, start: int, end: int) -> None:
        frame = buf[start:end]
        if b'"ack"' in frame:
            self.acks += 1
        elif len(self.errors) < 5:
            self.errors.append(frame[:200].decode(errors="replace"))

    def publish(self, tag: str) -> None:
        self.sent += 1
        data = payload(tag, self.sent, time.monotonic_ns())
        if self.ours:
            frame = (
                f'{{"type":"publish","channel":"{CHANNEL}","data":"{data}",'
                f'"requestId":"{self.sent}"}}'
            )
        else:
            frame = (
                f'{{"type":"message","channel":"{CHANNEL}","from":"{FAKE_FROM}","data":"{data}"}}'
            )
        self.conn.send_text(frame)


class Run:
    """One workload (N subscribers) against one server."""

    server_prefix: list[str] = []  # noqa: RUF012  # e.g. taskset, set by bench/table.py
    worker_prefix: list[str] = []  # noqa: RUF012

    def __init__(self, args: argparse.Namespace, target: str, n: int, deadline: float) -> None:
        self.args = args
        self.target = target
        self.ours = target == "metered-realtime"
        self.n = n
        self.deadline = deadline
        self.server: asyncio.subprocess.Process | None = None
        self.workers: list[WorkerHandle] = []
        self.progress = asyncio.Event()
        self.result: dict[str, Any] = {"server": target, "subscribers": n}
        self.tmp = tempfile.mkdtemp(prefix="fanout-")
        self.host = "127.0.0.1"
        self.port = 0
        self.key = ""

    def left(self, cap: float) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 1:
            raise TimeoutError("benchmark time budget exhausted")
        return min(cap, remaining)

    def delivered(self) -> int:
        return sum(w.delivered for w in self.workers)

    def _on_progress(self) -> None:
        self.progress.set()

    def server_command(self) -> tuple[list[str], dict[str, str]]:
        """The server's command line and environment."""
        env = dict(os.environ)
        if self.ours:
            exe = shutil.which("metered-realtime", path=str(Path(sys.executable).parent))
            cmd = [exe or "metered-realtime", "serve", "--dev", "--host", self.host, "--port", "0"]
            cmd += ["--db", os.path.join(self.tmp, "bench.db"), "--log-level", "warning"]
            # One publisher sends far more than the per-connection default of 200 frames/s.
            env["METERED_REALTIME_RATE_PER_SECOND"] = str(self.args.server_rate_limit)
            env["METERED_REALTIME_RATE_BURST"] = str(self.args.server_rate_limit)
        else:
            cmd = [sys.executable, str(HERE / "baseline_server.py"), "--host", self.host]
            cmd += ["--port", "0", "--loop", self.args.baseline_loop]
            cmd += ["--layer", self.args.baseline_layer]
        return cmd, env

    async def start_server(self) -> None:
        cmd, env = self.server_command()
        cmd = self.server_prefix + cmd
        self.server = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=open(os.path.join(self.tmp, "server.log"), "wb"),  # noqa: SIM115
            env=env,
        )
        assert self.server.stdout is not None
        need_key = self.ours
        url = None
        while url is None or (need_key and not self.key):
            line = (await asyncio.wait_for(self.server.stdout.readline(), self.left(30))).decode()
            if not line:
                raise RuntimeError(f"{self.target} exited at start; see {self.tmp}/server.log")
            if line.startswith("url:"):
                url = line.split(":", 1)[1].strip()
            elif line.startswith("key:"):
                self.key = line.split(":", 1)[1].strip()
        match = re.match(r"ws://[^:/]+:(\d+)", url)
        if match is None:
            raise RuntimeError(f"cannot read the port from {url!r}")
        self.port = int(match.group(1))
        self.result["server_pid"] = self.server.pid

    async def start_workers(self) -> None:
        for i in range(self.args.workers):
            proc = await asyncio.create_subprocess_exec(
                *self.worker_prefix,
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                str(i),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 20,
            )
            handle = WorkerHandle(i, proc)
            handle.task = asyncio.create_task(handle.read(self._on_progress))
            self.workers.append(handle)
        for w in self.workers:
            await w.expect("ready", self.left(20))

    @property
    def path(self) -> str:
        return f"/v1?key={self.key}" if self.ours else "/"

    async def connect_all(self) -> None:
        shares = [self.n // len(self.workers)] * len(self.workers)
        for i in range(self.n % len(self.workers)):
            shares[i] += 1
        per_worker = max(1, self.args.connect_concurrency // len(self.workers))
        t0 = time.monotonic()
        for w, share in zip(self.workers, shares, strict=True):
            await w.send(
                cmd="open",
                host=self.host,
                port=self.port,
                path=self.path,
                count=share,
                concurrency=per_worker,
                expect_welcome=self.ours,
                timeout=30.0,
            )
        opened = [await w.expect("opened", self.left(180)) for w in self.workers]
        self.result["connect_s"] = round(time.monotonic() - t0, 3)
        got = sum(o["n"] for o in opened)
        if got != self.n:
            errors = [e for o in opened for e in o["errors"]]
            raise RuntimeError(f"only {got}/{self.n} connections opened: {errors}")
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: Conn(self.host, self.port, self.path, self._publisher_text, self.ours),
            self.host,
            self.port,
        )
        await asyncio.wait_for(asyncio.shield(conn.ready), self.left(10))
        self.publisher = Publisher(conn, self.ours)

    def _publisher_text(self, conn: Conn, buf: bytes, start: int, end: int) -> None:
        self.publisher.on_text(conn, buf, start, end)

    def presence_members(self) -> int:
        """Members each subscriber must see before the channel counts as formed."""
        return self.n - 1

    async def form(self) -> None:
        if not self.ours:
            self.result["form_s"] = None  # no subscribe, no presence: connected = formed
            return
        t0 = time.monotonic()
        for w in self.workers:
            await w.send(
                cmd="subscribe", channel=CHANNEL, members=self.presence_members(), timeout=120.0
            )
        settled = [await w.expect("settled", self.left(130)) for w in self.workers]
        if all(s["ok"] for s in settled):
            self.result["form_s"] = round(time.monotonic() - t0, 3)
        else:
            self.result["form_s"] = None
            self.result["form_error"] = [s for s in settled if not s["ok"]]
            log(f"formation incomplete: {self.result['form_error']}")

    async def wait_progress(self, timeout: float) -> bool:
        self.progress.clear()
        try:
            await asyncio.wait_for(self.progress.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def throughput(self) -> None:
        """Closed loop: at most `window` messages in flight per subscriber."""
        for w in self.workers:
            await w.send(cmd="progress", interval=0.005)
            await w.expect("ok", self.left(10))
            await w.send(cmd="lazy", seconds=self.args.lazy_ms / 1000)
            await w.expect("ok", self.left(10))
        window = self.args.window
        n = self.n
        pub = self.publisher
        warm_end = time.monotonic() + self.args.warmup
        end = warm_end + self.args.duration
        mark: tuple[float, int, float] | None = None
        base = pub.sent * n - self.delivered()
        while True:
            now = time.monotonic()
            if mark is None and now >= warm_end:
                mark = (now, self.delivered(), cpu_seconds(self.server.pid))  # type: ignore[union-attr]
                worker_cpu0 = [cpu_seconds(w.proc.pid) for w in self.workers]
                busy0 = machine_busy()
            if now >= end:
                break
            in_flight = pub.sent * n - self.delivered() - base
            room = window - in_flight // n
            for _ in range(max(0, room)):
                pub.publish("T")
            if not await self.wait_progress(self.left(5)):
                raise RuntimeError("no delivery progress for 5 s")
        assert mark is not None
        t1, d1, c1 = time.monotonic(), self.delivered(), cpu_seconds(self.server.pid)  # type: ignore[union-attr]
        worker_cpu = sum(cpu_seconds(w.proc.pid) for w in self.workers) - sum(worker_cpu0)
        busy1 = machine_busy()
        elapsed = t1 - mark[0]
        deliveries = d1 - mark[1]
        self.max_rate = deliveries / elapsed
        self.result["deliveries_per_s"] = round(self.max_rate)
        self.result["publishes_per_s"] = round(self.max_rate / n, 1)
        self.result["server_cpu_s_per_100k"] = round((c1 - mark[2]) / deliveries * 1e5, 4)
        self.result["server_cpu_util"] = round((c1 - mark[2]) / elapsed, 3)
        self.result["subscriber_cpu_util"] = round(worker_cpu / elapsed, 3)  # all workers
        # Saturated subscribers would cap the rate instead of the server: flag it.
        self.result["subscriber_bound"] = worker_cpu / elapsed / len(self.workers) > 0.95
        # Busy cores of the whole machine (all processes + kernel) over the window.
        self.result["machine_busy_cores"] = round(
            (busy1[0] - busy0[0]) / (busy1[1] - busy0[1]) * (os.cpu_count() or 1), 3
        )
        # Let the pipeline drain before the latency phase.
        await self.drain(pub.sent * n - base, 10)
        for w in self.workers:
            await w.send(cmd="lazy", seconds=0)
            await w.expect("ok", self.left(10))

    async def drain(self, expected: int, timeout: float) -> bool:
        stop = time.monotonic() + timeout
        while self.delivered() < expected:
            if time.monotonic() >= stop or not await self.wait_progress(self.left(timeout)):
                return False
        return True

    async def latency(self) -> None:
        """Open loop at half the sustained rate (or ``--latency-deliveries``); every delivery's
        latency is recorded."""
        n = self.n
        pub = self.publisher
        # Publishes per second: half the sustained rate, or a load common to every server.
        common = self.args.latency_deliveries
        rate = max(1.0, (common if common else self.max_rate / 2) / n)
        base = pub.sent * n - self.delivered()
        for w in self.workers:
            await w.send(cmd="progress", interval=0.005)  # drain() below waits on progress
            await w.expect("ok", self.left(10))
            await w.send(cmd="latency", on=True)
            await w.expect("ok", self.left(10))
        count = max(20, int(rate * self.args.duration))
        t0 = time.monotonic()
        sent = 0
        while sent < count:
            due = min(count, int((time.monotonic() - t0) * rate) + 1)
            while sent < due:
                pub.publish("L")
                sent += 1
            await asyncio.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
        drained = await self.drain(pub.sent * n - base, 10)
        for w in self.workers:
            await w.send(cmd="latency", on=False)
            await w.expect("ok", self.left(10))
            await w.send(cmd="progress", interval=0)
            await w.expect("ok", self.left(10))
        lat = array("q")
        stats = []
        for w in self.workers:
            await w.send(cmd="stats", lat_dir=self.tmp)
            s = await w.expect("stats", self.left(20))
            stats.append(s)
            with open(s["lat_file"], "rb") as fh:
                lat.frombytes(fh.read())
        expected = count * n
        values = sorted(lat)
        self.result["latency_publishes_per_s"] = round(rate, 1)
        self.result["latency_samples"] = len(values)
        self.result["latency_lost"] = expected - len(values) if drained else None
        if values:
            for pct in (50, 90, 99):
                value = values[min(len(values) - 1, len(values) * pct // 100)]
                self.result[f"p{pct}_ms"] = round(value / 1e6, 3)
            self.result["max_ms"] = round(values[-1] / 1e6, 3)
            self.result["mean_ms"] = round(statistics.fmean(values) / 1e6, 3)
        self.result["dropped_connections"] = sum(s["lost"] for s in stats)
        if self.ours:
            self.result["presence_max_members"] = max(s["max_members"] for s in stats)
        if pub.errors:
            self.result["publisher_errors"] = pub.errors

    async def stop(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                await w.send(cmd="quit")
        for w in self.workers:
            await _reap(w.proc, 5)
            if w.task is not None:
                w.task.cancel()
        if getattr(self, "publisher", None) is not None and self.publisher.conn.transport:
            self.publisher.conn.transport.abort()
        if self.server is not None:
            await _reap(self.server, 10, signal.SIGTERM)
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def execute(self) -> dict[str, Any]:
        log(f"{self.target}: {self.n} subscribers")
        try:
            # What else keeps the machine busy (other processes): a try on a busy machine
            # measures less than the servers can do, so wait a little for a quiet moment.
            self.result["background_busy_cores"] = await quiet_machine(
                self.args.quiet_below, min(self.args.quiet_wait, self.left(60) / 4)
            )
            await self.start_server()
            await self.start_workers()
            await self.connect_all()
            log(f"  connected in {self.result['connect_s']} s")
            await self.form()
            log(f"  formed in {self.result['form_s']} s")
            # A common load is measured first, on a server not still recovering from the
            # saturating throughput phase; half the sustained rate needs that rate first.
            if self.args.latency_deliveries:
                await self.latency()
            await self.throughput()
            log(
                f"  {self.result['deliveries_per_s']} deliveries/s, server cpu "
                f"{self.result['server_cpu_util']}, "
                f"subscribers {self.result['subscriber_cpu_util']}, "
                f"machine {self.result['machine_busy_cores']} cores"
            )
            if not self.args.latency_deliveries:
                await self.latency()
            log(f"  p50 {self.result.get('p50_ms')} ms, p99 {self.result.get('p99_ms')} ms")
        except Exception as exc:  # report and go on with the next run
            self.result["error"] = f"{type(exc).__name__}: {exc}"
            log(f"  failed: {self.result['error']}")
        finally:
            await self.stop()
        return self.result


async def quiet_machine(below: float, wait: float) -> float:
    """Sample the machine's busy cores every 0.5 s until under `below` or `wait` has passed;
    return the last sample."""
    stop = time.monotonic() + wait
    while True:
        before = machine_busy()
        await asyncio.sleep(0.5)  # a sampling interval: nothing to await but time
        after = machine_busy()
        busy = (after[0] - before[0]) / max(1e-9, after[1] - before[1]) * (os.cpu_count() or 1)
        if busy < below or time.monotonic() >= stop:
            return round(busy, 3)


async def _reap(proc: asyncio.subprocess.Process, timeout: float, sig: int | None = None) -> None:
    """Stop a process this benchmark started, by its own pid."""
    if proc.returncode is None and sig is not None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return round(a / b, 3)
    return None


def best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The try with the highest sustained rate, listing every try's rate."""
    ok = [r for r in results if isinstance(r.get("deliveries_per_s"), int)]
    chosen = dict(max(ok, key=lambda r: r["deliveries_per_s"]) if ok else results[-1])
    chosen["tries_deliveries_per_s"] = [r.get("deliveries_per_s") for r in results]
    return chosen


async def controller(args: argparse.Namespace) -> dict[str, Any]:
    raise_nofile(max(args.subscribers) + 1024)
    deadline = time.monotonic() + args.budget
    runs = []
    for n in args.subscribers:
        tries: dict[str, list[dict[str, Any]]] = {
            "metered-realtime": [],
            "websockets-broadcast": [],
        }
        for _ in range(args.repeat):  # alternate, so drift on the machine hits both alike
            for target, results in tries.items():
                results.append(await Run(args, target, n, deadline).execute())
        ours, base = best(tries["metered-realtime"]), best(tries["websockets-broadcast"])
        runs.append(
            {
                "subscribers": n,
                "metered_realtime": ours,
                "baseline": base,
                "ratio": {
                    key: ratio(ours.get(key), base.get(key))
                    for key in ("deliveries_per_s", "p50_ms", "p99_ms", "server_cpu_s_per_100k")
                },
            }
        )
    return {
        "bench": "fanout",
        "payload_bytes": PAYLOAD_BYTES,
        "workers": args.workers,
        "repeat": args.repeat,
        "window": args.window,
        "lazy_ms": args.lazy_ms,
        "duration_s": args.duration,
        "baseline_loop": args.baseline_loop,
        "baseline_layer": args.baseline_layer,
        "server_overrides": {"rate_per_second": args.server_rate_limit},
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "runs": runs,
    }


def build_parser() -> argparse.ArgumentParser:
    """The options (bench/table.py takes its defaults from here)."""
    parser = argparse.ArgumentParser(description="fan-out benchmark (one JSON line on stdout)")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="subscriber processes (default: one per core but the server's)",
    )
    parser.add_argument("--repeat", type=int, default=2, help="tries per server, best kept")
    parser.add_argument("--window", type=int, default=32, help="messages in flight (closed loop)")
    parser.add_argument(
        "--lazy-ms",
        type=float,
        default=2.0,
        help="throughput phase: subscribers pause this long per loop turn to read in batches",
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--connect-concurrency", type=int, default=64)
    parser.add_argument(
        "--latency-deliveries",
        type=float,
        default=None,
        help="latency phase at this many deliveries/s (default: half the sustained rate)",
    )
    parser.add_argument("--baseline-loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument(
        "--baseline-layer", choices=["websockets", "aiohttp", "picows"], default="websockets"
    )
    parser.add_argument("--server-rate-limit", type=float, default=1e6)
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=0.3,
        help="before each try, wait for other load under this many cores ...",
    )
    parser.add_argument("--quiet-wait", type=float, default=20.0, help="... at most this long, s")
    parser.add_argument("--budget", type=float, default=480.0, help="whole-run time cap, s")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.worker is not None:
        worker_main(args.worker)
        return
    result = _event_loop_runner()(controller(args))
    print(json.dumps(result, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
