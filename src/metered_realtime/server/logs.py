"""Log records the server hands to ``logging``, scrubbed of credentials before any handler.

The connections' logger (:func:`endpoint_logger`) reports requests it cannot parse and
failures of the code a message runs, whose text or traceback may hold a credential (a
request line is ``GET /v1?key=pk_live_...``). It bears the name
``metered_realtime.server.endpoint`` and obeys that logger's level and handlers, but masks
keys, tokens and TURN credentials in every message and traceback first, whatever the
application's own logging configuration is.
"""

from __future__ import annotations

import logging

from .._scrub import scrub

__all__ = ["ScrubFilter", "endpoint_logger"]

_FORMATTER = logging.Formatter()


class ScrubFilter(logging.Filter):
    """Masks credentials in a record's message, exception and stack text (never drops one).

    The exception is formatted here, scrubbed, and kept as ``exc_text`` only (``exc_info``
    is cleared), so no handler can format the unscrubbed original again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep what can be read
            message = f"{record.msg!s} {record.args!r}"
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


class _ScrubbedLogger(logging.Logger):
    """A logger outside the registry that scrubs its records, then hands them to ``parent``.

    Levels are always the parent's (not cached here), so configuring the parent the usual
    way keeps working.
    """

    def __init__(self, parent: logging.Logger) -> None:
        super().__init__(parent.name)
        self.parent = parent
        self.addFilter(ScrubFilter())

    def getEffectiveLevel(self) -> int:
        assert self.parent is not None
        return self.parent.getEffectiveLevel()

    def isEnabledFor(self, level: int) -> bool:
        assert self.parent is not None
        return self.parent.isEnabledFor(level)


def endpoint_logger() -> logging.Logger:
    """The scrubbing logger the server's connections log to."""
    return _ScrubbedLogger(logging.getLogger("metered_realtime.server.endpoint"))
