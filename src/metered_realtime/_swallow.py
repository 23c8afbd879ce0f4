"""Best-effort steps: the failures expected there pass quietly, any other is logged.

Clean-up code (closing, stopping, unsubscribing on the way out) must not raise, but a broad
``suppress(Exception)`` hides real faults. ``best_effort`` names the exceptions a step is
expected to raise and logs any other at debug, with the context the caller gives (the peer
id, the channel), instead of dropping it in silence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from ._logging import Logger

__all__ = ["best_effort"]


@contextlib.contextmanager
def best_effort(
    log: Logger,
    step: str,
    ctx: Mapping[str, Any] | None = None,
    expected: tuple[type[BaseException], ...] = (),
) -> Iterator[None]:
    """Run the block; ``expected`` exceptions pass, any other ``Exception`` is logged at debug."""
    try:
        yield
    except expected:
        pass
    except Exception as exc:
        log.debug(f"{step} failed", {**(ctx or {}), "error": repr(exc)})
