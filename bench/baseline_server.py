"""The baseline for bench/fanout.py: a bare `websockets` broadcast server.

Every text message a connection sends is rebroadcast, unchanged, to every other connection with
`websockets.broadcast`. No protocol, no auth, no presence: the floor of what a Python
WebSocket fan-out costs on this machine.

    python bench/baseline_server.py [--host 127.0.0.1] [--port 0] [--loop asyncio|uvloop]

Prints `url: ws://HOST:PORT` once listening; exits on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve

CLIENTS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    CLIENTS.add(ws)
    try:
        async for message in ws:
            broadcast((c for c in CLIENTS if c is not ws), message)
    finally:
        CLIENTS.discard(ws)


async def main(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    async with serve(
        handler,
        host,
        port,
        compression=None,
        ping_interval=None,
        max_size=2**20,
    ) as server:
        bound = next(iter(server.sockets)).getsockname()
        print(f"url: ws://{bound[0]}:{bound[1]}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await stop


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    raise_nofile()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args.host, args.port))
    else:
        asyncio.run(main(args.host, args.port))
