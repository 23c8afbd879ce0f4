"""docs/reconnect.md's pattern, run as written by two processes, keeps a data channel between
them through each case its table describes: one side's drop (the other side's drop, seen from
there), a node drain and a server restart."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.examples.conftest import Example, RunExample
from tests.examples.test_docs import DOCS, LOOPBACK
from tests.support.faultproxy import fault_proxy

from metered_realtime.demo import EmbeddedServer, embedded_server

HEARD = r"^(\S+) heard 'hello from (\S+)' from (\S+)$"


def pattern_block() -> str:
    """The guide's one runnable block."""
    blocks = re.findall(r"^```python\n(.*?)^```", (DOCS / "reconnect.md").read_text(), re.S | re.M)
    assert len(blocks) == 1, "docs/reconnect.md has one runnable pattern"
    return str(blocks[0])


class Service:
    """The embedded server on one port, stopped and started again on that port."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.port = 0
        self._stack: contextlib.AsyncExitStack | None = None
        self.srv: EmbeddedServer | None = None

    async def start(self) -> EmbeddedServer:
        self._stack = contextlib.AsyncExitStack()
        self.srv = await self._stack.enter_async_context(
            embedded_server(port=self.port, db=self.db, app_name="test", drain_grace=0.2)
        )
        self.port = self.srv.port
        return self.srv

    async def stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None


@contextlib.asynccontextmanager
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    svc = Service(str(tmp_path / "store.db"))
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def fresh_hello(ex: Example, stale: set[str]) -> tuple[str, str]:
    """(own id, sender id) of the next hello printed between ids not in ``stale`` (a
    connection ICE recovery rebuilt may greet again between the ids of an earlier case)."""
    for _ in range(20):
        me, said, sender = (await ex.expect(HEARD, timeout=45)).groups()
        assert said == sender
        if not {me, sender} & stale:
            return me, sender
    raise AssertionError(f"no hello between new ids:\n{ex.output}")


async def heard_each_other(a: Example, b: Example, stale: set[str]) -> tuple[str, str]:
    """Both sides heard a hello over a channel between their current ids; returns them."""
    a_id, a_heard = await fresh_hello(a, stale)
    b_id, b_heard = await fresh_hello(b, stale)
    assert (a_heard, b_heard) == (b_id, a_id)
    return a_id, b_id


@pytest.mark.timeout(240)
async def test_the_pattern_keeps_a_channel_through_every_case(
    tmp_path: Path, run_example: RunExample, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "pattern.py"
    script.write_text(LOOPBACK + pattern_block())
    async with service(tmp_path) as svc, contextlib.AsyncExitStack() as stack:
        assert svc.srv is not None
        monkeypatch.setenv("METERED_REALTIME_KEY", svc.srv.api_key)
        proxies, sides = [], []
        for _ in range(2):  # alice, then bob, each through a proxy of its own
            proxy = await stack.enter_async_context(fault_proxy("127.0.0.1", svc.port))
            monkeypatch.setenv("METERED_REALTIME_URL", proxy.url)
            proxies.append(proxy)
            sides.append(await stack.enter_async_context(run_example(str(script))))
        alice, bob = sides
        ids = list(await heard_each_other(alice, bob, set()))
        stale: set[str] = set()

        # One side's own drop, which the other sees as the other side's drop. The dropped
        # side's RemotePeer survives (ConnectionReset) while the other side gets a new
        # PeerJoined; the new id decides which of them opens the channel. Drop alice and bob
        # in turn until the survivor has been the opener once and the acceptor once.
        survivor_opened: set[bool] = set()
        for cut in range(8):
            side = cut % 2
            assert proxies[side].cut() == 1
            stale.add(ids[side])
            new = list(await heard_each_other(alice, bob, stale))
            assert new[1 - side] == ids[1 - side]  # only the dropped side got a new id
            ids = new
            survivor_opened.add(ids[side] < ids[1 - side])
            if len(survivor_opened) == 2:
                break
        assert survivor_opened == {True, False}

        # A node drain: going_away, a 1001 close; the clients come back to a new node.
        assert svc.srv is not None
        await svc.srv.server.drain()
        await svc.stop()
        await svc.start()
        stale.update(ids)
        ids = list(await heard_each_other(alice, bob, stale))

        # A server restart: no peer id survives, and there is no ConnectionReset to rely on.
        await svc.stop()
        await svc.start()
        stale.update(ids)
        await heard_each_other(alice, bob, stale)

        assert await bob.interrupt() == 0, bob.output
        assert await alice.interrupt() == 0, alice.output
