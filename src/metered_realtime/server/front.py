"""The front door: plain HTTP beside the WebSocket endpoint, and the limits on new connections.

websockets parses only ``GET`` requests, so each TCP connection is routed by its request
line: ``GET /v1`` goes to websockets, everything else (health, metrics, the admin API) is
parsed with h11 and answered by a ``Router``, one request per connection. A plain request's
head is checked first (path, method, bearer token): a body is read only for a request that
will be served.

The request line of an upgrade carries the credential (``?token=`` may be longer than the
8 KiB line websockets accepts), so it is read here and kept as ``FrontConnection.target``; a
line too long for websockets is handed to it as ``GET /v1``. A line longer even than
``line_limit`` is skipped unread (up to ``MAX_SKIPPED_LINE``) and the connection marked
``oversized``, so the server can still complete the upgrade and refuse the credential with a
close code the SDKs stop at, rather than drop a connection they would retry forever.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
from websockets import http11
from websockets.exceptions import InvalidHandshake

from .inbound import MessageTap

MAX_HEAD = 16 * 1024
"""A plain HTTP request's line and headers."""
MAX_BODY = 1024 * 1024
"""A plain HTTP request's body (the admin API's JSON)."""
MAX_SKIPPED_LINE = 1024 * 1024
"""An upgrade's request line past ``line_limit`` is skipped up to this size, then dropped."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = field(repr=False)
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON (an empty body is an empty object); ValueError when invalid."""
        if not self.body:
            return {}
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, value: Any) -> HttpResponse:
        return cls(status, (json.dumps(value) + "\n").encode())

    @classmethod
    def text(cls, status: int, text: str) -> HttpResponse:
        return cls(status, text.encode(), "text/plain; charset=utf-8")


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
Gate = Callable[[HttpRequest], HttpResponse | None]


class Router:
    """Routes ``(method, path pattern)`` to handlers; ``{name}`` captures one path segment.

    Gates check a request's head (its headers: a bearer token) before any handler runs,
    and before its body is read (``admit``).
    """

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._gates: list[tuple[str, Gate]] = []
        self.patterns: list[tuple[str, str]] = []
        """Every ``(method, path pattern)`` added, in order (what the OpenAPI test checks)."""

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self._routes.append((method, re.compile(regex + r"\Z"), handler))
        self.patterns.append((method, pattern))

    def gate(self, path: str, check: Gate) -> None:
        """Run ``check`` first for ``path`` (or every path under it, when it ends with ``/``);
        a response it returns is the answer."""
        self._gates.append((path, check))

    def admit(self, request: HttpRequest) -> HttpResponse | None:
        """The answer a request gets from its head alone (401, 404, 405), or None to serve it."""
        for path, check in self._gates:
            if request.path.startswith(path) if path.endswith("/") else request.path == path:
                refused = check(request)
                if refused is not None:
                    return refused
        allowed = False
        for method, regex, _ in self._routes:
            if regex.match(request.path) is not None:
                if method == request.method:
                    return None
                allowed = True
        if allowed:
            return HttpResponse.json(405, {"error": "method not allowed"})
        return HttpResponse.json(404, {"error": "not found"})

    async def dispatch(self, request: HttpRequest) -> HttpResponse:
        refused = self.admit(request)
        if refused is not None:
            return refused
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if match is None or method != request.method:
                continue
            routed = HttpRequest(
                request.method,
                request.path,
                request.query,
                request.headers,
                request.body,
                match.groupdict(),
            )
            return await handler(routed)
        return HttpResponse.json(404, {"error": "not found"})  # pragma: no cover - admitted


