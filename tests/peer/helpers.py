"""Helpers for the WebRTC tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from metered_realtime.events import StateChange
from metered_realtime.peer import MeteredPeer, RemotePeer


async def wait_state(remote: RemotePeer, state: str, timeout: float = 15.0) -> None:
    """Wait until ``remote.state == state`` using its StateChange events."""
    async with remote.events(StateChange) as stream:
        if remote.state == state:
            return

        async def scan() -> None:
            async for ev in stream:
                if ev.to == state:
                    return
            raise AssertionError(f"{remote!r} closed before reaching {state}")

        await asyncio.wait_for(scan(), timeout)


class Expect:
    """Open an event stream now, await a matching event later."""

    def __init__(
        self, emitter: Any, event_type: type, pred: Callable[[Any], bool] = lambda e: True
    ) -> None:
        self.stream = emitter.events(event_type, maxsize=0)
        self.pred = pred

    async def get(self, timeout: float = 15.0) -> Any:
        async def scan() -> Any:
            async for ev in self.stream:
                if self.pred(ev):
                    return ev
            raise AssertionError("stream ended before a matching event")

        try:
            return await asyncio.wait_for(scan(), timeout)
        finally:
            self.stream.close()


async def join_all(peers: list[MeteredPeer], channel: str) -> None:
    for peer in peers:
        await asyncio.wait_for(peer.join(channel), 10)


def remote_of(peer: MeteredPeer, other: MeteredPeer) -> RemotePeer:
    for remote in peer.remote_peers:
        if remote.id == other.peer_id:
            return remote
    raise AssertionError(f"{peer!r} does not know {other.peer_id}")


async def latest_delivers(
    tracks: list[Any], receive: Callable[[Any], Awaitable[Any]], tries: int = 8
) -> None:
    """Until ``receive(track)`` succeeds for the latest of ``tracks`` (bounded).

    A collision rebuilds a connection, so an inbound track of the torn-down connection may
    never deliver: converge on the latest one.
    """
    from tests.support.waiting import until

    seen = 0
    for _ in range(tries):
        await until(lambda seen=seen: len(tracks) > seen, 15)
        seen = len(tracks)
        try:
            await receive(tracks[-1])
            return
        except Exception:  # a track of a torn-down connection: wait for the next one
            continue
    raise AssertionError("no inbound track delivered")
