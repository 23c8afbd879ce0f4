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

import asyncio
import contextlib
import json
import os
import shutil
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

INTEROP_DIR = Path(__file__).resolve().parent.parent / "interop"
DRIVER = INTEROP_DIR / "driver.mjs"
SDK_PACKAGE = INTEROP_DIR / "node_modules" / "@metered-ca" / "realtime" / "package.json"

Pred = Callable[[dict[str, Any]], bool]


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


class DriverGone(Exception):
    """The node process exited while something was waited for."""


class JSClient:
    """One SDK object (SignallingClient or MeteredPeer) in its own node process."""

    def __init__(self, label: str = "js", *, default_timeout: float = 10.0) -> None:
        self.label = label
        self.default_timeout = default_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.pid: int | None = None
        self.lines: list[dict[str, Any]] = []  # every line the driver printed, in order
        self.stderr: deque[str] = deque(maxlen=200)
        self._consumed: set[int] = set()  # indexes into self.lines handed out by next_*
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[Callable[[dict[str, Any]], bool], asyncio.Future[int]]] = []
        self._next_id = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._exited = False
        self._ready: asyncio.Future[dict[str, Any]] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, timeout: float = 10.0) -> None:
        reason = node_available()
        if reason is not None:
            raise RuntimeError(reason)
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self.proc = await asyncio.create_subprocess_exec(
            "node",
            str(DRIVER),
            cwd=str(INTEROP_DIR),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        self.pid = self.proc.pid
        self._tasks.append(asyncio.create_task(self._read_stdout()))
        self._tasks.append(asyncio.create_task(self._read_stderr()))
        await asyncio.wait_for(asyncio.shield(self._ready), timeout)

    async def aclose(self, timeout: float = 3.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()  # the driver exits when its stdin ends
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()  # our own child, by its pid
                await proc.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def __aenter__(self) -> JSClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- reading -------------------------------------------------------------------------------

    async def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        stream = self.proc.stdout
        try:
            while True:
                raw = await stream.readline()
                if not raw:
                    break
                try:
                    line = json.loads(raw)
                except (ValueError, RecursionError):
                    self.stderr.append(f"<bad stdout line> {raw[:500]!r}")
                    continue
                self._dispatch(line)
        finally:
            self._exited = True
            gone = DriverGone(f"{self.label}: node driver exited; stderr: {self.stderr_text()}")
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(gone)
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(gone)
            for _, fut in self._waiters:
                if not fut.done():
                    fut.set_exception(gone)

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            raw = await self.proc.stderr.readline()
            if not raw:
                return
            self.stderr.append(raw.decode(errors="replace").rstrip())

    def _dispatch(self, line: dict[str, Any]) -> None:
        index = len(self.lines)
        self.lines.append(line)
        kind = line.get("type")
        if kind == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(line)
            return
        if kind == "result":
            fut = self._pending.pop(line.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(line)
            return
        for pred, fut in list(self._waiters):
            if not fut.done() and index not in self._consumed and pred(line):
                self._consumed.add(index)
                fut.set_result(index)
                self._waiters.remove((pred, fut))
                break

    def stderr_text(self) -> str:
        return "\n".join(self.stderr)

    # -- commands ------------------------------------------------------------------------------

    async def request(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        """Run one driver command; return its value or raise JSError with the rejection."""
        if self.proc is None or self.proc.stdin is None or self._exited:
            raise DriverGone(f"{self.label}: driver not running")
        self._next_id += 1
        rid = self._next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.proc.stdin.write(json.dumps({"id": rid, "cmd": cmd, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        try:
            result = await asyncio.wait_for(fut, timeout or self.default_timeout)
        finally:
            self._pending.pop(rid, None)
        if result.get("ok"):
            return result.get("value")
        raise JSError(result.get("error") or {})

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

    async def next_line(self, pred: Pred, timeout: float | None = None) -> dict[str, Any]:
        """The earliest driver line not yet handed out that satisfies `pred`; waits for it."""
        for index, line in enumerate(self.lines):
            if index not in self._consumed and pred(line):
                self._consumed.add(index)
                return line
        if self._exited:
            raise DriverGone(f"{self.label}: node driver exited; stderr: {self.stderr_text()}")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        entry = (pred, fut)
        self._waiters.append(entry)
        try:
            index = await asyncio.wait_for(fut, timeout or self.default_timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(
                f"{self.label}: nothing matching within {timeout or self.default_timeout}s; "
                f"last lines: {self.lines[-8:]}; stderr: {self.stderr_text()}"
            ) from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
        return self.lines[index]

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
