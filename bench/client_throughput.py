"""Throughput of one SignallingClient against a local server; prints ONE JSON line.

The server runs in a child process (same API the test fixtures use, rate limits lifted)
so that client and server do not share a CPU core. Figures:

- ``publish_ack_seq_per_s``: publish, await its ack, repeat (latency bound);
- ``publish_ack_window_per_s``: publishes with up to ``--window`` acks outstanding;
- ``receive_per_s``: ``Message`` events delivered to one client's handler while a raw
  WebSocket publisher floods the channel.

Usage: ``.venv/bin/python bench/client_throughput.py [--messages 20000] [--payload 64]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


def _serve(conn: Connection, db: str) -> None:
    """Child process: start a server on an ephemeral port, report it, run until told to stop."""
    from metered_realtime.demo import embedded_server

    async def main() -> None:
        async with embedded_server(
            db=db,
            app_name="bench",
            rate_per_second=1e9,
            rate_burst=1e9,
            outbound_buffer_limit=256 * 1024 * 1024,
        ) as srv:
            conn.send((srv.port, srv.api_key))
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, conn.recv)  # any message means stop

    asyncio.run(main())


async def _bench(url: str, key: str, n: int, payload_bytes: int, window: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    from metered_realtime import Message, SignallingClient

    data = {"p": "x" * max(0, payload_bytes - 8)}
    client = SignallingClient(api_key=key, url=url, inactivity_timeout=0)
    await client.connect()

    # warm-up
    for _ in range(200):
        await client.publish("bench-pub", data)

    # 1. sequential publish + ack
    seq_n = max(1, n // 4)
    lat: list[float] = []
    t0 = time.perf_counter()
    for _ in range(seq_n):
        s = time.perf_counter()
        await client.publish("bench-pub", data)
        lat.append(time.perf_counter() - s)
    seq_rate = seq_n / (time.perf_counter() - t0)

    # 2. windowed publish + ack
    t0 = time.perf_counter()
    done = 0
    while done < n:
        batch = min(window, n - done)
        await asyncio.gather(*(client.publish("bench-pub", data) for _ in range(batch)))
        done += batch
    win_rate = n / (time.perf_counter() - t0)

    # 3. receive rate
    await client.subscribe("bench-rx")
    received = 0
    first_at = 0.0
    finished = asyncio.get_running_loop().create_future()

    def on_message(ev: Message) -> None:
        nonlocal received, first_at
        received += 1
        if received == 1:
            first_at = time.perf_counter()
        if received == n and not finished.done():
            finished.set_result(time.perf_counter())

    client.on(Message, on_message)
    frame = json.dumps(
        {"type": "publish", "channel": "bench-rx", "data": data}, separators=(",", ":")
    )
    async with connect(f"{url}/v1?key={key}", max_size=2**20) as pub:
        await pub.recv()  # welcome
        t_send = time.perf_counter()
        for i in range(n):
            await pub.send(frame)
            if i % 512 == 511:
                await asyncio.sleep(0)
        end = await asyncio.wait_for(finished, 120)
    rx_rate = (n - 1) / (end - first_at) if n > 1 else float("nan")
    rx_wall = n / (end - t_send)
    await client.close()
    return {
        "publish_ack_seq_per_s": round(seq_rate),
        "publish_ack_seq_p50_ms": round(statistics.median(lat) * 1000, 3),
        "publish_ack_seq_p99_ms": round(sorted(lat)[int(len(lat) * 0.99) - 1] * 1000, 3),
        "publish_ack_window_per_s": round(win_rate),
        "receive_per_s": round(rx_rate),
        "receive_wall_per_s": round(rx_wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--payload", type=int, default=64, help="approx. bytes of data")
    parser.add_argument("--window", type=int, default=64, help="acks outstanding")
    args = parser.parse_args()
    if not 1 <= args.messages <= 10_000_000 or not 1 <= args.window <= 10_000:
        parser.error("messages and window must be positive and bounded")

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    with tempfile.TemporaryDirectory() as tmp:
        proc = ctx.Process(target=_serve, args=(child, str(Path(tmp) / "bench.db")), daemon=True)
        proc.start()
        try:
            if not parent.poll(30):
                raise SystemExit("server did not start")
            port, key = parent.recv()
            figures = asyncio.run(
                _bench(f"ws://127.0.0.1:{port}", key, args.messages, args.payload, args.window)
            )
        finally:
            parent.send("stop")
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    import websockets

    out = {
        "bench": "client_throughput",
        "messages": args.messages,
        "payload_bytes": args.payload,
        "window": args.window,
        **figures,
        "server": "child process, same host",
        "python": platform.python_version(),
        "websockets": websockets.__version__,
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
