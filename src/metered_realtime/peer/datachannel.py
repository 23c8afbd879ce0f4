"""``DataChannel``: a backpressure wrapper around an aiortc ``RTCDataChannel``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from .._emitter import EventEmitter
from .._logging import Logger
from .._swallow import best_effort
from ..errors import DataChannelOverflowError, MeteredRealtimeError
from ..events import DCClose, DCError, DCMessage, DCOpen


class DataChannel(EventEmitter):
    """Sends in call order, suspending while the channel's buffer is too full.

    Events: :class:`DCOpen`, :class:`DCClose`, :class:`DCError`, :class:`DCMessage`.
    """

    def __init__(
        self,
        channel: Any,
        *,
        max_buffered_amount: int = 1_048_576,
        buffered_amount_low_threshold: int | None = None,
        max_queued_sends: int = 256,
        buffer_poll_interval: float = 0.1,
        logger: Logger | None = None,
    ) -> None:
        if max_buffered_amount <= 0:
            raise ValueError("max_buffered_amount must be positive")
        if max_queued_sends <= 0:
            raise ValueError("max_queued_sends must be positive")
        if not buffer_poll_interval > 0:
            raise ValueError("buffer_poll_interval must be positive")
        self._init_emitter(logger)
        self._channel = channel
        self._max = int(max_buffered_amount)
        low = (
            self._max // 2
            if buffered_amount_low_threshold is None
            else buffered_amount_low_threshold
        )
        self._low_threshold = int(low)
        self._max_queued = int(max_queued_sends)
        self._poll = float(buffer_poll_interval)
        self._closed = False
        self._waiting = 0
        self._lock = asyncio.Lock()
        self._low = asyncio.Event()
        self.label: str = str(getattr(channel, "label", ""))
        # aiortc refuses a threshold outside 0..2**32-1; the poll fallback still works then.
        with best_effort(
            self._emitter_logger, "setting the low-buffer threshold", self._ctx(), (ValueError,)
        ):
            channel.bufferedAmountLowThreshold = self._low_threshold
        self._listeners: list[tuple[str, Callable[..., None]]] = [
            ("open", self._on_open),
            ("close", self._on_close),
            ("message", self._on_message),
            ("error", self._on_error),
            ("bufferedamountlow", self._on_low),
        ]
        for name, fn in self._listeners:
            channel.on(name, fn)

    # --- properties ---------------------------------------------------------

    @property
    def ready_state(self) -> str:
        if self._closed:
            return "closed"
        return str(getattr(self._channel, "readyState", "closed"))

    @property
    def buffered_amount(self) -> int:
        return int(getattr(self._channel, "bufferedAmount", 0))

    @property
    def channel(self) -> Any:
        """The wrapped aiortc channel."""
        return self._channel

    def __repr__(self) -> str:
        return f"<DataChannel label={self.label!r} state={self.ready_state}>"

    # --- channel callbacks --------------------------------------------------

    def _ctx(self) -> dict[str, Any]:
        return {"label": self.label}

    def _on_open(self) -> None:
        self.emit(DCOpen())

    def _on_close(self) -> None:
        if self._closed:
            return
        self.emit(DCClose())
        self._cleanup()

    def _on_message(self, data: Any) -> None:
        if isinstance(data, (str, bytes)):
            self.emit(DCMessage(data))

    def _on_error(self, err: Any) -> None:
        if not isinstance(err, Exception):
            err = MeteredRealtimeError(str(err))
        self.emit(DCError(err))

    def _on_low(self) -> None:
        self._low.set()

    # --- sending ------------------------------------------------------------

    async def send(self, data: str | bytes) -> None:
        """Send one message; waits while the buffer is over ``max_buffered_amount``."""
        if self._closed:
            raise MeteredRealtimeError("DataChannel is closed")
        if isinstance(data, str):
            size = len(data.encode("utf-8"))
        elif isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
            size = len(data)
        else:
            raise TypeError("data must be str or bytes")
        if size > self._max:
            raise MeteredRealtimeError(
                f"payload of {size} bytes exceeds max_buffered_amount {self._max}"
            )
        if self._waiting >= self._max_queued:
            raise DataChannelOverflowError(self._waiting, self._max_queued)
        if self.ready_state != "open":
            raise MeteredRealtimeError(f"DataChannel is not open ({self.ready_state})")
        self._waiting += 1
        try:
            async with self._lock:
                while not self._closed and self.buffered_amount + size > self._max:
                    self._low.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._low.wait(), self._poll)
                if self._closed or self.ready_state != "open":
                    raise MeteredRealtimeError("DataChannel closed while sending")
                self._channel.send(data)
        finally:
            self._waiting -= 1

    # --- closing ------------------------------------------------------------

    def _cleanup(self) -> None:
        self._closed = True
        for name, fn in self._listeners:
            # pyee raises KeyError for a listener it no longer has.
            with best_effort(self._emitter_logger, "removing a listener", self._ctx(), (KeyError,)):
                self._channel.remove_listener(name, fn)
        self._low.set()  # wake suspended sends; they see _closed and fail
        self._teardown_emitter()

    def close(self) -> None:
        """Close the channel (idempotent); pending sends fail."""
        if self._closed:
            return
        self._cleanup()
        with best_effort(self._emitter_logger, "closing the data channel", self._ctx()):
            self._channel.close()