class _Exchange:
    """One HTTP request and its response, parsed and written with h11.

    The request's head is admitted by the router before any of its body is read; a request
    refused then (or one whose body is too large) is answered at once, the rest of its body
    is read and dropped until the client closes, so it sees the answer rather than a reset.
    """

    def __init__(self, conn: FrontConnection) -> None:
        self._conn = conn
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._request: HttpRequest | None = None
        self._body = bytearray()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None

    def feed(self, data: bytes) -> None:
        if self._task is not None:
            return
        self._h11.receive_data(data)
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError:
                self._start(HttpResponse.json(400, {"error": "bad request"}))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request = _head(event)
                refused = self._conn.router.admit(self._request)
                if refused is not None:
                    self._start(refused)
                    return
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > MAX_BODY:
                    self._start(HttpResponse.json(413, {"error": "body too large"}))
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._start(None)
                return
            else:
                self._finish()
                return

    def eof_received(self) -> bool:
        """The client closed its side: True keeps the transport open for a response due."""
        if self._task is None:
            self.feed(b"")  # tells h11; an incomplete request is answered 400
        return not self.done.done()

    def _start(self, early: HttpResponse | None) -> None:
        self._task = asyncio.ensure_future(self._respond(early))

    async def _respond(self, early: HttpResponse | None) -> None:
        response = early
        if response is None:
            assert self._request is not None
            request = dataclasses.replace(self._request, body=bytes(self._body))
            try:
                response = await self._conn.router.dispatch(request)
            except Exception:
                self._conn.logger.error("http handler failed", exc_info=True)
                response = HttpResponse.json(500, {"error": "internal error"})
        head = h11.Response(
            status_code=response.status,
            headers=[
                ("content-type", response.content_type),
                ("content-length", str(len(response.body))),
                ("connection", "close"),
            ],
        )
        transport = self._conn.transport
        try:
            out = self._h11.send(head) or b""
            out += self._h11.send(h11.Data(data=response.body)) or b""
            out += self._h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:  # a request so broken h11 refuses to answer it
            out = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        transport.write(out)
        unread = self._h11.their_state is h11.SEND_BODY
        if unread and transport.can_write_eof() and not transport.is_closing():
            # Answered before the whole body came: read the rest and drop it until the
            # client closes (within the handshake timeout). Closing with unread data
            # would reset the connection, and the client might never see this answer.
            transport.write_eof()
            self._set_done()
            return
        self._finish()

    def _finish(self) -> None:
        self._conn.transport.close()
        self._set_done()

    def _set_done(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _head(event: h11.Request) -> HttpRequest:
    target = urlsplit(event.target.decode("latin-1"))
    return HttpRequest(
        event.method.decode("ascii", "replace"),
        target.path,
        parse_qs(target.query),
        {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers},
        b"",
    )


class FrontConnection(MessageTap):
    """A websockets connection that hands any request but ``GET /v1`` to a ``Router``.

    Subclasses set ``router``; ``websocket = False`` makes every request plain HTTP (the
    admin listener); ``line_limit`` bounds an upgrade's request line.
    """

    router: Router
    websocket: bool = True
    line_limit: int = MAX_HEAD

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sniffed: bytearray | None = bytearray()
        self._skipped: int | None = None
        self._exchange: _Exchange | None = None
        self._routed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.target: str | None = None
        """An upgrade's request target as the client sent it (websockets sees ``/v1``)."""
        self.oversized = False
        """The upgrade's request line was longer than ``line_limit``; ``target`` is its start."""
        self.client_host: str | None = None
        """An admitted upgrade's client address (from a trusted proxy's X-Forwarded-For)."""

    def data_received(self, data: bytes) -> None:
        if self._skipped is not None:
            self._skip(data)
            return
        if self._sniffed is None:
            if self._exchange is not None:
                self._exchange.feed(data)
            else:
                super().data_received(data)
            return
        self._sniffed += data
        end = self._sniffed.find(b"\r\n")
        if 0 <= end <= self.line_limit:
            buffered, self._sniffed = bytes(self._sniffed), None
            self._route(buffered[:end], buffered[end + 2 :])
        elif len(self._sniffed) > self.line_limit:
            buffered, self._sniffed = bytes(self._sniffed), None
            if not (self.websocket and buffered.startswith(b"GET /v1?")):
                self.transport.close()
                return
            # An over-long credential: keep the line's start, skip the rest of it.
            self.oversized = True
            self.target = buffered[4 : self.line_limit].partition(b" ")[0].decode("latin-1")
            self._skipped = self.line_limit
            self._skip(buffered[self.line_limit :])

    def _skip(self, data: bytes) -> None:
        assert self._skipped is not None
        end = data.find(b"\n")
        if end < 0:
            self._skipped += len(data)
            if self._skipped > MAX_SKIPPED_LINE:
                self.transport.close()
            return
        self._skipped = None
        self._upgrade(None, b"HTTP/1.1", data[end + 1 :])

    def _route(self, line: bytes, rest: bytes) -> None:
        method, _, remainder = line.partition(b" ")
        target, _, version = remainder.partition(b" ")
        if self.websocket and method == b"GET" and urlsplit(target).path == b"/v1":
            self.target = target.decode("latin-1")
            self._upgrade(line, version, rest)
            return
        self._exchange = _Exchange(self)
        self._exchange.feed(line + b"\r\n" + rest)
        if not self._routed.done():
            self._routed.set_result(None)

    def _upgrade(self, line: bytes | None, version: bytes, rest: bytes) -> None:
        # A line websockets would refuse as too long is handed over without its query;
        # the handler reads the credential from ``target``.
        if line is None or len(line) + 2 > http11.MAX_LINE_LENGTH:
            line = b"GET /v1 " + version
        super().data_received(line + b"\r\n" + rest)
        if not self._routed.done():
            self._routed.set_result(None)

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio allows True
        if self._exchange is not None:
            return self._exchange.eof_received()
        return super().eof_received()

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        # The server runs this under its open_timeout (the handshake timeout): a client
        # that sends its request too slowly, upgrade or plain HTTP, is dropped.
        await asyncio.wait(
            [self._routed, self.connection_lost_waiter], return_when=asyncio.FIRST_COMPLETED
        )
        if self._exchange is None:
            try:
                await super().handshake(*args, **kwargs)
            except InvalidHandshake as exc:
                # The client's fault: a TCP probe (a load balancer's health check) that
                # closes without a request, garbage, or a plain GET /v1 without Upgrade
                # (answered 426). Not worth websockets' ERROR with a traceback.
                self.logger.debug("opening handshake failed: %s", exc, exc_info=True)
            return
        await self._exchange.done
        # Let the response flush before websockets aborts the socket it never upgraded.
        await self.connection_lost_waiter


class ConnectRateLimiter:
    """New connections per client address: one token bucket each, in a bounded table.

    ``rate`` tokens a second refill a bucket up to ``burst``; each connection takes one.
    IPv6 addresses count per /64 (one host commonly holds a whole /64), IPv4-mapped ones as
    IPv4, and addresses in the ``exempt`` networks (and anything that is not an IP address,
    such as a Unix socket's peer) are never limited.

    Memory stays bounded however many addresses a client uses: a bucket idle long enough to
    be full again is forgotten (it is no different from a new one), and with
    ``max_entries`` addresses tracked the least recently seen one is dropped, which gives
    it a full bucket again should it come back. A client with more addresses than that can
    therefore cycle through them; the table, though, never grows.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_entries: int = 65536,
        exempt: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_entries = max_entries
        self._exempt = [ipaddress.ip_network(net, strict=False) for net in exempt]
        self._clock = clock
        self._idle = burst / rate
        # key -> (tokens, time of the last refill), least recently seen first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, host: str) -> bool:
        """Take a token for a connection from ``host``; False when it has none left."""
        key = self._key(host)
        if key is None:
            return True
        now = self._clock()
        buckets = self._buckets
        while buckets and now - next(iter(buckets.values()))[1] >= self._idle:
            buckets.popitem(last=False)
        entry = buckets.pop(key, None)
        if entry is None:
            tokens = self.burst
            if len(buckets) >= self.max_entries:
                buckets.popitem(last=False)
        else:
            tokens = min(self.burst, entry[0] + (now - entry[1]) * self.rate)
        allowed = tokens >= 1
        buckets[key] = (tokens - 1 if allowed else tokens, now)
        return allowed

    def _key(self, host: str) -> str | None:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in self._exempt):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            return ipaddress.IPv6Network((address, 64), strict=False).with_prefixlen
        return str(address)
