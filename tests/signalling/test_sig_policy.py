"""The reconnect policy is a pure function: tested directly, with Hypothesis."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metered_realtime.signalling import ReconnectOptions
from metered_realtime.signalling.policy import backoff_delay, base_delay, should_reconnect

DEFAULT = ReconnectOptions()


def test_nominal_ladder() -> None:
    ladder = [backoff_delay(n, None, 0.0, DEFAULT) for n in range(1, 10)]
    assert ladder == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_jitter_extremes() -> None:
    assert backoff_delay(1, None, -1.0, DEFAULT) == pytest.approx(0.4)
    assert backoff_delay(1, None, 0.999, DEFAULT) == pytest.approx(0.5 + 0.5 * 0.2 * 0.999)


def test_4010_floor_applies_to_that_attempt_only() -> None:
    assert backoff_delay(1, 4010, 0.0, DEFAULT) == 30.0
    assert backoff_delay(1, 4010, -1.0, DEFAULT) == pytest.approx(24.0)
    assert backoff_delay(2, None, 0.0, DEFAULT) == 1.0
    assert backoff_delay(1, 4011, 0.0, DEFAULT) == 0.5
    # a larger configured delay is not lowered by the floor
    big = ReconnectOptions(initial_delay=40, max_delay=60)
    assert backoff_delay(1, 4010, 0.0, big) == 40


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        base_delay(0, DEFAULT)
    with pytest.raises(ValueError):
        backoff_delay(1, None, 1.5, DEFAULT)


options = st.builds(
    lambda initial, mult, extra, jitter, attempts: ReconnectOptions(
        initial_delay=initial,
        multiplier=mult,
        max_delay=initial + extra,
        jitter_ratio=jitter,
        max_attempts=attempts,
    ),
    st.floats(min_value=1e-3, max_value=100),
    st.floats(min_value=1, max_value=10),
    st.floats(min_value=0, max_value=1000),
    st.floats(min_value=0, max_value=1),
    st.one_of(st.integers(min_value=0, max_value=1000), st.just(math.inf)),
)


@given(options, st.integers(min_value=1, max_value=10_000), st.floats(min_value=-1, max_value=1))
def test_delay_is_bounded_and_never_negative(opts: ReconnectOptions, n: int, u: float) -> None:
    d = backoff_delay(n, None, u, opts)
    base = base_delay(n, opts)
    assert opts.initial_delay <= base <= opts.max_delay or math.isclose(base, opts.max_delay)
    assert d >= 0
    assert base * (1 - opts.jitter_ratio) - 1e-9 <= d <= base * (1 + opts.jitter_ratio) + 1e-9


@given(options, st.integers(min_value=1, max_value=500))
def test_base_delay_is_monotonic(opts: ReconnectOptions, n: int) -> None:
    assert base_delay(n, opts) <= base_delay(n + 1, opts) + 1e-9


@given(options, st.integers(min_value=1, max_value=500), st.floats(min_value=-1, max_value=1))
def test_4010_waits_at_least_24s_by_default_jitter(
    opts: ReconnectOptions, n: int, u: float
) -> None:
    d = backoff_delay(n, 4010, u, opts)
    assert d >= 30.0 * (1 - opts.jitter_ratio) - 1e-9


@given(
    explicit=st.booleans(),
    enabled=st.booleans(),
    ever=st.booleans(),
    code=st.one_of(
        st.none(),
        st.sampled_from([1000, 1001, 1006, 1009, 4000, 4001, 4002, 4003, 4010, 4011, 4012, 4020]),
    ),
    made=st.integers(min_value=0, max_value=200),
    budget=st.one_of(st.integers(min_value=0, max_value=200), st.just(math.inf)),
)
def test_should_reconnect_rules(
    explicit: bool, enabled: bool, ever: bool, code: int | None, made: int, budget: float
) -> None:
    opts = ReconnectOptions(max_attempts=budget) if enabled else None
    got = should_reconnect(
        explicit_close=explicit, opts=opts, ever_connected=ever, close_code=code, attempts_made=made
    )
    expected = (
        not explicit and enabled and ever and code not in (4001, 4003, 4012, 4020) and made < budget
    )
    assert got == expected
