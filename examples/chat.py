#!/usr/bin/env python3
"""A terminal chat on one channel, with SignallingClient (no WebRTC needed).

Every line typed is published to the channel as ``{"name": ..., "text": ...}``; messages
from others and presence changes (who joined, who left) are printed. ``/who`` lists the
members this client has seen, ``/quit`` (or end of input) leaves.

Against the embedded server (it prints the URL and key for a second terminal)::

    python examples/chat.py --server --name alice
    python examples/chat.py --url ws://127.0.0.1:PORT --key pk_... --name bob

or any server: ``--url``/``--key``, or the ``METERED_REALTIME_URL`` /
``METERED_REALTIME_KEY`` environment variables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator

from metered_realtime import (
    Connected,
    Disconnected,
    Message,
    Presence,
    SignallingClient,
)
from metered_realtime.demo import add_connection_arguments, example_connection


async def stdin_lines() -> AsyncIterator[str]:
    """Lines typed on stdin, without blocking the event loop; ends at end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    except (ValueError, OSError, NotImplementedError):  # e.g. Windows consoles
        while line := await asyncio.to_thread(sys.stdin.readline):
            yield line.rstrip("\r\n")
        return
    while line_bytes := await reader.readline():
        yield line_bytes.decode(errors="replace").rstrip("\r\n")


async def chat(args: argparse.Namespace, url: str, key: str) -> None:
    client = SignallingClient(api_key=key, url=url)
    members: dict[str, str] = {}  # peer id -> name (once they said something)

    @client.on(Connected)
    def on_connected(ev: Connected) -> None:
        again = " (reconnected)" if ev.is_reconnect else ""
        print(f"* connected as {ev.peer_id}{again}", flush=True)

    @client.on(Disconnected)
    def on_disconnected(ev: Disconnected) -> None:
        retry = ", reconnecting" if ev.will_reconnect else ""
        print(f"* disconnected ({ev.code} {ev.reason}){retry}", flush=True)

    @client.on(Presence)
    def on_presence(ev: Presence) -> None:
        for p in ev.joined:
            members.setdefault(p.peer_id, p.peer_id)
            print(f"* {members[p.peer_id]} joined", flush=True)
        for p in ev.left:
            print(f"* {members.pop(p.peer_id, p.peer_id)} left", flush=True)

    @client.on(Message)
    def on_message(ev: Message) -> None:
        if ev.sender_peer_id == client.peer_id:
            return  # our own message, echoed by the server
        data = ev.data if isinstance(ev.data, dict) else {"text": str(ev.data)}
        name = str(data.get("name") or ev.sender_peer_id)
        members[ev.sender_peer_id] = name
        print(f"[{name}] {data.get('text', '')}", flush=True)

    async with client:  # connects; closes on exit
        await client.subscribe(args.channel)
        print(f"* joined #{args.channel} as {args.name}; type a message, /who or /quit", flush=True)
        async for line in stdin_lines():
            if line == "/quit":
                break
            if line == "/who":
                names = sorted(members.values())
                print(f"* {len(names)} other(s): {', '.join(names) or 'nobody yet'}", flush=True)
                continue
            if line.strip():
                await client.publish(args.channel, {"name": args.name, "text": line})
        await client.unsubscribe(args.channel)
    print("* bye", flush=True)


async def run(args: argparse.Namespace) -> int:
    async with example_connection(args) as (url, key):
        await chat(args, url, key)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Terminal chat on a channel.")
    add_connection_arguments(parser)
    parser.add_argument("--channel", default="lobby")
    parser.add_argument("--name", default=os.environ.get("USER", "guest"))
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
