"""The baseline for bench/fanout.py: a bare broadcast server.

Every text message a connection sends is rebroadcast, unchanged, to every other connection.
No protocol, no auth, no presence: the floor of what a Python WebSocket fan-out costs on this
machine with each library (``--layer``): `websockets.broadcast` (the default, the issue's
baseline), aiohttp's ``send_str``, or picows' ``WSTransport.send``. aiohttp and picows are
not project dependencies; install them into the venv to compare the layers.

    python bench/baseline_server.py [--host 127.0.0.1] [--port 0] [--loop asyncio|uvloop]
                                    [--layer websockets|aiohttp|picows]

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


async def main_aiohttp(host: str, port: int) -> None:
    from aiohttp import WSMsgType, web

    clients: set[web.WebSocketResponse] = set()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=2**20, compress=False)
        await ws.prepare(request)
        clients.add(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    for other in list(clients):
                        if other is not ws and not other.closed:
                            await other.send_str(msg.data)
        finally:
            clients.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    bound = next(iter(server.sockets)).getsockname()  # type: ignore[union-attr]
    print(f"url: ws://{bound[0]}:{bound[1]}", flush=True)
    await _wait_for_signal()
    await runner.cleanup()


async def main_picows(host: str, port: int) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    clients: set[WSTransport] = set()

    class Relay(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: WSTransport) -> None:
            clients.add(transport)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                data = frame.get_payload_as_bytes()
                for other in clients:
                    if other is not transport:
                        other.send(WSMsgType.TEXT, data)
            elif frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            clients.discard(transport)

    server = await ws_create_server(lambda _request: Relay(), host, port)
    bound = next(iter(server.sockets)).getsockname()
    print(f"url: ws://{bound[0]}:{bound[1]}", flush=True)
    await _wait_for_signal()
    server.close()


async def _wait_for_signal() -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
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
    parser.add_argument(
        "--layer", choices=["websockets", "aiohttp", "picows"], default="websockets"
    )
    args = parser.parse_args()
    raise_nofile()
    entry = {"websockets": main, "aiohttp": main_aiohttp, "picows": main_picows}[args.layer]
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(entry(args.host, args.port))
    else:
        asyncio.run(entry(args.host, args.port))
