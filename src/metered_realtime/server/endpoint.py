"""One TCP connection to the server, from its request line to its close: HTTP or a WebSocket.

Each connection is routed by its request line: ``GET /v1`` is a WebSocket upgrade, anything
else is plain HTTP (``front.HttpExchange``). An upgrade's head is parsed with h11 and
checked as RFC 6455 asks; the ``Listener``'s ``admit`` may refuse it with an HTTP status
(draining, too many connections), and once the 101 is written ``opened`` gets the
connection and hands it a consumer for its messages (``deliver_to``).

The request line of an upgrade carries the credential (``?token=`` may be long), so it is
kept as ``Endpoint.target`` until ``deliver_to``. A line longer than ``line_limit`` is
skipped unread (up to ``MAX_SKIPPED_LINE``) and the connection marked ``oversized``, so the
server can still complete the upgrade and refuse the credential with a close code the SDKs
stop at, rather than drop a connection they would retry forever.

Why not websockets' asyncio server: every connection there is a task, a keepalive task,
queues and futures, about 12 KiB of heap when idle, and each message wakes the task. Here a
connection is a slotted ``asyncio.Protocol``: messages reach the consumer in the read
callback (so what one read brings is answered, and corked, together), keepalive pings are
one sweep over every connection per interval, and timers exist only while a connection
opens or closes. Frames are parsed by ``wsframes``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import h11

from .front import MAX_HEAD, HttpExchange, HttpResponse, Router
from .wsframes import PING, PONG, ClientFrames, close_frame, control_frame

MAX_SKIPPED_LINE = 1024 * 1024
"""An upgrade's request line past ``line_limit`` is skipped up to this size, then dropped."""
EARLY_MESSAGES = 16
"""Messages held before the consumer is set; then the socket stops being read."""
INTERNAL_ERROR = 1011
GOING_AWAY = 1001
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

ROUTING, HTTP, HANDSHAKE, OPEN, CLOSING, CLOSED = range(6)
"""An endpoint's states, in the order it goes through them (HTTP never opens)."""

Consumer = Callable[[str | bytes], None]


class Listener:
    """What the endpoints of one listening socket share, and the server's hooks.

    ``admit(endpoint, headers)`` runs for a valid upgrade before it is accepted: it returns
    an ``HttpResponse`` to refuse it. ``opened(endpoint, headers)`` runs once the 101 is
    written, ``closed(endpoint)`` once an opened endpoint's socket is gone. The headers are
    the request's, names in lower case. ``websocket = False`` makes every request plain HTTP
    (the admin listener).
    """

    def __init__(
        self,
        router: Router,
        logger: logging.Logger,
        *,
        handshake_timeout: float,
        websocket: bool = True,
        line_limit: int = MAX_HEAD,
        max_size: int = 1 << 20,
        close_timeout: float = 5.0,
        admit: Callable[[Endpoint, list[tuple[bytes, bytes]]], HttpResponse | None] | None = None,
        opened: Callable[[Endpoint, list[tuple[bytes, bytes]]], None] | None = None,
        closed: Callable[[Endpoint], None] | None = None,
    ) -> None:
        self.router = router
        self.logger = logger
        self.handshake_timeout = handshake_timeout
        self.websocket = websocket
        self.line_limit = line_limit
        self.max_size = max_size
        self.close_timeout = close_timeout
        self.admit = admit
        self.opened = opened
        self.closed = closed
        self.endpoints: set[Endpoint] = set()
        self._server: asyncio.Server | None = None
        self._keepalive: asyncio.TimerHandle | None = None

    async def serve(self, host: str | None, port: int, **kwargs: Any) -> asyncio.Server:
        """Bind and serve; ``kwargs`` go to ``loop.create_server`` (ssl, reuse_port)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Endpoint(self), host, port, **kwargs)
        return self._server

    def keepalive(self, interval: float, timeout: float) -> None:
        """Ping every open connection each ``interval``; close (1011) one whose pong has not
        come ``timeout`` after its ping (checked at the next round when that is later)."""
        loop = asyncio.get_running_loop()

        def round_() -> None:
            self._keepalive = loop.call_later(interval, round_)
            if timeout < interval:
                loop.call_later(timeout, check)
            now = loop.time()
            for endpoint in list(self.endpoints):
                if endpoint.state == OPEN:
                    endpoint.keepalive(now, timeout)

        def check() -> None:
            now = loop.time()
            for endpoint in list(self.endpoints):
                if endpoint.state == OPEN and endpoint.ping_at is not None:
                    endpoint.keepalive(now, timeout)

        self._keepalive = loop.call_later(interval, round_)

    def stop_listening(self) -> None:
        """Take no new connections; those open stay."""
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Stop listening, close every connection (WebSockets with 1001; a plain HTTP request
        is answered first) and wait for them, at most ``close_timeout`` before the rest are
        aborted."""
        self.stop_listening()
        if self._keepalive is not None:
            self._keepalive.cancel()
        endpoints = list(self.endpoints)
        for endpoint in endpoints:
            if endpoint.state != HTTP:
                endpoint.close(GOING_AWAY, "")
        if endpoints:
            waiting = [asyncio.ensure_future(e.wait_closed()) for e in endpoints]
            _, late = await asyncio.wait(waiting, timeout=self.close_timeout)
            for future in late:
                future.cancel()
            for endpoint in endpoints:
                if endpoint.transport is not None and endpoint.state != CLOSED:
                    endpoint.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()


