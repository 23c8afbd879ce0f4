"""Drive one client of the published JavaScript SDK from a pytest-asyncio test.

`JSClient` spawns `node tests/interop/driver.mjs`, speaks its JSON-lines protocol (see the
header of driver.mjs), and lets a test send commands and await the SDK's events with timeouts::

    async with JSClient("alice") as alice:
        welcome = await alice.connect(server.url, key=server.api_key)
        await alice.subscribe("room")
        snapshot = await alice.next_event("presence")

Every event the SDK emits is kept in order; `next_event` returns the earliest one not yet
returned that matches, waiting for it if needed. Only the node process this object started is
ever killed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.support.linedriver import LineDriver, Pred

INTEROP_DIR = Path(__file__).resolve().parent.parent / "interop"
DRIVER = INTEROP_DIR / "driver.mjs"
SDK_PACKAGE = INTEROP_DIR / "node_modules" / "@metered-ca" / "realtime" / "package.json"


def node_available() -> str | None:
    """Why the JavaScript SDK cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not SDK_PACKAGE.exists():
        return "tests/interop/node_modules is missing: run `npm ci` in tests/interop"
    return None


class JSError(Exception):
    """A driver command was rejected; `name` is the JS error's `name` (the server's error code
    for a correlated error frame)."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error
        self.name: str = str(error.get("name"))
        self.message: str = str(error.get("message"))
        super().__init__(f"{self.name}: {self.message}")

    def __getitem__(self, key: str) -> Any:
        return self.error[key]


class JSClient(LineDriver):
    """One SDK object (SignallingClient or MeteredPeer) in its own node process."""

    def __init__(self, label: str = "js", *, default_timeout: float = 10.0) -> None:
        super().__init__(label, default_timeout=default_timeout)

    def _rejected(self, error: dict[str, Any]) -> Exception:
        return JSError(error)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, timeout: float = 10.0) -> None:
        reason = node_available()
        if reason is not None:
            raise RuntimeError(reason)
        await self._spawn(["node", str(DRIVER)], INTEROP_DIR, timeout)

    async def __aenter__(self) -> JSClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- commands ------------------------------------------------------------------------------

    async def connect(
        self,
        url: str,
        *,
        key: str | None = None,
        token: str | None = None,
        kind: str = "client",
        trace: bool = True,
        sync_events: bool = False,
        timeout: float | None = None,
        **options: Any,
    ) -> dict[str, Any] | None:
        """Create the SDK object and (for a SignallingClient) connect it; return the payload of
        its first `connected` event (None for a MeteredPeer, which connects on join).

        `options` go to the SDK constructor (e.g. reconnect=False, inactivityTimeoutMs=0).
        `sync_events=True` lets `ws` emit several frames in one tick (its own default) instead
        of one frame per task as browsers do."""
        args: dict[str, Any] = {
            "url": url,
            "kind": kind,
            "trace": trace,
            "syncEvents": sync_events,
            "options": options,
        }
        if key is not None:
            args["key"] = key
        if token is not None:
            args["token"] = token
        await self.request("connect", timeout=timeout, **args)
        if kind != "client":
            return None
        return await self.next_event("connected", timeout=1.0)

    async def subscribe(self, channel: str, *, include_sender_metadata: bool | None = None) -> None:
        args: dict[str, Any] = {"channel": channel}
        if include_sender_metadata is not None:
            args["includeSenderMetadata"] = include_sender_metadata
        await self.request("subscribe", **args)

    async def unsubscribe(self, channel: str) -> None:
        await self.request("unsubscribe", channel=channel)

    async def publish(self, channel: str, data: Any) -> None:
        await self.request("publish", channel=channel, data=data)

    async def send(self, to: str, data: Any) -> None:
        await self.request("send", to=to, data=data)

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        args: dict[str, Any] = {}
        if code is not None:
            args["code"] = code
        if reason is not None:
            args["reason"] = reason
        await self.request("close", **args)

    async def state(self) -> str:
        return str(await self.request("state"))

    # -- events --------------------------------------------------------------------------------

    @staticmethod
    def _event_pred(name: str, match: Pred | None) -> Pred:
        def pred(line: dict[str, Any]) -> bool:
            if line.get("type") != "event" or line.get("name") != name:
                return False
            return match is None or bool(match(line["payload"]))

        return pred

    async def next_event(
        self, name: str, match: Pred | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Payload of the earliest not-yet-returned SDK event `name` (matching `match`)."""
        line = await self.next_line(self._event_pred(name, match), timeout)
        payload: dict[str, Any] = line["payload"]
        return payload

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every payload of SDK event `name` so far, consumed or not."""
        return [
            line["payload"]
            for line in self.lines
            if line.get("type") == "event" and line.get("name") == name
        ]

    def unconsumed(self, name: str) -> list[dict[str, Any]]:
        """Payloads of SDK event `name` not yet returned by next_event."""
        return [
            line["payload"]
            for i, line in enumerate(self.lines)
            if i not in self._consumed and line.get("type") == "event" and line.get("name") == name
        ]

    def wire(self, direction: str = "in") -> list[dict[str, Any]]:
        """Frames seen on the socket (trace on), parsed; `direction` is "in" or "out"."""
        frames: list[dict[str, Any]] = []
        for line in self.lines:
            if line.get("type") == "wire" and line.get("dir") == direction:
                try:
                    frames.append(json.loads(line["frame"]))
                except (ValueError, RecursionError):
                    frames.append({"<unparsable>": line["frame"]})
        return frames

    def logs(self, level: str | None = None) -> list[dict[str, Any]]:
        """What the SDK logged at info/warn/error (a dropped malformed frame shows up here)."""
        return [
            line
            for line in self.lines
            if line.get("type") == "log" and (level is None or line.get("level") == level)
        ]

    def driver_errors(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("type") == "driver-error"]


# What the `js` fixture (tests/interop/conftest.py) yields: `await js("label")`.
MakeJS = Callable[..., Awaitable[JSClient]]
