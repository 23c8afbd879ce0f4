"""Best-effort steps: expected failures pass quietly, others are logged, none is hidden."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from metered_realtime._swallow import best_effort

SRC = Path(__file__).resolve().parents[1] / "src" / "metered_realtime"


class Lines:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Mapping[str, Any] | None]] = []

    def debug(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self.seen.append(("debug", msg, ctx))

    def info(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self.seen.append(("info", msg, ctx))

    def warning(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self.seen.append(("warning", msg, ctx))

    def error(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self.seen.append(("error", msg, ctx))


def test_expected_failures_pass_quietly_and_others_are_logged_with_the_context() -> None:
    log = Lines()
    with best_effort(log, "closing", {"peer": "p1"}, (KeyError,)):
        raise KeyError("gone")
    assert log.seen == []
    with best_effort(log, "closing", {"peer": "p1"}, (KeyError,)):
        raise RuntimeError("surprise")
    assert log.seen == [
        ("debug", "closing failed", {"peer": "p1", "error": "RuntimeError('surprise')"})
    ]


def test_cancellation_is_never_swallowed() -> None:
    with pytest.raises(asyncio.CancelledError), best_effort(Lines(), "waiting"):
        raise asyncio.CancelledError


def test_no_broad_suppress_left_in_the_peer_and_the_client() -> None:
    files = [*sorted((SRC / "peer").glob("*.py")), SRC / "signalling" / "client.py"]
    broad = re.compile(r"suppress\([^)]*\bException\b")
    found = [
        f"{p.name}:{n}"
        for p in files
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if broad.search(line)
    ]
    assert found == []
