"""examples/chat.py: lines typed go to the channel, the channel's messages are printed."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from metered_realtime import Message, Presence, SignallingClient


@pytest.mark.timeout(60)
async def test_chat_against_a_server(server: Any, run_example: Any) -> None:
    async with SignallingClient(api_key=server.api_key, url=server.url) as other:
        messages = other.events(Message, maxsize=0)
        presence = other.events(Presence, maxsize=0)
        await other.subscribe("room")
        async with run_example(
            "chat.py",
            "--url",
            server.url,
            "--key",
            server.api_key,
            "--channel",
            "room",
            "--name",
            "ada",
            stdin=True,
        ) as chat:
            peer_id = (await chat.expect(r"\* connected as (\S+)")).group(1)
            await chat.expect(r"\* joined #room as ada")
            await chat.expect(rf"\* {re.escape(other.peer_id)} joined")

            async def joined() -> None:
                async for ev in presence:
                    if any(p.peer_id == peer_id for p in ev.joined):
                        return

            await asyncio.wait_for(joined(), 10)

            assert chat.proc.stdin is not None
            chat.proc.stdin.write(b"hello from the terminal\n")
            await chat.proc.stdin.drain()

            async def from_chat() -> Message:
                async for ev in messages:
                    if ev.sender_peer_id == peer_id:
                        return ev
                raise AssertionError("no message")

            got = await asyncio.wait_for(from_chat(), 10)
            assert got.data == {"name": "ada", "text": "hello from the terminal"}

            await other.publish("room", {"name": "grace", "text": "hi ada"})
            await chat.expect(r"^\[grace\] hi ada$")
            chat.proc.stdin.write(b"/who\n")
            await chat.proc.stdin.drain()
            await chat.expect(r"\* 1 other\(s\): grace")
            chat.proc.stdin.write(b"/quit\n")
            await chat.proc.stdin.drain()
            await chat.expect(r"\* bye")
            assert await asyncio.wait_for(chat.proc.wait(), 10) == 0


@pytest.mark.timeout(60)
async def test_chat_with_its_embedded_server(run_example: Any) -> None:
    async with run_example("chat.py", "--server", "--name", "solo", stdin=True) as chat:
        match = await chat.expect(r"embedded server: url (ws://127\.0\.0\.1:\d+) key (\S+)")
        url, key = match.group(1), match.group(2)
        await chat.expect(r"\* joined #lobby as solo")
        # A second client reaches the embedded server with the printed url and key.
        async with SignallingClient(api_key=key, url=url) as other:
            await other.subscribe("lobby")
            await other.publish("lobby", {"name": "visitor", "text": "knock knock"})
            await chat.expect(r"^\[visitor\] knock knock$")
        assert chat.proc.stdin is not None
        chat.proc.stdin.close()  # end of input leaves the chat
        await chat.expect(r"\* bye")
        assert await asyncio.wait_for(chat.proc.wait(), 10) == 0