class Endpoint(asyncio.Protocol):
    """One connection (see the module): routing, then HTTP or a WebSocket's frames."""

    __slots__ = (
        "_consumer",
        "_early",
        "_exchange",
        "_frames",
        "_h11",
        "_skipped",
        "_sniffed",
        "_timer",
        "_waiter",
        "client_host",
        "listener",
        "oversized",
        "ping_at",
        "session",
        "state",
        "target",
        "transport",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.state = ROUTING
        self.target: str | None = None
        """An upgrade's request target as the client sent it, until ``deliver_to``."""
        self.oversized = False
        """The upgrade's request line was longer than ``line_limit``; ``target`` is its start."""
        self.client_host: str | None = None
        """The client's address (from a trusted proxy's X-Forwarded-For), set by ``admit``."""
        self.session: Any = None
        """What the server keeps for an opened connection."""
        self.ping_at: float | None = None
        """When the keepalive ping still unanswered was sent."""
        self._sniffed: bytearray | None = bytearray()
        self._skipped: int | None = None
        self._exchange: HttpExchange | None = None
        self._h11: h11.Connection | None = None
        self._frames: ClientFrames | None = None
        self._consumer: Consumer | None = None
        self._early: list[str | bytes] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport
        self.listener.endpoints.add(self)
        loop = asyncio.get_running_loop()
        # A client that sends its request too slowly, upgrade or plain HTTP, is dropped.
        self._timer = loop.call_later(self.listener.handshake_timeout, self._expire)

    def data_received(self, data: bytes) -> None:
        frames = self._frames
        if frames is not None:
            frames.feed(data, self)
        elif self._exchange is not None:
            self._exchange.feed(data)
        elif self._h11 is not None:
            self._handshake(data)
        elif self._skipped is not None:
            self._skip(data)
        elif self._sniffed is not None:
            self._sniff(data)

    def eof_received(self) -> bool | None:
        if self._exchange is not None:
            return self._exchange.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        opened = self.state >= OPEN
        self.state = CLOSED
        self.listener.endpoints.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._frames = self._h11 = None
        self._consumer = self._early = None
        if opened and self.listener.closed is not None:
            self.listener.closed(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- routing --------------------------------------------------------------

    def _sniff(self, data: bytes) -> None:
        sniffed = self._sniffed
        assert sniffed is not None and self.transport is not None
        sniffed += data
        limit = self.listener.line_limit
        end = sniffed.find(b"\r\n")
        if 0 <= end <= limit:
            buffered, self._sniffed = bytes(sniffed), None
            self._route(buffered[:end], buffered[end + 2 :])
        elif len(sniffed) > limit:
            buffered, self._sniffed = bytes(sniffed), None
            if not (self.listener.websocket and buffered.startswith(b"GET /v1?")):
                self.transport.close()
                return
            # An over-long credential: keep the line's start, skip the rest of it.
            self.oversized = True
            self.target = buffered[4:limit].partition(b" ")[0].decode("latin-1")
            self._skipped = limit
            self._skip(buffered[limit:])

    def _skip(self, data: bytes) -> None:
        assert self._skipped is not None and self.transport is not None
        end = data.find(b"\n")
        if end < 0:
            self._skipped += len(data)
            if self._skipped > MAX_SKIPPED_LINE:
                self.transport.close()
            return
        self._skipped = None
        self._upgrade(b"GET /v1 HTTP/1.1", data[end + 1 :])

    def _route(self, line: bytes, rest: bytes) -> None:
        method, _, remainder = line.partition(b" ")
        # Latin-1 maps every byte: a target of any bytes is split, never refused here.
        target = remainder.partition(b" ")[0].decode("latin-1")
        if self.listener.websocket and method == b"GET" and urlsplit(target).path == "/v1":
            self.target = target
            self._upgrade(line, rest)
            return
        assert self.transport is not None
        self.state = HTTP
        self._exchange = HttpExchange(self.listener.router, self.transport, self.listener.logger)
        self._exchange.feed(line + b"\r\n" + rest)

    # --- opening handshake ----------------------------------------------------

    def _upgrade(self, line: bytes, rest: bytes) -> None:
        self.state = HANDSHAKE
        logger = self.listener.logger
        if logger.isEnabledFor(logging.DEBUG):  # scrubbed: the line holds the credential
            logger.debug("< %s", line.decode("latin-1"))
        self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.listener.line_limit + MAX_HEAD
        )
        self._handshake(line + b"\r\n" + rest)

    def _handshake(self, data: bytes) -> None:
        connection = self._h11
        assert connection is not None
        connection.receive_data(data)
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            self._refuse(400, "Failed to open a WebSocket connection: invalid HTTP request.", exc)
            return
        if event is h11.NEED_DATA:
            return
        if not isinstance(event, h11.Request):  # pragma: no cover - h11 gives a Request first
            self._refuse(400, "Failed to open a WebSocket connection.", None)
            return
        headers = list(event.headers)
        problem = _upgrade_problem(event.http_version, headers)
        if problem is not None:
            status, text = problem
            self._refuse(status, f"Failed to open a WebSocket connection: {text}.", text)
            return
        admit = self.listener.admit
        refused = admit(self, headers) if admit is not None else None
        if refused is not None:
            self._respond(refused.status, refused.body, refused.content_type, retry=True)
            return
        key = _header(headers, b"sec-websocket-key")
        assert key is not None and self.transport is not None
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        trailing = connection.trailing_data[0]
        self._h11 = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.state = OPEN
        self._frames = ClientFrames(self.listener.max_size)
        self._early = []
        if self.listener.opened is not None:
            self.listener.opened(self, headers)
        if trailing and self._frames is not None:
            self._frames.feed(trailing, self)

    def _refuse(self, status: int, text: str, why: object) -> None:
        # The client's fault (a TCP probe, garbage, a plain GET /v1): not worth an error.
        self.listener.logger.debug("opening handshake failed: %s", why)
        self._respond(status, (text + "\n").encode(), "text/plain; charset=utf-8")

    def _respond(self, status: int, body: bytes, content_type: str, retry: bool = False) -> None:
        assert self.transport is not None
        head = [
            b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode()),
            b"Content-Type: " + content_type.encode(),
            b"Content-Length: %d" % len(body),
            b"Connection: close",
        ]
        if status == 426:
            head += (b"Upgrade: websocket", b"Sec-WebSocket-Version: 13")
        if retry:
            head.append(b"Retry-After: 1")
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self._h11 = None
        self.state = HTTP  # answered, never opened
        self.transport.close()

    def _expire(self) -> None:
        self._timer = None
        if self.transport is not None and self.state < OPEN:
            self.listener.logger.debug("opening handshake timed out")
            self.transport.abort()

    # --- an open WebSocket ----------------------------------------------------

    def deliver_to(self, consumer: Consumer) -> None:
        """Hand every message, those held so far first, to ``consumer`` from now on.

        ``target`` is dropped: read it first. A text message arrives as ``str``, a binary
        one as ``bytes``. ``consumer`` runs in the read callback: it must not block, and
        what it raises is logged and closes the connection with 1011.
        """
        self.target = None
        if self.state != OPEN:
            return
        self._consumer = consumer
        early, self._early = self._early, None
        if early:
            for message in early:
                if self._consumer is None:
                    break
                self.on_message(message)
            if len(early) >= EARLY_MESSAGES and self.transport is not None:
                self.transport.resume_reading()

    def on_message(self, message: str | bytes) -> None:
        consumer = self._consumer
        if consumer is not None:
            try:
                consumer(message)
            except Exception:
                self._consumer_failed()
            return
        early = self._early
        if early is None:
            return  # closing: the consumer is gone
        early.append(message)
        if len(early) == EARLY_MESSAGES and self.transport is not None:
            self.transport.pause_reading()

    def _consumer_failed(self) -> None:
        self.listener.logger.error("message consumer failed", exc_info=True)
        self.on_fail(INTERNAL_ERROR, "")

    def on_ping(self, payload: bytes) -> None:
        if self.state == OPEN and self.transport is not None:
            self.transport.write(control_frame(PONG, payload))

    def on_pong(self, payload: bytes) -> None:
        self.ping_at = None

    def on_close(self, code: int, reason: str) -> None:
        if self.state == OPEN:
            self._closing(close_frame(code, reason))
        self._finish()

    def on_fail(self, code: int, reason: str) -> None:
        self.listener.logger.debug("failing connection with code %d: %s", code, reason)
        if self.state == OPEN:
            self._closing(close_frame(code, reason))
        self._finish()

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (or drop a connection that is not open yet); the
        socket is aborted if the client has not answered within ``close_timeout``."""
        if self.transport is None or self.state == CLOSED:
            return
        if self.state < OPEN:
            self.transport.close()
            return
        if self.state == OPEN:
            self._closing(close_frame(code, reason))
            self._abort_later()

    def keepalive(self, now: float, timeout: float) -> None:
        """Send a ping, or close (1011) when the last one has waited ``timeout``."""
        if self.ping_at is None:
            assert self.transport is not None
            self.ping_at = now
            self.transport.write(control_frame(PING, b""))
        elif now - self.ping_at >= timeout:
            # Nobody to wait for: the close frame is sent and the socket closed at once.
            self.on_fail(INTERNAL_ERROR, "keepalive ping timeout")

    async def wait_closed(self) -> None:
        """Return once the socket is closed."""
        if self.state == CLOSED:
            return
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)

    @property
    def is_open(self) -> bool:
        """Open for the server's frames (not closing)."""
        return self.state == OPEN

    def _closing(self, frame: bytes) -> None:
        assert self.transport is not None
        self.state = CLOSING
        self._consumer = None
        self._early = None
        self.transport.write(frame)

    def _finish(self) -> None:
        # RFC 6455: the server closes the TCP connection first, once close frames crossed.
        assert self.transport is not None
        self._frames = None
        self.transport.close()
        self._abort_later()  # what is still buffered for a client that stopped reading

    def _abort_later(self) -> None:
        if self._timer is None and self.transport is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.listener.close_timeout, self.transport.abort)


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _tokens(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> set[bytes]:
    found: set[bytes] = set()
    for key, value in headers:
        if key == name:
            found.update(token.strip().lower() for token in value.split(b","))
    return found


def header_values(headers: Iterable[tuple[bytes, bytes]], name: str) -> list[str]:
    """Every value of the header ``name`` (lower case) in a request's headers, in order."""
    wanted = name.encode()
    return [value.decode("latin-1") for key, value in headers if key == wanted]


def _upgrade_problem(version: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, str] | None:
    # What RFC 6455 section 4.2.1 requires of a client's opening handshake.
    if b"upgrade" not in _tokens(headers, b"connection"):
        return 426, "missing Connection: Upgrade"
    if b"websocket" not in _tokens(headers, b"upgrade"):
        return 426, "missing Upgrade: websocket"
    if version != b"1.1":
        return 400, "HTTP/1.1 is required"
    if _header(headers, b"sec-websocket-version") != b"13":
        return 426, "unsupported Sec-WebSocket-Version"
    key = _header(headers, b"sec-websocket-key")
    try:
        valid = key is not None and len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        return 400, "invalid Sec-WebSocket-Key"
    return None
