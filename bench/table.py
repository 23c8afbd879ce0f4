"""One command for the issue #13 table: this server beside bare Node `ws` and uWebSockets.js.

Every server speaks our framing (the JavaScript ones are minimal: bench/js/, no presence, no
auth) and runs pinned to one core (``--server-cpu``) while every load generator, this process
and the fan-out subscriber workers, runs on the other (``--load-cpu``), so what one measures
is not stolen by the other. Workloads, each against each server in turn:

* fan-out at 1,000 and 5,000 subscribers (bench/fanout.py's closed loop: deliveries/s,
  server CPU per 100k deliveries; then p99 latency at a load common to every server,
  ``--latency-deliveries``, 50,000 deliveries/s by default); for our server the 5,000 run also
  times the presence channel's formation (every member has seen every other);
* directed round trips, 50 pairs and 1 pair: A ``send``s to B, B's ``direct`` makes it
  ``send`` back to A, acks on; round trips/s, p50, server CPU µs per round trip;
* idle connections: ``--idle`` connections, ``--idle-concurrency`` in flight, each connects,
  waits for its welcome, subscribes to a channel of its own and waits for the ack: the
  connect + subscribe rate, and the server's resident memory growth per connection.

A row whose load generator used over 95 % of its core is marked ``loadgen_bound``: there the
figure is the generator's limit, not the server's. The machine may be shared with other
work: compare the ratios (measured in the same run), not absolute figures.
Prints the table on stderr and ONE JSON line on stdout.

    .venv/bin/python bench/table.py
    .venv/bin/python bench/table.py --servers metered-realtime node-ws --skip-fanout
    .venv/bin/python bench/table.py --rounds 5 --skip-fanout   # medians of 5 rounds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import fanout

HERE = Path(__file__).resolve().parent
SERVERS = {
    "metered-realtime": None,
    "node-ws": HERE / "js" / "ws_server.mjs",
    "uws": HERE / "js" / "uws_server.mjs",
}
DATA = '"' + "x" * (fanout.PAYLOAD_BYTES - 2) + '"'
BUSY = 0.95


def log(msg: str) -> None:
    print(f"[table {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class FramedRun(fanout.Run):
    """bench/fanout.py's run against any server that speaks our framing."""

    def __init__(self, args: argparse.Namespace, target: str, n: int, deadline: float) -> None:
        super().__init__(args, target, n, deadline)
        self.script = SERVERS[target]
        self.ours = True  # every server here speaks our protocol (welcome, subscribe, ack)
        self.result["server"] = target
        self.server_prefix = ["taskset", "-c", str(args.server_cpu)]
        self.worker_prefix = ["taskset", "-c", str(args.load_cpu)]

    def server_command(self) -> tuple[list[str], dict[str, str]]:
        if self.script is None:
            return super().server_command()
        cmd = ["node", str(self.script), "--host", self.host, "--port", "0"]
        return cmd, dict(os.environ)

    def presence_members(self) -> int:
        return self.n - 1 if self.script is None else 0  # the baselines have no presence

    async def form(self) -> None:
        # Every member reads every other's entry: n * (n - 1) entries, ~850 MB at 5,000, all
        # parsed by the subscriber workers, which may be the limit here rather than the server.
        cpu0 = [fanout.cpu_seconds(w.proc.pid) for w in self.workers]
        t0 = time.monotonic()
        await super().form()
        elapsed = time.monotonic() - t0
        used = sum(fanout.cpu_seconds(w.proc.pid) for w in self.workers) - sum(cpu0)
        util = used / elapsed / len(self.workers)
        self.result["form_loadgen_cpu_util"] = round(util, 3)
        self.result["form_loadgen_bound"] = util > BUSY

    def cpu(self) -> float:
        assert self.server is not None
        return fanout.cpu_seconds(self.server.pid)

    def rss_kib(self) -> int:
        assert self.server is not None
        with open(f"/proc/{self.server.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")


# --------------------------------------------------------------------------------------------
# Directed round trips
# --------------------------------------------------------------------------------------------


class Pair:
    """A sends to B; B's direct makes it send back to A; A's direct ends one round trip."""

    def __init__(self, bench: Directed) -> None:
        self.bench = bench
        self.a: fanout.Conn | None = None
        self.b: fanout.Conn | None = None
        self.to_a = b""
        self.to_b = b""
        self.t0 = 0
        self.seq = 0

    def on_a(self, conn: fanout.Conn, buf: bytes, start: int, end: int) -> None:
        if buf.startswith(b'{"type":"direct"', start):
            self.bench.done(time.monotonic_ns() - self.t0)
            if self.bench.running:
                self.go()

    def on_b(self, conn: fanout.Conn, buf: bytes, start: int, end: int) -> None:
        if buf.startswith(b'{"type":"direct"', start):
            self.seq += 1
            assert self.b is not None
            self.b.send_text(self.to_a + b'"%d"}' % self.seq)

    def go(self) -> None:
        assert self.a is not None
        self.seq += 1
        self.t0 = time.monotonic_ns()
        self.a.send_text(self.to_b + b'"%d"}' % self.seq)


