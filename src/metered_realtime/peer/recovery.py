"""The ICE recovery ladder as pure functions of (state, now).

aiortc cannot restart ICE in place, so each attempt rebuilds the whole connection and
re-offers. Attempts start 0, 1, 2, 4, 8, 16, 30, 30, 30 s after the previous one failed; each
waits up to 15 s for ``connected``. After nine failed attempts the ladder reports exhaustion
once and stays latched until the next ``connected`` (PROTOCOL.md section 7.5).
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
    return replace(state, next_attempt_at=now + ATTEMPT_DELAYS[0])


def on_connected(state: RecoveryState) -> RecoveryState:
    """A successful connect resets the budget and re-arms exhaustion reporting."""
    return RecoveryState()


def cancel(state: RecoveryState) -> RecoveryState:
    """Stop any pending attempt, keeping the latch (used while signalling is down)."""
    return RecoveryState(exhausted=state.exhausted)


def on_tick(state: RecoveryState, now: float) -> tuple[RecoveryState, Step | None]:
    """Advance the ladder at ``now``; returns the step to carry out, if any."""
    if state.probe_deadline is not None and now >= state.probe_deadline:
        if state.attempts >= len(ATTEMPT_DELAYS):
            return RecoveryState(attempts=state.attempts, exhausted=True), "exhausted"
        state = replace(
            state,
            probe_deadline=None,
            next_attempt_at=now + ATTEMPT_DELAYS[state.attempts],
        )
    if state.next_attempt_at is not None and now >= state.next_attempt_at:
        return (
            replace(
                state,
                attempts=state.attempts + 1,
                next_attempt_at=None,
                probe_deadline=now + PROBE_TIMEOUT,
            ),
            "attempt",
        )
    return state, None
