"""WebSocket frames on the server's side (RFC 6455), without I/O.

``ClientFrames`` parses what a client sends: masked frames, messages possibly fragmented,
control frames between fragments. It calls a ``FrameHandler`` for each message and control
frame, in order, and stops at the first violation with the close code RFC 6455 names for
it (1002 protocol error, 1007 invalid UTF-8, 1009 too big). A frame's declared length is
checked before its payload is buffered, so memory per connection is bounded by
``max_size``. Unmasking is websockets' C routine.

The ``*_frame`` functions build what the server sends: unmasked, unfragmented frames.
"""

from __future__ import annotations

from typing import Protocol

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

SPLIT_AT = 16 * 1024
"""A payload this big is written beside its header rather than copied behind it."""

PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
NO_STATUS = 1005
"""The code a close frame without a payload stands for (never sent on the wire)."""

_VALID_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))
_CONT, _TEXT, _BINARY, _CLOSE = 0, 1, 2, 8
PING, PONG = 9, 10
"""The control opcodes the server sends (``control_frame``)."""


class FrameHandler(Protocol):
    """What ``ClientFrames.feed`` reports to."""

    def on_message(self, message: str | bytes) -> None:
        """A whole text (``str``) or binary (``bytes``) message."""

    def on_ping(self, payload: bytes) -> None: ...

    def on_pong(self, payload: bytes) -> None: ...

    def on_close(self, code: int, reason: str) -> None:
        """The client's close frame (``NO_STATUS`` when it had no payload); nothing follows."""

    def on_fail(self, code: int, reason: str) -> None:
        """The client broke the protocol; nothing follows."""


class ClientFrames:
    """The frames of one client connection, parsed incrementally (see the module)."""

    __slots__ = ("_done", "_max_size", "_need", "_parts", "_pending", "_size", "_text")

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._pending: bytearray | None = None
        # Bytes the pending buffer must hold before parsing can make progress.
        self._need = 0
        # A fragmented message's frames so far (None outside one), its size and kind.
        self._parts: list[bytes] | None = None
        self._size = 0
        self._text = False
        self._done = False

    def feed(self, data: bytes, handler: FrameHandler) -> None:
        """Parse ``data`` (the next bytes from the client), reporting to ``handler``."""
        if self._done:
            return
        pending = self._pending
        if pending is not None:
            pending += data
            if len(pending) < self._need:
                return
            data = bytes(pending)
            self._pending = None
        end = len(data)
        pos = 0
        while not self._done:
            if end - pos < 2:
                self._keep(data, pos, 2)
                return
            first, second = data[pos], data[pos + 1]
            opcode = first & 0x0F
            length = second & 0x7F
            if first & 0x70:
                return self._fail(handler, PROTOCOL_ERROR, "reserved bits must be 0")
            if not second & 0x80:
                return self._fail(handler, PROTOCOL_ERROR, "incorrect masking")
            head = 6
            if length >= 126:
                head = 8 if length == 126 else 14
                if end - pos < head:
                    self._keep(data, pos, head)
                    return
                if head == 8:
                    length = data[pos + 2] << 8 | data[pos + 3]
                else:
                    length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            if opcode >= _CLOSE:
                if opcode > PONG:
                    return self._fail(handler, PROTOCOL_ERROR, f"invalid opcode: {opcode}")
                if not first & 0x80:
                    return self._fail(handler, PROTOCOL_ERROR, "fragmented control frame")
                if length > 125:
                    return self._fail(handler, PROTOCOL_ERROR, "control frame too long")
            elif opcode > _BINARY:
                return self._fail(handler, PROTOCOL_ERROR, f"invalid opcode: {opcode}")
            elif self._size + length > self._max_size:
                return self._fail(
                    handler,
                    MESSAGE_TOO_BIG,
                    f"over size limit ({self._size + length} > {self._max_size} bytes)",
                )
            if end - pos < head + length:
                self._keep(data, pos, head + length)
                return
            start = pos + head
            pos = start + length
            payload = apply_mask(data[start:pos], data[start - 4 : start])
            if first == 0x81 and self._parts is None:  # one whole text message: most are
                try:
                    message = payload.decode()
                except UnicodeDecodeError as exc:
                    return self._invalid_utf8(handler, exc)
                handler.on_message(message)
            elif opcode < _CLOSE:
                self._data(handler, opcode, bool(first & 0x80), payload)
            elif opcode == PING:
                handler.on_ping(payload)
            elif opcode == PONG:
                handler.on_pong(payload)
            else:
                self._close(handler, payload)

    def _keep(self, data: bytes, pos: int, need: int) -> None:
        if pos < len(data):
            self._pending = bytearray(data[pos:])
            self._need = need

    def _data(self, handler: FrameHandler, opcode: int, fin: bool, payload: bytes) -> None:
        parts = self._parts
        if opcode == _CONT:
            if parts is None:
                return self._fail(handler, PROTOCOL_ERROR, "unexpected continuation frame")
            parts.append(payload)
            self._size += len(payload)
            if not fin:
                return
            payload = b"".join(parts)
            self._parts = None
            self._size = 0
            text = self._text
        else:
            if parts is not None:
                return self._fail(handler, PROTOCOL_ERROR, "expected a continuation frame")
            text = opcode == _TEXT
            if not fin:
                self._parts = [payload]
                self._size = len(payload)
                self._text = text
                return
        if not text:
            handler.on_message(payload)
            return
        try:
            message = payload.decode()
        except UnicodeDecodeError as exc:
            return self._invalid_utf8(handler, exc)
        handler.on_message(message)

    def _close(self, handler: FrameHandler, payload: bytes) -> None:
        if not payload:
            self._done = True
            handler.on_close(NO_STATUS, "")
            return
        if len(payload) == 1:
            return self._fail(handler, PROTOCOL_ERROR, "close frame too short")
        code = int.from_bytes(payload[:2], "big")
        if code not in _VALID_CODES and not 3000 <= code < 5000:
            return self._fail(handler, PROTOCOL_ERROR, f"invalid status code {code}")
        try:
            reason = payload[2:].decode()
        except UnicodeDecodeError as exc:
            return self._invalid_utf8(handler, exc)
        self._done = True
        handler.on_close(code, reason)

    def _invalid_utf8(self, handler: FrameHandler, exc: UnicodeDecodeError) -> None:
        self._fail(handler, INVALID_DATA, f"{exc.reason} at position {exc.start}")

    def _fail(self, handler: FrameHandler, code: int, reason: str) -> None:
        self._done = True
        self._pending = None
        self._parts = None
        handler.on_fail(code, reason)


def text_frame(payload: bytes) -> tuple[bytes] | tuple[bytes, bytes]:
    """One text frame as the buffers to write: header and payload joined, or side by side
    when the payload is big (a presence snapshot), so it is not copied again."""
    size = len(payload)
    if size < 126:
        return (bytes((0x81, size)) + payload,)
    if size < SPLIT_AT:
        return (bytes((0x81, 126, size >> 8, size & 0xFF)) + payload,)
    if size < 65536:
        head = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return (head, payload)


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; ``NO_STATUS`` gives an empty one. The reason is cut to fit 125 bytes."""
    if code == NO_STATUS:
        return b"\x88\x00"
    body = code.to_bytes(2, "big") + reason.encode()[:123].decode(errors="ignore").encode()
    return bytes((0x88, len(body))) + body


def control_frame(opcode: int, payload: bytes) -> bytes:
    """A ping (``PING``) or pong (``PONG``) frame; ``payload`` is at most 125 bytes."""
    return bytes((0x80 | opcode, len(payload))) + payload
