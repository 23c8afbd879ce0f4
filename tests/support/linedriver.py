"""A child process spoken to in JSON lines: the common half of the node drivers.

Both `JSClient` (the JavaScript SDK in node) and `Browser` (Chromium through playwright-core)
run a node script that reads one JSON command a line on stdin and prints JSON lines on stdout:
`{"type":"ready",...}` once, `{"type":"result","id":N,"ok":...}` per command, and anything else
(events, logs) in between. This class keeps every line in order, correlates results, and lets a
test await the earliest line not yet handed out that matches a predicate. Only the process it
started is ever killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

Pred = Callable[[dict[str, Any]], bool]


class DriverGone(Exception):
    """The driver process exited while something was waited for."""


class LineDriver:
    """One driver process; subclasses say how to start it and how a rejection is raised."""

    def __init__(self, label: str, *, default_timeout: float) -> None:
        self.label = label
        self.default_timeout = default_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.pid: int | None = None
        self.lines: list[dict[str, Any]] = []  # every line the driver printed, in order
        self.stderr: deque[str] = deque(maxlen=200)
        self._consumed: set[int] = set()  # indexes into self.lines handed out by next_line
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[Pred, asyncio.Future[int]]] = []
        self._next_id = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._exited = False
        self._ready: asyncio.Future[dict[str, Any]] | None = None

    def _rejected(self, error: dict[str, Any]) -> Exception:
        """The exception for a command the driver rejected."""
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------------

    async def _spawn(self, argv: list[str], cwd: Path, timeout: float) -> dict[str, Any]:
        """Start the process and wait for its ready line, which is returned."""
        self._ready = asyncio.get_running_loop().create_future()
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        self.pid = self.proc.pid
        self._tasks.append(asyncio.create_task(self._read_stdout()))
        self._tasks.append(asyncio.create_task(self._read_stderr()))
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except asyncio.TimeoutError:
            raise RuntimeError(
                f"{self.label}: driver did not start; stderr: {self.stderr_text()}"
            ) from None

    async def aclose(self, timeout: float = 3.0) -> None:
        """Close stdin (the driver exits when it ends), kill it only if it does not."""
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
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
            gone = DriverGone(f"{self.label}: driver exited; stderr: {self.stderr_text()}")
            futures = [self._ready, *self._pending.values(), *(f for _, f in self._waiters)]
            for fut in futures:
                if fut is not None and not fut.done():
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
        starting = self._ready is not None and not self._ready.done()
        if kind == "ready":
            if starting:
                assert self._ready is not None
                self._ready.set_result(line)
            return
        if kind == "driver-error" and starting:
            assert self._ready is not None
            self._ready.set_exception(RuntimeError(f"{self.label}: driver failed: {line}"))
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

    # -- commands and lines ----------------------------------------------------------------------

    async def request(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        """Run one driver command; return its value or raise the subclass's rejection."""
        if self.proc is None or self.proc.stdin is None or self._exited:
            raise DriverGone(f"{self.label}: driver not running")
        self._next_id += 1
        rid = self._next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.proc.stdin.write(json.dumps({"id": rid, "cmd": cmd, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        wait = timeout or self.default_timeout
        try:
            result = await asyncio.wait_for(fut, wait)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(
                f"{self.label}: command {cmd} timed out after {wait}s; last lines: "
                f"{self.lines[-6:]}; stderr: {self.stderr_text()}"
            ) from None
        finally:
            self._pending.pop(rid, None)
        if result.get("ok"):
            return result.get("value")
        raise self._rejected(result.get("error") or {})

    async def next_line(self, pred: Pred, timeout: float | None = None) -> dict[str, Any]:
        """The earliest driver line not yet handed out that satisfies `pred`; waits for it."""
        for index, line in enumerate(self.lines):
            if index not in self._consumed and pred(line):
                self._consumed.add(index)
                return line
        if self._exited:
            raise DriverGone(f"{self.label}: driver exited; stderr: {self.stderr_text()}")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        entry = (pred, fut)
        self._waiters.append(entry)
        wait = timeout or self.default_timeout
        try:
            index = await asyncio.wait_for(fut, wait)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(
                f"{self.label}: nothing matching within {wait}s; last lines: "
                f"{self.lines[-10:]}; stderr: {self.stderr_text()}"
            ) from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
        return self.lines[index]
