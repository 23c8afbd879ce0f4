"""Run the scripts under examples/ as a user would: subprocesses, WebRTC on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

pytest.importorskip("aiortc")

from tests.support.webrtc import keep_ice_on_loopback

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's own peers gather 127.0.0.1 only (as tests/peer/conftest.py does);
    the examples get the same through METERED_REALTIME_LOOPBACK=1."""
    keep_ice_on_loopback(monkeypatch)


class Example:
    """A running example script; its stdout is read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path
        self.lines: list[str] = []
        self._used: set[int] = set()  # lines an earlier expect() returned

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    async def expect(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first stdout line (printed so far or later) matching ``pattern`` (regex
        search) that no earlier expect() returned."""
        regex = re.compile(pattern)
        assert self.proc.stdout is not None

        async def scan() -> re.Match[str]:
            checked = 0
            while True:
                for index in range(checked, len(self.lines)):
                    match = regex.search(self.lines[index].rstrip("\n"))
                    if match and index not in self._used:
                        self._used.add(index)
                        return match
                checked = len(self.lines)
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise AssertionError(
                        f"example exited ({self.proc.returncode}) before {pattern!r}:\n"
                        f"{self.output}\n--- stderr ---\n{self.stderr[-4000:]}"
                    )
                self.lines.append(raw.decode(errors="replace"))

        try:
            return await asyncio.wait_for(scan(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"no line matching {pattern!r} within {timeout} s:\n{self.output}"
                f"\n--- stderr ---\n{self.stderr[-4000:]}"
            ) from None

    async def interrupt(self, timeout: float = 20.0) -> int:
        """Ctrl-C, then the exit status (the rest of stdout is collected)."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        assert self.proc.stdout is not None
        rest = await asyncio.wait_for(self.proc.stdout.read(), timeout)
        self.lines.extend(rest.decode(errors="replace").splitlines(keepends=True))
        return await asyncio.wait_for(self.proc.wait(), timeout)


RunExample = Callable[..., "contextlib.AbstractAsyncContextManager[Example]"]


@pytest.fixture
def run_example(tmp_path: Path) -> Callable[..., contextlib.AbstractAsyncContextManager[Example]]:
    """``async with run_example("chat.py", *args, stdin=True) as ex`` runs an example."""
    counter = iter(range(100))

    @contextlib.asynccontextmanager
    async def start(script: str, *args: str, stdin: bool = False) -> AsyncIterator[Example]:
        stderr_path = tmp_path / f"{script}-{next(counter)}.stderr"
        env = {**os.environ, "METERED_REALTIME_LOOPBACK": "1", "PYTHONUNBUFFERED": "1"}
        with stderr_path.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(EXAMPLES / script),
                *args,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=tmp_path,
            )
        example = Example(proc, stderr_path)
        try:
            yield example
        finally:
            if proc.returncode is None:
                proc.kill()  # only this example's own process, by its pid
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), 10)

    return start
