"""What TLS and an nginx hop cost a client; prints ONE JSON line.

Three ways to one ``metered-realtime serve`` process (a child, same host): ``ws`` (plain),
``wss`` (the server's own TLS, ``--tls-cert``) and ``nginx`` (Debian's nginx terminating TLS
with the configuration docs/self-hosting.md quotes, when /usr/sbin/nginx exists). For each:

- ``connect_ms_p50`` / ``_p90``: ``SignallingClient.connect()`` until the welcome, one
  connection after another (TCP, TLS and WebSocket handshakes, authentication);
- ``ack_rtt_ms_p50`` / ``_p99`` and ``acks_per_s``: publish and await its ack, repeated.

Client and server share the machine, so figures move with its load: compare the modes of
one run. Usage: ``.venv/bin/python bench/tls.py [--connects 200] [--messages 3000]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the nginx and certificate helpers of the test suite

from tests.support.nginx import nginx_missing, running_nginx  # noqa: E402
from tests.support.pki import TestPki  # noqa: E402

CLI = [sys.executable, "-m", "metered_realtime.cli"]


@contextlib.asynccontextmanager
async def serving(db: Path, *extra: str) -> AsyncIterator[int]:
    """``serve`` as a child process (per-connection rate lifted); yields its port."""
    env = {
        **os.environ,
        "METERED_REALTIME_RATE_PER_SECOND": "1e9",
        "METERED_REALTIME_RATE_BURST": "1e9",
    }
    proc = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--host", "127.0.0.1", "--port", "0", "--db", str(db),
        "--log-level", "warning", *extra,
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        if not line.startswith("url: "):
            raise SystemExit(f"serve printed {line!r}")
        yield int(line.rsplit(":", 1)[1].split("/")[0])
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 40)


def _ms(samples: list[float], q: int) -> float:
    return round(statistics.quantiles(samples, n=100)[q - 1] * 1000, 2)


async def measure(url: str, key: str, context: Any, connects: int, messages: int) -> dict[str, Any]:
    from metered_realtime import SignallingClient

    def client() -> SignallingClient:
        return SignallingClient(api_key=key, url=url, ssl_context=context, reconnect=False)

    connect_s = []
    for _ in range(connects):
        c = client()
        started = time.perf_counter()
        await c.connect()
        connect_s.append(time.perf_counter() - started)
        await c.close()
    rtt_s = []
    async with client() as c:
        started_all = time.perf_counter()
        for i in range(messages):
            started = time.perf_counter()
            await c.publish("bench", i)
            rtt_s.append(time.perf_counter() - started)
        elapsed = time.perf_counter() - started_all
    return {
        "connect_ms_p50": _ms(connect_s, 50),
        "connect_ms_p90": _ms(connect_s, 90),
        "ack_rtt_ms_p50": _ms(rtt_s, 50),
        "ack_rtt_ms_p99": _ms(rtt_s, 99),
        "acks_per_s": round(messages / elapsed),
    }


async def run(connects: int, messages: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pki = TestPki.create(tmp)
        db = tmp / "bench.db"
        made = await asyncio.create_subprocess_exec(
            *CLI, "keys", "create", "--app", "bench", "--db", str(db),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(made.communicate(), 30)
        key = json.loads(out)["key"]
        async with serving(db) as port:
            results["ws"] = await measure(f"ws://127.0.0.1:{port}", key, None, connects, messages)
        tls = ("--tls-cert", str(pki.cert), "--tls-key", str(pki.key))
        async with serving(db, *tls) as port:
            context = pki.client_context()
            url = f"wss://localhost:{port}"
            results["wss"] = await measure(url, key, context, connects, messages)
        if nginx_missing() is None:
            async with (
                serving(db, "--trusted-proxy", "127.0.0.2/32") as port,
                running_nginx(tmp / "nginx", port, pki.cert, pki.key) as nginx,
            ):
                context = pki.client_context()
                results["nginx"] = await measure(nginx.url, key, context, connects, messages)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connects", type=int, default=200)
    parser.add_argument("--messages", type=int, default=3000)
    args = parser.parse_args()
    if not 2 <= args.connects <= 100_000 or not 2 <= args.messages <= 1_000_000:
        parser.error("connects and messages must be between 2 and a bounded maximum")
    figures = asyncio.run(run(args.connects, args.messages))
    out = {
        "bench": "tls",
        "connects": args.connects,
        "messages": args.messages,
        **figures,
        "server": "serve child process, same host",
        "python": platform.python_version(),
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
