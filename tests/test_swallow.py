"""Best-effort steps: expected failures pass quietly, others are logged, none is hidden."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from tests.support.logs import Recorder

from metered_realtime._swallow import best_effort

SRC = Path(__file__).resolve().parents[1] / "src" / "metered_realtime"


def test_expected_failures_pass_quietly_and_others_are_logged_with_the_context() -> None:
    log = Recorder()
    with best_effort(log, "closing", {"peer": "p1"}, (KeyError,)):
        raise KeyError("gone")
    assert log.lines == []
    with best_effort(log, "closing", {"peer": "p1"}, (KeyError,)):
        raise RuntimeError("surprise")
    assert log.lines == [
        ("debug", "closing failed", {"peer": "p1", "error": "RuntimeError('surprise')"})
    ]


def test_cancellation_is_never_swallowed() -> None:
    with pytest.raises(asyncio.CancelledError), best_effort(Recorder(), "waiting"):
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
