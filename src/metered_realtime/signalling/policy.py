"""The reconnect policy as pure functions."""

from __future__ import annotations

import math

from ..protocol.codes import SLOW_BACKOFF_CLOSE_CODES, TERMINAL_CLOSE_CODES
from .options import ReconnectOptions

__all__ = ["SLOW_BACKOFF_FLOOR", "backoff_delay", "base_delay", "should_reconnect"]

SLOW_BACKOFF_FLOOR = 30.0


def base_delay(attempt: int, opts: ReconnectOptions) -> float:
    """``min(initial * multiplier**(attempt-1), max_delay)`` without overflow."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    if opts.multiplier == 1:
        return min(opts.initial_delay, opts.max_delay)
    # compare in log space so huge attempt numbers never overflow
    exponent = attempt - 1
    if math.log(opts.initial_delay) + exponent * math.log(opts.multiplier) >= math.log(
        opts.max_delay
    ):
        return opts.max_delay
    return min(opts.initial_delay * opts.multiplier**exponent, opts.max_delay)


def backoff_delay(
    attempt: int, last_close_code: int | None, u: float, opts: ReconnectOptions
) -> float:
    """Delay in seconds before reconnect attempt ``attempt`` (1-based since the last stable
    connection, see ``ReconnectOptions.stable_after``).

    ``last_close_code`` is the close code of the drop that preceded this attempt (``None``
    when the previous attempt never opened a socket); a 4010 raises the base to the 30 s
    floor for this one attempt. ``u`` is uniform in ``[-1, 1)``; the jitter is
    ``base * jitter_ratio * u`` and the result is never negative.
    """
    if not -1.0 <= u <= 1.0:
        raise ValueError("u must be within [-1, 1]")
    base = base_delay(attempt, opts)
    if last_close_code is not None and last_close_code in SLOW_BACKOFF_CLOSE_CODES:
        base = max(base, SLOW_BACKOFF_FLOOR)
    return max(0.0, base + base * opts.jitter_ratio * u)


def should_reconnect(
    *,
    explicit_close: bool,
    opts: ReconnectOptions | None,
    ever_connected: bool,
    close_code: int | None,
    attempts_made: int,
) -> bool:
    """Whether another attempt is allowed after a drop or a failed attempt."""
    if explicit_close or opts is None or not ever_connected:
        return False
    if close_code is not None and close_code in TERMINAL_CLOSE_CODES:
        return False
    return attempts_made < opts.max_attempts
