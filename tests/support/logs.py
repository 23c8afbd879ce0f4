"""A logger for tests that keeps what it was given."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Recorder:
    """A Logger that keeps every line: (level, message, context)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, Mapping[str, Any] | None]] = []

    def _add(self, level: str, msg: str, ctx: Mapping[str, Any] | None) -> None:
        self.lines.append((level, msg, ctx))

    def debug(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self._add("debug", msg, ctx)

    def info(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self._add("info", msg, ctx)

    def warning(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self._add("warning", msg, ctx)

    def error(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self._add("error", msg, ctx)