def peer_id_of(conn: fanout.Conn) -> str:
    peer = json.loads(conn.welcome)["peerId"]
    assert isinstance(peer, str)
    return peer


class Directed:
    def __init__(self) -> None:
        self.running = False
        self.count = 0
        self.lat: list[int] = []

    def done(self, ns: int) -> None:
        self.count += 1
        if self.running:
            self.lat.append(ns)

    async def measure(
        self, run: FramedRun, pairs: int, warmup: float, duration: float
    ) -> dict[str, Any]:
        items = [Pair(self) for _ in range(pairs)]
        for pair in items:
            pair.a = await run_open(run, pair.on_a)
            pair.b = await run_open(run, pair.on_b)
            pair.to_b = b'{"type":"send","to":"%s","data":%s,"requestId":' % (
                peer_id_of(pair.b).encode(),
                DATA.encode(),
            )
            pair.to_a = pair.to_b.replace(peer_id_of(pair.b).encode(), peer_id_of(pair.a).encode())
        self.running = True
        for pair in items:
            pair.go()
        await asyncio.sleep(warmup)  # let the loop reach its steady state
        self.lat.clear()
        n0, cpu0, me0, t0 = self.count, run.cpu(), fanout.cpu_seconds(os.getpid()), time.monotonic()
        await asyncio.sleep(duration)  # the measurement window
        n1, cpu1, me1, t1 = self.count, run.cpu(), fanout.cpu_seconds(os.getpid()), time.monotonic()
        self.running = False
        for pair in items:
            for conn in (pair.a, pair.b):
                if conn is not None and conn.transport is not None:
                    conn.transport.abort()
        trips = n1 - n0
        elapsed = t1 - t0
        lat = sorted(self.lat)
        return {
            "pairs": pairs,
            "round_trips_per_s": round(trips / elapsed),
            "p50_ms": round(lat[len(lat) // 2] / 1e6, 3) if lat else None,
            "p99_ms": round(lat[len(lat) * 99 // 100] / 1e6, 3) if lat else None,
            "server_cpu_us_per_trip": round((cpu1 - cpu0) / max(1, trips) * 1e6, 1),
            "server_cpu_util": round((cpu1 - cpu0) / elapsed, 3),
            "loadgen_cpu_util": round((me1 - me0) / elapsed, 3),
            "loadgen_bound": (me1 - me0) / elapsed > BUSY,
        }


async def run_open(run: FramedRun, on_text: Any) -> fanout.Conn:
    return await fanout.open_conn(run.host, run.port, run.path, on_text, True, run.left(30))


# --------------------------------------------------------------------------------------------
# Idle connections: connect + subscribe rate, memory per connection
# --------------------------------------------------------------------------------------------


async def idle(run: FramedRun, count: int, concurrency: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(concurrency)
    conns: list[fanout.Conn] = []
    await asyncio.sleep(1.0)  # let the server settle after start-up before the baseline RSS
    rss0 = run.rss_kib()

    async def one(index: int) -> None:
        acked: asyncio.Future[None] = loop.create_future()

        def on_text(conn: fanout.Conn, buf: bytes, start: int, end: int) -> None:
            if buf.startswith(b'{"type":"ack"', start) and not acked.done():
                acked.set_result(None)

        async with sem:
            conn = await run_open(run, on_text)
            conn.send_text(b'{"type":"subscribe","channel":"idle-%d","requestId":"s"}' % index)
            await asyncio.wait_for(acked, run.left(30))
            conns.append(conn)

    t0, me0 = time.monotonic(), fanout.cpu_seconds(os.getpid())
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.monotonic() - t0
    me = fanout.cpu_seconds(os.getpid()) - me0
    await asyncio.sleep(1.0)  # idle: let lazily freed buffers go before reading RSS
    rss1 = run.rss_kib()
    for conn in conns:
        if conn.transport is not None:
            conn.transport.abort()
    return {
        "connections": count,
        "connect_subscribe_per_s": round(count / elapsed),
        "kib_per_connection": round((rss1 - rss0) / count, 2),
        "loadgen_cpu_util": round(me / elapsed, 3),
        "loadgen_bound": me / elapsed > BUSY,
    }


async def one_server(args: argparse.Namespace, target: str, deadline: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    run = FramedRun(args, target, 0, deadline)
    try:
        await run.start_server()
        if not args.skip_directed:
            for pairs in (50, 1):
                key = f"directed_{pairs}"
                out[key] = await Directed().measure(run, pairs, args.warmup, args.duration)
                log(f"{target} {key}: {out[key]}")
        if not args.skip_idle:
            out["idle"] = await idle(run, args.idle, args.idle_concurrency)
            log(f"{target} idle: {out['idle']}")
    except Exception as exc:  # report and go on with the next server
        out["error"] = f"{type(exc).__name__}: {exc}"
        log(f"{target} failed: {out['error']}")
    finally:
        await run.stop()
    if not args.skip_fanout:
        for n in args.subscribers:
            result = await FramedRun(args, target, n, deadline).execute()
            if not result.get("error"):
                result["loadgen_bound"] = result.get("subscriber_bound")
            out[f"fanout_{n}"] = result
    return out


ROWS = [
    ("fan-out 1,000: deliveries/s", "fanout_1000", "deliveries_per_s", "subscriber_bound"),
    ("fan-out 1,000: p99 ms, common load", "fanout_1000", "p99_ms", None),
    ("fan-out 1,000: server CPU s/100k", "fanout_1000", "server_cpu_s_per_100k", None),
    ("fan-out 5,000: deliveries/s", "fanout_5000", "deliveries_per_s", "subscriber_bound"),
    ("fan-out 5,000: p99 ms, common load", "fanout_5000", "p99_ms", None),
    ("directed, 50 pairs: round trips/s", "directed_50", "round_trips_per_s", "loadgen_bound"),
    ("directed, 50 pairs: server CPU µs/trip", "directed_50", "server_cpu_us_per_trip", None),
    ("directed, 1 pair: p50 ms", "directed_1", "p50_ms", "loadgen_bound"),
    ("idle subscribed connection: KiB", "idle", "kib_per_connection", None),
    ("connect + subscribe/s", "idle", "connect_subscribe_per_s", "loadgen_bound"),
    ("5,000-member presence formed: s", "fanout_5000", "form_s", "form_loadgen_bound"),
]


def table(results: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The markdown table (ours / each baseline as ratios) and the same rows as a dict."""
    names = list(results)
    head = (
        "| workload | " + " | ".join(names) + " | " + " | ".join(f"ours / {n}" for n in names[1:])
    )
    lines = [head + " |", "|---" * (1 + 2 * len(names) - 1) + "|"]
    rows: dict[str, Any] = {}
    for label, section, key, bound in ROWS:
        values = [results[n].get(section, {}).get(key) for n in names]
        if all(v is None for v in values):
            continue
        cells = []
        for n, v in zip(names, values, strict=True):
            mark = " (loadgen)" if bound and results[n].get(section, {}).get(bound) else ""
            cells.append("—" if v is None else f"{v}{mark}")
        ratios = [fanout.ratio(values[0], v) for v in values[1:]]
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + " | "
            + " | ".join("—" if r is None else f"{r}" for r in ratios)
            + " |"
        )
        rows[label] = {"values": dict(zip(names, values, strict=True)), "ratios": ratios}
    return "\n".join(lines), rows


def merge_rounds(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each figure's median over the rounds; a flag (loadgen-bound) when any round set it."""
    merged: dict[str, dict[str, Any]] = {}
    for target in rounds[0]:
        merged[target] = {}
        for section, first in rounds[0][target].items():
            if not isinstance(first, dict):
                merged[target][section] = first
                continue
            values: dict[str, Any] = {}
            for key, value in first.items():
                seen = [r[target].get(section, {}).get(key) for r in rounds]
                if isinstance(value, bool):
                    values[key] = any(v for v in seen if isinstance(v, bool))
                elif isinstance(value, (int, float)):
                    numbers = [v for v in seen if isinstance(v, (int, float))]
                    values[key] = round(statistics.median(numbers), 3)
                else:
                    values[key] = value
            merged[target][section] = values
    return merged


async def controller(args: argparse.Namespace) -> dict[str, Any]:
    fanout.raise_nofile(max([*args.subscribers, args.idle]) + 1024)
    deadline = time.monotonic() + args.budget
    rounds: list[dict[str, dict[str, Any]]] = []
    busy = await fanout.quiet_machine(args.quiet_below, args.quiet_wait)
    for number in range(args.rounds):
        # Servers take turns within each round, so a noisy minute hits them alike.
        results: dict[str, dict[str, Any]] = {}
        for target in args.servers:
            log(f"--- {target} (round {number + 1} of {args.rounds})")
            results[target] = await one_server(args, target, deadline)
        rounds.append(results)
    results = merge_rounds(rounds)
    text, rows = table(results)
    print(text, file=sys.stderr, flush=True)
    return {
        "bench": "table",
        "servers": args.servers,
        "server_cpu": args.server_cpu,
        "load_cpu": args.load_cpu,
        "background_busy_cores_at_start": busy,
        "python": sys.version.split()[0],
        "median_of": args.rounds,
        "rows": rows,
        "results": results,
    }


def main() -> None:
    parser = fanout.build_parser()
    parser.description = "issue #13 table: ours vs Node ws vs uWebSockets.js (one JSON line)"
    parser.set_defaults(
        repeat=1, duration=3.0, budget=1500.0, workers=1, latency_deliveries=50_000.0
    )
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(SERVERS))
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--idle", type=int, default=2000, help="idle connections")
    parser.add_argument("--idle-concurrency", type=int, default=100)
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--skip-directed", action="store_true")
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every server this many times; medians"
    )
    args = parser.parse_args()
    if args.worker is not None:
        fanout.worker_main(args.worker)
        return
    os.sched_setaffinity(0, {args.load_cpu})
    result = fanout._event_loop_runner()(controller(args))
    print(json.dumps(result, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
