"""Client messages handed to the server as they are parsed, in the protocol callback.

websockets queues each message and wakes the connection's handler task for it: a task
switch, a future and an assembler per message, which was a third of the server's time per
directed round trip. ``MessageTap`` takes complete messages out of ``process_event`` instead
and calls the consumer set with ``deliver_to`` at once, so every message one read brings is
routed in that same callback (and their output is corked together, see ``outbound``).

Messages parsed before a consumer is set (a client may pipeline frames behind its upgrade
request, or send while its credential is checked) wait in a short list; past
``EARLY_MESSAGES`` reading pauses until ``deliver_to``, as websockets' own queue would.
Control frames (ping, pong, close) stay with websockets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.frames import DATA_OPCODES, OP_CONT, OP_TEXT, CloseCode, Frame

EARLY_MESSAGES = 16
"""Messages held before the server takes them; then the socket stops being read."""

Consumer = Callable[[str | bytes], None]


class MessageTap(ServerConnection):
    """A server connection whose data messages go straight to one consumer callback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._consumer: Consumer | None = None
        self._early: list[str | bytes] = []
        # A fragmented message's parts so far; websockets bounds their total by max_size.
        self._parts: list[bytes] = []
        self._text = False
        self._failed = False

    def deliver_to(self, consumer: Consumer) -> None:
        """Hand every message, those held so far first, to ``consumer`` from now on.

        The handshake's path and headers are dropped: read what you need of them first.
        A text message arrives as ``str``, a binary one as ``bytes``. ``consumer`` runs in
        the protocol callback: it must not block, and what it raises is logged and closes
        the connection with 1011.
        """
        self._consumer = consumer
        # The handshake is read by now. Kept, its headers were ~2.5 KiB a connection, and its
        # path holds the credential.
        if self.request is not None:
            self.request.path = ""
            self.request.headers = Headers()
        if self.response is not None:
            self.response.headers = Headers()
        early, self._early = self._early, []
        for message in early:
            self._consume(consumer, message)
        if len(early) >= EARLY_MESSAGES:
            self.transport.resume_reading()

    def process_event(self, event: Any) -> None:
        if self.request is None or not isinstance(event, Frame):
            super().process_event(event)
            return
        if event.opcode not in DATA_OPCODES:
            super().process_event(event)  # pong: websockets acknowledges its pings
            return
        if self._failed:
            return  # parsed in the same read as the message that failed the connection
        if event.opcode is not OP_CONT:
            self._parts = []
            self._text = event.opcode is OP_TEXT
        if not event.fin:
            self._parts.append(bytes(event.data))
            return
        if self._parts:
            self._parts.append(bytes(event.data))
            data = b"".join(self._parts)
            self._parts = []
        else:
            data = bytes(event.data)
        message: str | bytes = data
        if self._text:
            try:
                message = data.decode()
            except UnicodeDecodeError as exc:
                # What websockets does for a text message that is not UTF-8.
                self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
        consumer = self._consumer
        if consumer is not None:
            self._consume(consumer, message)
            return
        self._early.append(message)
        if len(self._early) == EARLY_MESSAGES:
            self.transport.pause_reading()

    def _consume(self, consumer: Consumer, message: str | bytes) -> None:
        try:
            consumer(message)
        except Exception:
            self.logger.error("message consumer failed", exc_info=True)
            self._fail(CloseCode.INTERNAL_ERROR, "")

    def _fail(self, code: CloseCode, reason: str) -> None:
        self._failed = True
        self.protocol.fail(code, reason)
        self.send_data()
