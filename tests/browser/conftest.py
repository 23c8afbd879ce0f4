"""Fixtures for the browser interop tests: Chromium + the published JavaScript SDK (see
tests/support/browser.py), a real server, Python MeteredPeers, everything on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from tests.support.browser import Browser, browser_unavailable, static_site
from tests.support.webrtc import keep_ice_on_loopback, peer_factory

from metered_realtime.demo.site import StaticSite


def _require_browser() -> None:
    reason = browser_unavailable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser interop cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def site() -> Iterator[StaticSite]:
    """The test page and the SDK's UMD build over HTTP on 127.0.0.1."""
    _require_browser()
    served = static_site()
    try:
        yield served
    finally:
        served.close()


@pytest.fixture
async def browser(site: StaticSite) -> AsyncIterator[Browser]:
    """A fresh Chromium (fresh user data dir) for one test."""
    _require_browser()
    started = Browser(site.url)
    try:
        await started.start()
        yield started
    finally:
        # Close the tabs' MeteredPeers first so the server sees clean leaves.
        for page in list(started.pages.values()):
            with contextlib.suppress(Exception):
                await page.call("close", timeout=5)
        problems = started.problems()
        await started.aclose()
    assert not problems, f"browser problems: {problems}"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the Python peers' ICE on 127.0.0.1.

    aioice gathers host candidates on every interface except 127.0.0.1: point its host address
    discovery at 127.0.0.1 only. Chromium also checks from sockets bound to the machine's other
    addresses (towards our 127.0.0.1 candidates, over lo); aioice would answer those and adopt
    the sender as a peer-reflexive candidate, so checks from anything but 127.0.0.1 are ignored.
    """
    aioice_ice = pytest.importorskip("aioice.ice")
    keep_ice_on_loopback(monkeypatch)
    original = aioice_ice.Connection.request_received

    def request_received(self: Any, message: Any, addr: Any, protocol: Any) -> None:
        if addr[0] != "127.0.0.1":
            return
        original(self, message, addr, protocol)

    monkeypatch.setattr(aioice_ice.Connection, "request_received", request_received)


MakePeer = Callable[..., Any]


@pytest.fixture
async def make_peer(server: Any) -> AsyncIterator[MakePeer]:
    """Python MeteredPeers on the test server (closed at teardown)."""
    pytest.importorskip("aiortc")
    async with peer_factory(server) as make:
        yield make


OpenPage = Callable[[str], Awaitable[Any]]
