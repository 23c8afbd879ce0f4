"""Per-second rates for the web console, from the hub's counters, in a bounded ring.

The counters only ever grow; a sample keeps their values at one moment, and a rate is the
difference between two samples over the time between them. The ring holds
``capacity`` samples, so the history covers ``capacity * interval`` seconds and no more.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

SAMPLE_INTERVAL = 2.0
"""Seconds between samples."""

SAMPLE_CAPACITY = 180
"""Samples kept: six minutes at the default interval."""


@dataclass(frozen=True, slots=True)
class Sample:
    """The counters at one moment."""

    t: float
    frames: int
    deliveries: int
    closes: tuple[tuple[int, int], ...]


class RateRing:
    """The last ``capacity`` samples; ``series`` turns them into rates."""

    def __init__(self, capacity: int = SAMPLE_CAPACITY) -> None:
        self._samples: deque[Sample] = deque(maxlen=capacity + 1)

    def record(self, t: float, frames: int, deliveries: int, closes: dict[int, int]) -> None:
        """Keep the counters' values at time ``t`` (the oldest sample falls out when full)."""
        self._samples.append(Sample(t, frames, deliveries, tuple(sorted(closes.items()))))

    def series(self) -> list[dict[str, Any]]:
        """One entry per interval between samples, oldest first: frames in and deliveries
        out a second, and the closes by code in that interval."""
        out: list[dict[str, Any]] = []
        previous: Sample | None = None
        for sample in self._samples:
            if previous is not None and sample.t > previous.t:
                span = sample.t - previous.t
                before = dict(previous.closes)
                closes = {
                    str(code): n - before.get(code, 0)
                    for code, n in sample.closes
                    if n > before.get(code, 0)
                }
                out.append(
                    {
                        "t": round(sample.t, 3),
                        "in": round((sample.frames - previous.frames) / span, 3),
                        "out": round((sample.deliveries - previous.deliveries) / span, 3),
                        "closes": closes,
                    }
                )
            previous = sample
        return out
