"""Drive Debian's Chromium running the published JavaScript SDK from a pytest-asyncio test.

Pieces:

* `static_site()` serves ``tests/browser/page/`` (index.html, harness.js) and the SDK's UMD build
  (``/sdk.js``) over HTTP on 127.0.0.1, from a thread.
* `Browser` spawns ``node tests/browser/driver.mjs`` (playwright-core, ``/usr/bin/chromium``,
  a fresh user data dir) and speaks its JSON-lines protocol; `Browser.open(label)` returns a
  `Page` (one tab, one JS `MeteredPeer` through ``window.H`` in harness.js).
* `Page.call("method", *args)` awaits ``window.H.method(...args)`` in the tab;
  `Page.next_event(name, match)` returns the earliest not-yet-returned harness event.
* `Watch` records a Python `MeteredPeer`'s events, and those of every `RemotePeer` it sees,
  from the moment each object appears, so nothing emitted before a test awaits it is lost.

Only processes this module started are ever ended, by their pid.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.linedriver import LineDriver, Pred

from metered_realtime.demo.site import HTML, JAVASCRIPT, StaticSite

ROOT = Path(__file__).resolve().parent.parent
BROWSER_DIR = ROOT / "browser"
DRIVER = BROWSER_DIR / "driver.mjs"
PAGE_DIR = BROWSER_DIR / "page"
INTEROP_DIR = ROOT / "interop"
NODE_MODULES = INTEROP_DIR / "node_modules"
SDK_UMD = NODE_MODULES / "@metered-ca" / "realtime" / "dist" / "index.umd.js"
PLAYWRIGHT = NODE_MODULES / "playwright-core" / "package.json"
CHROMIUM = "/usr/bin/chromium"

# Blink features switched off. Playwright passes its own --disable-features list and Chromium
# keeps only the last occurrence of a switch, so this repeats Playwright's list (as of
# playwright-core 1.65) and adds ours: WebRtcHideLocalIpsWithMdns (no .local candidates, no
# mDNS traffic), and services that would otherwise try to reach the internet.
DISABLED_FEATURES = [
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
    "WebRtcHideLocalIpsWithMdns",
    "DialMediaRouteProvider",
    "Translate",
    "AutofillServerCommunication",
    "CertificateTransparencyComponentUpdater",
    "InterestFeedContentSuggestions",
    "SafeBrowsing",
]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # Loopback: list 127.0.0.1 among WebRTC's networks (it is only used once media permission
    # is granted: harness.js asks for it before any connection). harness.js drops every other
    # candidate.
    "--allow-loopback-in-peer-connection",
    f"--disable-features={','.join(DISABLED_FEATURES)}",
    # Anything that is not loopback goes to a proxy that does not exist (loopback URLs bypass
    # proxies), and no host name resolves: no request leaves the machine.
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--no-pings",
    "--autoplay-policy=no-user-gesture-required",
]


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing: apt-get install chromium"
    if shutil.which("node") is None:
        return "node is not installed"
    if not SDK_UMD.exists() or not PLAYWRIGHT.exists():
        return "tests/interop/node_modules is incomplete: run `npm ci` in tests/interop"
    return None


# -- HTTP -------------------------------------------------------------------------------------


def static_site() -> StaticSite:
    """The test page and the SDK, served on 127.0.0.1 (ephemeral port) from a daemon thread."""
    index = (PAGE_DIR / "index.html", HTML)
    return StaticSite(
        {
            "/": index,
            "/index.html": index,
            "/harness.js": (PAGE_DIR / "harness.js", JAVASCRIPT),
            "/sdk.js": (SDK_UMD, JAVASCRIPT),
        }
    )


# -- the driver -------------------------------------------------------------------------------


class PageError(Exception):
    """A page command was rejected (the JS error's name and message)."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error
        self.name = str(error.get("name"))
        super().__init__(f"{self.name}: {error.get('message')}")


class Browser(LineDriver):
    """One Chromium (through one node driver process) with labelled tabs."""

    def __init__(self, site_url: str, *, default_timeout: float = 15.0) -> None:
        super().__init__("browser", default_timeout=default_timeout)
        self.site_url = site_url
        self.user_agent: str | None = None
        self.user_data_dir: str | None = None
        self.pages: dict[str, Page] = {}

    def _rejected(self, error: dict[str, Any]) -> Exception:
        return PageError(error)

    async def start(self, timeout: float = 40.0) -> Browser:
        reason = browser_unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        self.user_data_dir = tempfile.mkdtemp(prefix="metered-chromium-")
        config = {
            "executablePath": CHROMIUM,
            "args": CHROMIUM_ARGS,
            "userDataDir": self.user_data_dir,
        }
        ready = await self._spawn(["node", str(DRIVER), json.dumps(config)], BROWSER_DIR, timeout)
        self.user_agent = ready.get("userAgent")
        return self

    async def aclose(self, timeout: float = 10.0) -> None:
        """Stop the driver (it closes Chromium when its stdin ends) and remove the profile."""
        await super().aclose(timeout)
        if self.user_data_dir is not None:
            shutil.rmtree(self.user_data_dir, ignore_errors=True)

    async def __aenter__(self) -> Browser:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def open(self, label: str) -> Page:
        """Open a tab on the test site; returns once harness.js is ready in it."""
        await self.request("open", page=label, url=self.site_url)
        page = Page(self, label)
        self.pages[label] = page
        return page

    def problems(self) -> list[dict[str, Any]]:
        """Driver errors, page crashes and uncaught page errors so far."""
        bad = {"driver-error", "page-crash", "page-error"}
        out = [line for line in self.lines if line.get("type") in bad]
        out += [
            line
            for line in self.lines
            if line.get("type") == "event" and line.get("name") in {"page-error", "error"}
        ]
        return out


class Page:
    """One tab running one JS `MeteredPeer` through harness.js."""

    def __init__(self, browser: Browser, label: str) -> None:
        self.browser = browser
        self.label = label
        self.peer_id: str | None = None

    def __repr__(self) -> str:
        return f"<Page {self.label} peer={self.peer_id}>"

    async def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        return await self.browser.request(
            "call", timeout=timeout, page=self.label, method=method, args=list(args)
        )

    async def eval(self, expr: str, timeout: float | None = None) -> Any:
        return await self.browser.request("eval", timeout=timeout, page=self.label, expr=expr)

    async def reload(self) -> None:
        await self.browser.request("reload", page=self.label)
        self.peer_id = None

    def _pred(self, name: str, match: Callable[[dict[str, Any]], bool] | None) -> Pred:
        def pred(line: dict[str, Any]) -> bool:
            if line.get("type") != "event" or line.get("page") != self.label:
                return False
            if line.get("name") != name:
                return False
            return match is None or bool(match(line["payload"]))

        return pred

    async def next_event(
        self,
        name: str,
        match: Callable[[dict[str, Any]], bool] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Payload of the earliest not-yet-returned harness event `name` (matching `match`)."""
        line = await self.browser.next_line(self._pred(name, match), timeout)
        payload: dict[str, Any] = line["payload"]
        return payload

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every payload of harness event `name` from this tab so far."""
        return [
            line["payload"]
            for line in self.browser.lines
            if line.get("type") == "event"
            and line.get("page") == self.label
            and line.get("name") == name
        ]

    # -- conveniences over window.H ------------------------------------------------------------

    async def join(self, url: str, api_key: str, channel: str, **options: Any) -> str:
        """Create the page's MeteredPeer on our server and join `channel`; returns its peer id."""
        await self.call("create", {"url": url, "apiKey": api_key, "options": options})
        joined = await self.call("join", channel, timeout=20)
        self.peer_id = str(joined["peerId"])
        return self.peer_id

    async def wait_remote_state(self, peer_id: str, state: str, timeout: float = 20.0) -> None:
        current = await self.call("state")
        for remote in current["remotes"]:
            if remote["id"] == peer_id and remote["state"] == state:
                return
        await self.next_event(
            "remote-state", lambda p: p["peer"] == peer_id and p["to"] == state, timeout=timeout
        )

    async def wait_stats(
        self,
        peer_id: str,
        cond: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 20.0,
        step: float = 0.25,
    ) -> dict[str, Any]:
        """Poll `H.rtpStats(peer_id)` (bounded) until `cond(stats)`; returns those stats."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        stats: dict[str, Any] | None = None
        while True:
            stats = await self.call("rtpStats", peer_id)
            if stats is not None and cond(stats):
                return stats
            if loop.time() >= deadline:
                raise AssertionError(f"{self.label}: stats condition not met; last: {stats}")
            await asyncio.sleep(step)

    async def wait_video(
        self, peer_id: str, stream_id: str, *, timeout: float = 20.0, min_time: float = 0.3
    ) -> dict[str, Any]:
        """Poll (bounded) until the <video> for that stream plays: videoWidth > 0 and time runs."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        info: dict[str, Any] | None = None
        while True:
            info = await self.call("videoInfo", peer_id, stream_id)
            if info and info["videoWidth"] > 0 and info["currentTime"] >= min_time:
                return info
            if loop.time() >= deadline:
                raise AssertionError(f"{self.label}: video {stream_id} not playing; last: {info}")
            await asyncio.sleep(0.25)


def b64(data: bytes) -> dict[str, str]:
    """Binary payload for `H.dcSend` (harness.js decodes {b64} to an ArrayBuffer)."""
    return {"b64": base64.b64encode(data).decode()}


def unb64(data: Any) -> Any:
    if isinstance(data, dict) and "b64" in data:
        return base64.b64decode(data["b64"])
    return data


def all_loopback(stats: dict[str, Any], *, strict: bool = True) -> bool:
    """Every remote candidate a page knows and the selected pair's far end are on 127.0.0.1;
    `strict` also requires the pair's local end on 127.0.0.1.

    Chromium gathers local candidates on every interface; harness.js never signals any but
    127.0.0.1, so the far side only learns loopback addresses. Between two Chromium tabs a
    socket bound to another local address may still win the pair: its checks go to 127.0.0.1,
    which Linux delivers over lo (see tests/browser/NOTES.md). Against aiortc the test
    fixtures make aioice ignore checks from anything but 127.0.0.1, so `strict` holds.
    """
    pair = stats.get("pair")
    if not pair:
        return False
    local = pair["local"].rsplit(":", 1)[0]
    if strict and local != "127.0.0.1":
        return False
    # A peer-reflexive remote (learnt from a check that arrived before the trickled candidate)
    # has its address redacted in Chromium's stats.
    addresses = [*stats["remoteAddresses"], pair["remote"].rsplit(":", 1)[0]]
    allowed = {"127.0.0.1", "<prflx>"} if strict else {"127.0.0.1", "<prflx>", local}
    return all(a in allowed for a in addresses)


# -- Python side recording --------------------------------------------------------------------


class Recorder:
    """Keeps every event of the given classes an emitter fires, from now on, in order."""

    def __init__(self, emitter: Any, *classes: type) -> None:
        self.emitter = emitter
        self.seen: list[Any] = []
        self._consumed: set[int] = set()
        self._changed = asyncio.Event()
        for cls in classes:
            emitter.on(cls, self._record)

    def _record(self, event: Any) -> None:
        self.seen.append(event)
        self._changed.set()

    def skip(self) -> None:
        """Treat everything recorded so far as returned: `next` only sees later events."""
        self._consumed.update(range(len(self.seen)))

    def of(self, cls: type) -> list[Any]:
        return [e for e in self.seen if type(e) is cls]

    async def next(
        self, cls: type, pred: Callable[[Any], bool] | None = None, timeout: float = 20.0
    ) -> Any:
        """The earliest not-yet-returned `cls` event satisfying `pred`, waiting (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for index, event in enumerate(self.seen):
                if index in self._consumed or type(event) is not cls:
                    continue
                if pred is None or pred(event):
                    self._consumed.add(index)
                    return event
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"no {cls.__name__} within {timeout}s on {self.emitter!r}; "
                    f"seen: {[type(e).__name__ for e in self.seen][-20:]}"
                )
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


class Watch:
    """Records a Python MeteredPeer's events and each RemotePeer's, as soon as it appears."""

    def __init__(self, peer: Any) -> None:
        from metered_realtime.events import (
            ConnectionReset,
            Data,
            DataChannelOpened,
            FatalError,
            IceCandidateError,
            Joined,
            Left,
            NegotiationError,
            PeerJoined,
            PeerLeft,
            StateChange,
            StreamAdded,
            StreamRemoved,
            Track,
        )

        self.peer = peer
        self.remote_classes = (
            StateChange,
            Track,
            StreamAdded,
            StreamRemoved,
            DataChannelOpened,
            NegotiationError,
            IceCandidateError,
            ConnectionReset,
        )
        self.remotes: dict[str, Recorder] = {}
        self.events = Recorder(
            peer, Joined, Left, PeerJoined, PeerLeft, Data, FatalError, StateChange
        )
        peer.on(PeerJoined, self._on_peer_joined)

    def _on_peer_joined(self, ev: Any) -> None:
        self.remotes[ev.peer.id] = Recorder(ev.peer, *self.remote_classes)

    def remote(self, peer_id: str) -> Recorder:
        return self.remotes[peer_id]

    def remote_peer(self, peer_id: str) -> Any:
        for remote in self.peer.remote_peers:
            if remote.id == peer_id:
                return remote
        raise AssertionError(f"{self.peer!r} has no remote {peer_id}")

    async def wait_remote(self, peer_id: str, timeout: float = 20.0) -> Any:
        from metered_realtime.events import PeerJoined

        ev = await self.events.next(PeerJoined, lambda e: e.peer.id == peer_id, timeout)
        return ev.peer

    async def wait_state(self, peer_id: str, state: str, timeout: float = 20.0) -> None:
        from metered_realtime.events import StateChange

        remote = self.remote_peer(peer_id)
        if remote.state == state:
            return
        await self.remote(peer_id).next(StateChange, lambda e: e.to == state, timeout)
