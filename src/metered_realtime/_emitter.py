"""One event mechanism for every emitter: ``on``/``once``/``off``/``events()``."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from ._logging import Logger, NoopLogger
from ._scrub import scrub
from .events import Event

__all__ = ["DEFAULT_STREAM_MAXSIZE", "EventEmitter", "EventStream"]

E = TypeVar("E", bound=Event)
H = TypeVar("H", bound=Callable[..., Any])

DEFAULT_STREAM_MAXSIZE = 4096


class _Registration:
    __slots__ = ("handler", "once")

    def __init__(self, handler: Callable[[Any], Any], once: bool) -> None:
        self.handler = handler
        self.once = once


class EventStream(Generic[E]):
    """A bounded async iterator over one event type; drop-oldest when full.

    Also an async context manager whose exit closes it. ``close()`` is idempotent,
    unsubscribes and wakes a pending ``__anext__``; events queued before the close
    are still delivered before iteration ends.
    """

    def __init__(self, owner: EventEmitter, event_type: type[E], maxsize: int) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError("maxsize must be an int >= 0 (0 means unbounded)")
        self._owner: EventEmitter | None = owner
        self._event_type = event_type
        self._buffer: deque[E] = deque(maxlen=maxsize or None)
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._dropped = 0

    @property
    def event_type(self) -> type[E]:
        return self._event_type

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> int:
        """How many events were discarded because the queue was full."""
        return self._dropped

    def qsize(self) -> int:
        return len(self._buffer)

    def _push(self, event: E) -> None:
        if self._closed:
            return
        if self._buffer.maxlen is not None and len(self._buffer) == self._buffer.maxlen:
            self._dropped += 1
        self._buffer.append(event)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._remove_stream(self)
        self._wake()

    def __aiter__(self) -> EventStream[E]:
        return self

    async def __anext__(self) -> E:
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._closed:
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None

    async def __aenter__(self) -> EventStream[E]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<EventStream {self._event_type.__name__} {state} queued={len(self._buffer)}>"


class EventEmitter:
    """Mixin: handlers keyed by exact event class, sync or async, isolated from each other."""

    _emitter_handlers: dict[type[Event], list[_Registration]]
    _emitter_streams: dict[type[Event], list[EventStream[Any]]]
    _emitter_tasks: set[asyncio.Task[Any]]
    _emitter_logger: Logger

    def __init__(self, *, logger: Logger | None = None) -> None:
        self._init_emitter(logger)

    def _init_emitter(self, logger: Logger | None = None) -> None:
        self._emitter_handlers = {}
        self._emitter_streams = {}
        self._emitter_tasks = set()
        self._emitter_logger = logger if logger is not None else NoopLogger()

    # --- registration -------------------------------------------------------

    @overload
    def on(self, event_type: type[E], handler: H) -> H: ...

    @overload
    def on(self, event_type: type[E], handler: None = None) -> Callable[[H], H]: ...

    def on(self, event_type: type[E], handler: H | None = None) -> H | Callable[[H], H]:
        """Register ``handler`` (returned unchanged); without one, return a decorator."""
        _check_event_type(event_type)
        if handler is None:

            def decorator(fn: H) -> H:
                self._add(event_type, fn, once=False)
                return fn

            return decorator
        self._add(event_type, handler, once=False)
        return handler

    @overload
    def once(self, event_type: type[E], handler: H) -> H: ...

    @overload
    def once(self, event_type: type[E], handler: None = None) -> Callable[[H], H]: ...

    def once(self, event_type: type[E], handler: H | None = None) -> H | Callable[[H], H]:
        """Like :meth:`on`, but the registration is removed before its first call."""
        _check_event_type(event_type)
        if handler is None:

            def decorator(fn: H) -> H:
                self._add(event_type, fn, once=True)
                return fn

            return decorator
        self._add(event_type, handler, once=True)
        return handler

    def off(self, event_type: type[Event], handler: Callable[..., Any]) -> None:
        """Remove the first registration of ``handler`` (``on`` or ``once``); silent if absent."""
        regs = self._emitter_handlers.get(event_type)
        if not regs:
            return
        for i, reg in enumerate(regs):
            if reg.handler is handler or reg.handler == handler:
                del regs[i]
                break
        if not regs:
            self._emitter_handlers.pop(event_type, None)

    def listener_count(self, event_type: type[Event]) -> int:
        """Number of callback registrations for ``event_type`` (streams not counted)."""
        return len(self._emitter_handlers.get(event_type, ()))

    def events(
        self, event_type: type[E], *, maxsize: int = DEFAULT_STREAM_MAXSIZE
    ) -> EventStream[E]:
        """A bounded stream of ``event_type`` events (``maxsize=0``: unbounded)."""
        _check_event_type(event_type)
        stream: EventStream[E] = EventStream(self, event_type, maxsize)
        self._emitter_streams.setdefault(event_type, []).append(stream)
        return stream

    def _add(self, event_type: type[Event], handler: Callable[..., Any], *, once: bool) -> None:
        if not callable(handler):
            raise TypeError("handler must be callable")
        self._emitter_handlers.setdefault(event_type, []).append(_Registration(handler, once))

    def _remove_stream(self, stream: EventStream[Any]) -> None:
        streams = self._emitter_streams.get(stream.event_type)
        if streams is None:
            return
        try:
            streams.remove(stream)
        except ValueError:
            return
        if not streams:
            self._emitter_streams.pop(stream.event_type, None)

    # --- dispatch -----------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to its exact class's handlers, then to its open streams."""
        event_type = type(event)
        regs = self._emitter_handlers.get(event_type)
        if regs:
            for reg in tuple(regs):
                if reg.once:
                    live = self._emitter_handlers.get(event_type)
                    if live is None or reg not in live:
                        continue  # already consumed (re-entrant emit) or removed
                    live.remove(reg)
                    if not live:
                        self._emitter_handlers.pop(event_type, None)
                self._invoke(reg.handler, event)
        streams = self._emitter_streams.get(event_type)
        if streams:
            for stream in tuple(streams):
                stream._push(event)

    def _invoke(self, handler: Callable[[Any], Any], event: Event) -> None:
        try:
            result = handler(event)
        except Exception as exc:
            self._report_handler_error(handler, event, exc)
            return
        if inspect.isawaitable(result):
            try:
                task = asyncio.ensure_future(result)
            except RuntimeError as exc:  # no running loop
                if inspect.iscoroutine(result):
                    result.close()
                self._report_handler_error(handler, event, exc)
                return
            self._emitter_tasks.add(task)
            task.add_done_callback(lambda t: self._handler_task_done(t, handler, event))

    def _handler_task_done(
        self, task: asyncio.Task[Any], handler: Callable[..., Any], event: Event
    ) -> None:
        self._emitter_tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and isinstance(exc, Exception):
            self._report_handler_error(handler, event, exc)

    def _report_handler_error(
        self, handler: Callable[..., Any], event: Event, exc: BaseException
    ) -> None:
        name = getattr(handler, "__qualname__", None) or type(handler).__name__
        try:
            text = str(exc)
        except Exception:
            text = ""
        msg = scrub(f"event handler {name} for {type(event).__name__} raised {type(exc).__name__}")
        if text:
            msg += ": " + scrub(text)
        # The application's own logger raised: there is nowhere left to report it.
        with contextlib.suppress(Exception):
            self._emitter_logger.error(msg)

    # --- teardown -----------------------------------------------------------

    @property
    def _pending_handler_tasks(self) -> int:
        return len(self._emitter_tasks)

    async def _drain_handlers(self, timeout: float = 1.0) -> None:
        """Wait up to ``timeout`` for in-flight async handler tasks, then cancel stragglers.

        The calling task is never waited on (a handler may be the one closing).
        """
        current = asyncio.current_task()
        deadline = asyncio.get_running_loop().time() + max(0.0, timeout)
        for _ in range(100):  # handlers may spawn handlers; bounded
            tasks = {t for t in self._emitter_tasks if t is not current and not t.done()}
            if not tasks:
                return
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            await asyncio.wait(tasks, timeout=remaining)
        stragglers = [t for t in self._emitter_tasks if t is not current and not t.done()]
        for task in stragglers:
            task.cancel()
        if stragglers:
            await asyncio.wait(stragglers, timeout=1.0)

    def _teardown_emitter(self) -> None:
        """Drop every handler and close every stream (pending ``async for`` loops end)."""
        self._emitter_handlers.clear()
        streams = [s for group in self._emitter_streams.values() for s in group]
        self._emitter_streams.clear()
        for stream in streams:
            stream.close()

    async def drain(self, timeout: float = 1.0) -> None:
        """Public alias of the teardown wait for in-flight async handlers."""
        await self._drain_handlers(timeout)


def _check_event_type(event_type: object) -> None:
    if not (isinstance(event_type, type) and issubclass(event_type, Event)):
        raise TypeError("event_type must be an Event subclass")
