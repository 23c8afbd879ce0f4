"""A connection that dies soon after its welcome does not restart the reconnect ladder.

Against the real server: a second client sends the victim a direct larger than the SDK's
1 MiB inbound cap each time the victim (re)joins a room, so every session is welcomed and
then closed with 1009 at once, the loop an oversized presence frame used to cause.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support.waiting import ManualSleep, next_event

from metered_realtime import (
    Connected,
    Disconnected,
    Presence,
    ReconnectOptions,
    ServerRequestError,
    SignallingClient,
)

pytestmark = pytest.mark.timeout(30)

BIG = "y" * 1_100_000  # a direct whose frame is over the SDKs' 1 MiB inbound cap


class Bomber:
    """Sends ``BIG`` to every peer that joins ``room`` while ``armed``."""

    def __init__(self, srv: Any) -> None:
        self.client = SignallingClient(api_key=srv.api_key, url=srv.url, reconnect=False)
        self.armed = True
        self.task: asyncio.Task[None] | None = None

    async def bomb(self, peer_id: str) -> None:
        with contextlib.suppress(ServerRequestError):  # the victim may be gone already
            await self.client.send(peer_id, BIG)

    async def _run(self, stream: AsyncIterator[Presence]) -> None:
        async for event in stream:
            if self.armed:
                for peer in event.joined:
                    await self.bomb(peer.peer_id)

    async def __aenter__(self) -> Bomber:
        presence = self.client.events(Presence)
        await self.client.connect()
        await self.client.subscribe("room")
        self.task = asyncio.ensure_future(self._run(presence))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()  # ends the event stream, hence the task
        if self.task is not None:
            await asyncio.wait_for(self.task, 5)


@pytest.mark.parametrize(
    ("options", "ladder"),
    [
        (ReconnectOptions(), [0.5, 1.0, 2.0, 4.0]),
        # stable_after=0 is the published SDKs' rule: the initial delay forever.
        (ReconnectOptions(stable_after=0), [0.5, 0.5, 0.5, 0.5]),
    ],
)
async def test_welcome_then_close_grows_the_delay(
    server_factory: Any, options: ReconnectOptions, ladder: list[float]
) -> None:
    async with server_factory(max_message_size=2_000_000) as srv, Bomber(srv) as bomber:
        sleep = ManualSleep()
        clock = [1000.0]
        victim = SignallingClient(
            api_key=srv.api_key,
            url=srv.url,
            reconnect=options,
            _sleep=sleep,
            _random=lambda: 0.0,
            _clock=lambda: clock[0],
        )
        connected = victim.events(Connected)
        disconnected = victim.events(Disconnected)
        await victim.connect()
        assert not (await next_event(connected)).is_reconnect
        await victim.subscribe("room")  # the bomber hears the join and strikes
        delays = []
        for cycle in range(len(ladder)):
            drop = await next_event(disconnected)
            assert (drop.code, drop.will_reconnect) == (1009, True)
            delay, release = await sleep.next_call()
            delays.append(delay)
            if cycle == len(ladder) - 1:
                bomber.armed = False  # let the last reconnect live
            release()
            assert (await next_event(connected)).is_reconnect  # each cycle reached welcome
        assert delays == ladder

        # A connection that stayed up stable_after seconds is a success: the ladder restarts.
        clock[0] += options.stable_after
        await bomber.bomb(victim.peer_id or "")
        drop = await next_event(disconnected)
        assert drop.code == 1009
        delay, release = await sleep.next_call()
        assert delay == 0.5
        release()
        await next_event(connected)
        await victim.close()


def test_stable_after_validation() -> None:
    assert ReconnectOptions().stable_after == 10.0
    assert ReconnectOptions(stable_after=0).stable_after == 0
    for bad in (-1, float("nan"), float("inf"), True, "5"):
        with pytest.raises(ValueError):
            ReconnectOptions(stable_after=bad)
