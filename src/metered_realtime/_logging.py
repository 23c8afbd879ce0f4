"""The ``Logger`` protocol and the two loggers the SDK ships."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from ._scrub import scrub, scrub_value

__all__ = ["Logger", "NoopLogger", "ScrubbingLogger", "StdlibLogger"]


@runtime_checkable
class Logger(Protocol):
    """Anything with ``debug``/``info``/``warning``/``error(msg, ctx=None)``."""

    def debug(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None: ...

    def info(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None: ...

    def warning(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None: ...

    def error(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None: ...


class NoopLogger:
    """Drops everything (the default)."""

    def debug(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        pass

    def info(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        pass

    def warning(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        pass

    def error(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        pass

    def __repr__(self) -> str:
        return "NoopLogger()"


class StdlibLogger:
    """Forwards to a :class:`logging.Logger` (default name ``"metered_realtime"``).

    With a non-empty context the line is the message followed by the context's repr.
    Lines are scrubbed of credentials here as well, whoever calls.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger if logger is not None else logging.getLogger("metered_realtime")

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    def _log(self, level: int, msg: str, ctx: Mapping[str, Any] | None) -> None:
        if not self._logger.isEnabledFor(level):
            return
        line = msg if not ctx else f"{msg} {scrub_value(dict(ctx))!r}"
        self._logger.log(level, "%s", scrub(line))

    def debug(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self._log(logging.DEBUG, msg, ctx)

    def info(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self._log(logging.INFO, msg, ctx)

    def warning(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self._log(logging.WARNING, msg, ctx)

    def error(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self._log(logging.ERROR, msg, ctx)

    def __repr__(self) -> str:
        return f"StdlibLogger({self._logger.name!r})"


class ScrubbingLogger:
    """Wraps any :class:`Logger`: every message and context is scrubbed first.

    ``secrets`` returns the exact credential strings currently in use (kept in a
    closure by the owner, never stored here as data). A failing inner logger never
    propagates into the SDK.
    """

    def __init__(self, inner: Logger, secrets: Callable[[], Iterable[str]] | None = None) -> None:
        self._inner = inner
        self._secrets = secrets

    @property
    def inner(self) -> Logger:
        return self._inner

    def _call(self, name: str, msg: str, ctx: Mapping[str, Any] | None) -> None:
        try:
            secrets = tuple(self._secrets()) if self._secrets is not None else ()
            clean_ctx = scrub_value(dict(ctx), secrets) if ctx else None
            getattr(self._inner, name)(scrub(str(msg), secrets), clean_ctx)
        except Exception:  # a logger must never break the SDK
            pass

    def debug(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self._call("debug", msg, ctx)

    def info(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self._call("info", msg, ctx)

    def warning(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self._call("warning", msg, ctx)

    def error(self, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        self._call("error", msg, ctx)

    def __repr__(self) -> str:
        return f"ScrubbingLogger({self._inner!r})"
