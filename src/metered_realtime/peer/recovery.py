"""The ICE recovery ladder as pure functions of (state, now).

aiortc cannot restart ICE in place, so each attempt rebuilds the whole connection and
re-offers. Attempts start 0, 1, 2, 4, 8, 16, 30, 30, 30 s after the previous one failed; each
waits up to 15 s for ``connected``. After nine failed attempts the ladder reports exhaustion
once and stays latched until the next ``connected``.

The timings travel in the state (``delays``, ``probe_timeout``) so tests can shorten them;
``RecoveryState()`` has the protocol's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

#: Delay before each attempt, measured from the failure that precedes it.
ATTEMPT_DELAYS: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0)
#: How long each attempt waits for ``connected``.
PROBE_TIMEOUT = 15.0

Step = Literal["attempt", "exhausted"]


@dataclass(frozen=True, slots=True)
class RecoveryState:
    """Where the ladder stands. ``RecoveryState()`` is the idle ladder."""

    attempts: int = 0
    next_attempt_at: float | None = None
    probe_deadline: float | None = None
    exhausted: bool = False
    delays: tuple[float, ...] = ATTEMPT_DELAYS
    probe_timeout: float = PROBE_TIMEOUT

    @property
    def active(self) -> bool:
        return self.next_attempt_at is not None or self.probe_deadline is not None

    @property
    def deadline(self) -> float | None:
        if self.next_attempt_at is not None:
            return self.next_attempt_at
        return self.probe_deadline


def on_failed(state: RecoveryState, now: float) -> RecoveryState:
    """The connection failed: start the ladder, or end the current probe early."""
    if state.exhausted:
        return state
    if state.next_attempt_at is not None:
        return state
    if state.probe_deadline is not None:
        return replace(state, probe_deadline=min(state.probe_deadline, now))
    return replace(state, next_attempt_at=now + state.delays[0])


def reset(state: RecoveryState) -> RecoveryState:
    """The idle ladder with the same timings."""
    return RecoveryState(delays=state.delays, probe_timeout=state.probe_timeout)


def on_connected(state: RecoveryState) -> RecoveryState:
    """A successful connect resets the budget and re-arms exhaustion reporting."""
    return reset(state)


def cancel(state: RecoveryState) -> RecoveryState:
    """Stop any pending attempt, keeping the latch (used while signalling is down)."""
    return replace(reset(state), exhausted=state.exhausted)


def on_tick(state: RecoveryState, now: float) -> tuple[RecoveryState, Step | None]:
    """Advance the ladder at ``now``; returns the step to carry out, if any."""
    if state.probe_deadline is not None and now >= state.probe_deadline:
        if state.attempts >= len(state.delays):
            return replace(reset(state), attempts=state.attempts, exhausted=True), "exhausted"
        state = replace(
            state,
            probe_deadline=None,
            next_attempt_at=now + state.delays[state.attempts],
        )
    if state.next_attempt_at is not None and now >= state.next_attempt_at:
        return (
            replace(
                state,
                attempts=state.attempts + 1,
                next_attempt_at=None,
                probe_deadline=now + state.probe_timeout,
            ),
            "attempt",
        )
    return state, None
