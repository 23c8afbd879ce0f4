"""Await events and conditions with hard time bounds (no blind sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from metered_realtime._emitter import EventStream

T = TypeVar("T")


async def next_event(stream: EventStream[Any], timeout: float = 5.0) -> Any:
    """The next event of ``stream`` within ``timeout`` seconds."""
    return await asyncio.wait_for(stream.__anext__(), timeout)


async def event_matching(
    stream: EventStream[Any], pred: Callable[[Any], bool], timeout: float = 5.0
) -> Any:
    """The first event of ``stream`` satisfying ``pred`` within ``timeout`` seconds."""

    async def scan() -> Any:
        async for event in stream:
            if pred(event):
                return event
        raise AssertionError("stream ended before a matching event")

    return await asyncio.wait_for(scan(), timeout)


async def until(cond: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> None:
    """Poll a cheap in-memory condition (bounded); for state that has no event."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() >= deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)


async def accepts(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port`` now (one attempt)."""
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class ManualSleep:
    """A ``_sleep`` seam: records each requested delay and blocks until released."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._calls: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()
        self.auto_release = False

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.auto_release:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._calls.put(fut)
        await fut

    async def next_call(self, timeout: float = 5.0) -> tuple[float, Callable[[], None]]:
        """Wait for the next sleep request; returns its delay and a release function."""
        fut = await asyncio.wait_for(self._calls.get(), timeout)
        delay = self.delays[-1]

        def release() -> None:
            if not fut.done():
                fut.set_result(None)

        return delay, release
