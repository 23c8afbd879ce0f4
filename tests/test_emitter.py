"""The event model shared by every emitter."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from metered_realtime._emitter import EventEmitter
from metered_realtime.events import DCClose, DCOpen, Event, StateChange


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def debug(self, msg: str, ctx: Any = None) -> None:
        self.lines.append(("debug", msg))

    def info(self, msg: str, ctx: Any = None) -> None:
        self.lines.append(("info", msg))

    def warning(self, msg: str, ctx: Any = None) -> None:
        self.lines.append(("warning", msg))

    def error(self, msg: str, ctx: Any = None) -> None:
        self.lines.append(("error", msg))


@dataclass(frozen=True, slots=True)
class Sub(StateChange):
    pass


def ev(n: int = 0) -> StateChange:
    return StateChange(str(n), "x")


def test_on_returns_handler_and_decorator_form() -> None:
    em = EventEmitter()
    got: list[Any] = []

    def h(e: Any) -> None:
        got.append(("h", e))

    assert em.on(StateChange, h) is h

    @em.on(StateChange)
    def deco(e: Any) -> None:
        got.append(("deco", e))

    assert callable(deco) and deco.__name__ == "deco"
    em.on(StateChange, h)  # duplicates fire twice
    e = ev()
    em.emit(e)
    assert got == [("h", e), ("deco", e), ("h", e)]
    assert em.listener_count(StateChange) == 3


def test_exact_class_dispatch() -> None:
    em = EventEmitter()
    base: list[Any] = []
    parent: list[Any] = []
    em.on(Event, base.append)
    em.on(StateChange, parent.append)
    em.emit(Sub("a", "b"))
    em.emit(DCOpen())
    assert base == [] and parent == []


def test_once_and_off() -> None:
    em = EventEmitter()
    got: list[int] = []

    def h(e: StateChange) -> None:
        got.append(int(e.from_))

    assert em.once(StateChange, h) is h
    em.emit(ev(1))
    em.emit(ev(2))
    assert got == [1]
    em.once(StateChange, h)
    em.off(StateChange, h)  # §14.4: off removes a once registration too
    em.emit(ev(3))
    assert got == [1]
    em.off(StateChange, h)  # silent when absent
    em.off(DCClose, h)

    @em.once(StateChange)
    def deco(e: StateChange) -> None:
        got.append(100)

    em.emit(ev(4))
    em.emit(ev(5))
    assert got == [1, 100]


def test_off_removes_first_match_only() -> None:
    em = EventEmitter()
    got: list[int] = []
    h = got.append
    em.on(StateChange, h)
    em.on(StateChange, h)
    em.off(StateChange, h)
    assert em.listener_count(StateChange) == 1


def test_once_removed_before_call_even_when_reentrant() -> None:
    em = EventEmitter()
    calls: list[str] = []

    def h(e: StateChange) -> None:
        calls.append(e.from_)
        if e.from_ == "outer":
            em.emit(StateChange("inner", "x"))

    em.once(StateChange, h)
    em.emit(StateChange("outer", "x"))
    assert calls == ["outer"]


def test_snapshot_makes_on_off_during_dispatch_safe() -> None:
    em = EventEmitter()
    got: list[str] = []

    def late(e: StateChange) -> None:
        got.append("late")

    def first(e: StateChange) -> None:
        got.append("first")
        em.off(StateChange, second)
        em.on(StateChange, late)

    def second(e: StateChange) -> None:
        got.append("second")

    em.on(StateChange, first)
    em.on(StateChange, second)
    em.emit(ev())
    assert got == ["first", "second"]  # this dispatch used the snapshot
    got.clear()
    em.emit(ev())
    assert got == ["first", "late"]


def test_handler_errors_are_isolated_and_scrubbed() -> None:
    log = Recorder()
    em = EventEmitter(logger=log)
    got: list[Any] = []

    def bad(e: Any) -> None:
        raise RuntimeError("failed for wss://h/v1?token=eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl")

    em.on(StateChange, bad)
    em.on(StateChange, got.append)
    em.emit(ev())
    assert len(got) == 1
    assert len(log.lines) == 1 and log.lines[0][0] == "error"
    assert "RuntimeError" in log.lines[0][1]
    assert "eyJ" not in log.lines[0][1] and "token=***" in log.lines[0][1]


async def test_async_handlers_are_tasks_and_errors_logged() -> None:
    log = Recorder()
    em = EventEmitter(logger=log)
    gate = asyncio.Event()
    order: list[str] = []

    async def slow(e: Any) -> None:
        await gate.wait()
        order.append("slow")

    async def broken(e: Any) -> None:
        raise ValueError("key=pk_live_abc123")

    em.on(StateChange, slow)
    em.on(StateChange, broken)
    em.on(StateChange, lambda e: order.append("sync"))
    em.emit(ev())
    assert order == ["sync"]
    assert em._pending_handler_tasks == 2
    gate.set()
    await em.drain(1.0)
    assert order == ["sync", "slow"]
    assert em._pending_handler_tasks == 0
    assert any("ValueError" in m and "pk_live_abc123" not in m for _, m in log.lines)


async def test_drain_cancels_stragglers() -> None:
    em = EventEmitter()
    cancelled = asyncio.Event()

    async def forever(e: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    em.on(StateChange, forever)
    em.emit(ev())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await em.drain(0.1)
    assert loop.time() - t0 < 1.0
    assert cancelled.is_set()


async def test_drain_from_inside_a_handler_does_not_wait_on_itself() -> None:
    em = EventEmitter()
    done = asyncio.Event()

    async def closer(e: Any) -> None:
        await em.drain(5.0)
        done.set()

    em.on(StateChange, closer)
    em.emit(ev())
    await asyncio.wait_for(done.wait(), 1.0)


async def test_events_stream_iterates_and_closes() -> None:
    em = EventEmitter()
    stream = em.events(StateChange)
    assert em.listener_count(StateChange) == 0  # streams are not counted
    em.emit(ev(1))
    em.emit(ev(2))
    assert (await stream.__anext__()).from_ == "1"
    pending = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    stream.close()  # wakes the pending __anext__ after the queued event
    assert (await pending).from_ == "2"
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    stream.close()  # idempotent
    em.emit(ev(3))
    assert stream.qsize() == 0


async def test_events_stream_close_wakes_waiter() -> None:
    em = EventEmitter()
    async with em.events(StateChange) as stream:
        waiter = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiter, 1.0)


async def test_events_stream_drops_oldest_when_full() -> None:
    em = EventEmitter()
    stream = em.events(StateChange, maxsize=3)
    for i in range(10):
        em.emit(ev(i))
    assert stream.dropped == 7
    stream.close()
    assert [e.from_ async for e in stream] == ["7", "8", "9"]
    unbounded = em.events(StateChange, maxsize=0)
    for i in range(10_000):
        em.emit(ev(i))
    assert unbounded.qsize() == 10_000
    with pytest.raises(ValueError):
        em.events(StateChange, maxsize=-1)


async def test_teardown_drops_handlers_and_ends_streams() -> None:
    em = EventEmitter()
    em.on(StateChange, lambda e: None)
    stream = em.events(StateChange)

    async def consume() -> list[Any]:
        return [e async for e in stream]

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    em._teardown_emitter()
    assert await asyncio.wait_for(task, 1.0) == []
    assert em.listener_count(StateChange) == 0


def test_type_checks() -> None:
    em = EventEmitter()
    with pytest.raises(TypeError):
        em.on(str, print)  # type: ignore[type-var]
    with pytest.raises(TypeError):
        em.on(StateChange, 42)  # type: ignore[call-overload]
