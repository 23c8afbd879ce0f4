"""The server's web console in Chromium: log in, see an SDK client's connection, watch the
rate chart move while it publishes, disconnect it (the SDK sees 4020), create a key and
revoke it (its session ends with 4001).

``METERED_CONSOLE_SCREENSHOT=docs/console.png`` also saves the page as it looks with that
traffic (the picture in docs/operations.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from tests.support.browser import Browser, Page
from tests.support.cluster import cluster_factory

from metered_realtime._emitter import EventStream
from metered_realtime.events import Disconnected
from metered_realtime.signalling.client import SignallingClient

TOKEN = "console-admin-token-for-tests"


async def until(page: Page, expr: str, timeout: float = 20.0) -> Any:
    """Evaluate ``expr`` in the page until it is truthy (bounded); its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    value = None
    while loop.time() < deadline:
        value = await page.eval(expr)
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"never true in the console: {expr} (last {value!r})")


async def click(page: Page, selector: str) -> None:
    """Click the element ``selector`` names once it is on the page."""
    found = f"document.querySelector({json.dumps(selector)})"
    await until(page, f"!!{found}")
    await page.eval(f"{found}.click(), true")


async def next_close(stream: EventStream[Disconnected]) -> Disconnected:
    """The next close a client's stream shows (bounded)."""
    return await asyncio.wait_for(stream.__anext__(), 20)


@pytest.fixture(params=["one-node", "redis-cluster"])
def factory(request: pytest.FixtureRequest, server_factory: Any, tmp_path: Path) -> Any:
    """One server, or two nodes over Redis (the console asks the first, clients use the last)."""
    if request.param == "one-node":
        return server_factory
    redis = request.getfixturevalue("redis_server")
    return cluster_factory(tmp_path, redis.url)


async def test_console(browser: Browser, factory: Any, tmp_path: Path):
    # The client publishes as fast as acks come back: far beyond the default rate limit.
    async with factory(admin_token=TOKEN, rate_per_second=1e6, rate_burst=1e6) as srv:
        asked, holder = srv.nodes[0], srv.nodes[-1]
        url = f"http://127.0.0.1:{asked.port}/console"
        client_url = f"ws://127.0.0.1:{holder.port}"
        await browser.request("open_url", page="console", url=url)
        page = Page(browser, "console")

        # Log in: the token goes to sessionStorage, the dashboard appears.
        await page.eval(
            f"document.getElementById('token').value = {json.dumps(TOKEN)},"
            " document.getElementById('login').requestSubmit(), true"
        )
        await until(page, "!!document.body.dataset.refreshed")
        assert await page.eval("document.getElementById('login').hidden") is True
        assert await page.eval("document.getElementById('token').value") == ""

        # A connection appears.
        sdk = SignallingClient(api_key=srv.api_key, url=client_url)
        await sdk.connect()
        await sdk.subscribe("room")
        row = f'#connections tr[data-peer="{sdk.peer_id}"]'
        await until(page, f"!!document.querySelector({json.dumps(row)})")
        await until(page, "document.getElementById('count-connections').textContent === '1'")
        # Every node, each with its line in the rate charts.
        nodes = len(srv.nodes)
        await until(page, f"document.querySelectorAll('#nodes tbody tr').length === {nodes}")
        await until(page, f"document.querySelectorAll('#chart-in polyline').length === {nodes}")
        shown = await page.eval(f"document.querySelector({json.dumps(row)}).textContent")
        assert holder.node_id in shown  # the node that holds the peer

        # The rate charts move while the client publishes (it receives its own messages).
        async def publish() -> None:
            for i in range(1_000_000):
                await sdk.publish("room", {"n": i})

        publisher = asyncio.ensure_future(publish())
        try:
            for chart in ("chart-in", "chart-out"):
                latest = f"Number(document.getElementById('{chart}').dataset.latest)"
                assert await until(page, f"{latest} > 0", timeout=30) is True
                points = await page.eval(
                    f"document.querySelector('#{chart} polyline').getAttribute('points')"
                )
                assert len(points.split()) >= 1
        finally:
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)

        # Members of the channel, with their metadata.
        await click(page, '#channels tr[data-channel="room"] button.members')
        await until(
            page, f"!!document.querySelector('#members-table tr[data-peer=\"{sdk.peer_id}\"]')"
        )

        # A key made in the console: its secret is shown once.
        await click(page, f'#apps tr[data-app="{srv.app_id}"] button.keys')
        await until(page, "!document.getElementById('keys').hidden")
        await page.eval(
            "document.getElementById('new-key-label').value = 'from-console',"
            " document.getElementById('new-key').requestSubmit(), true"
        )
        new_key = await until(
            page,
            "!document.getElementById('secret-once').hidden"
            " && document.getElementById('secret-value').textContent",
        )
        assert new_key.startswith("pk_live_")
        keyed = SignallingClient(api_key=new_key, url=client_url)
        await keyed.connect()

        shot = tmp_path / "console.png"
        await browser.request("screenshot", page="console", path=str(shot))
        assert shot.read_bytes().startswith(b"\x89PNG")
        wanted = os.environ.get("METERED_CONSOLE_SCREENSHOT")
        if wanted:
            shutil.copyfile(shot, wanted)

        # Disconnect the first client from the page: the SDK sees 4020 and stays down.
        closes = sdk.events(Disconnected)
        await click(page, f"{row} button.disconnect")
        event = await next_close(closes)
        assert (event.code, event.will_reconnect) == (4020, False)

        # Revoke the console's key: the session that used it ends with 4001.
        closes = keyed.events(Disconnected)
        await click(page, '#keys-table tr[data-label="from-console"] button.revoke')
        event = await next_close(closes)
        assert (event.code, event.will_reconnect) == (4001, False)
        await until(
            page,
            "document.querySelector('#keys-table tr[data-label=\"from-console\"]')"
            ".textContent.includes('revoked')",
        )
        assert await page.eval("document.getElementById('status').textContent") == ""
        await sdk.close()
        await keyed.close()
