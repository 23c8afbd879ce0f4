"""Plain HTTP beside the WebSocket endpoint, and the limits on new connections.

Every request but an upgrade on ``/v1`` (health, metrics, the admin API) is parsed with h11
by an ``HttpExchange`` and answered by a ``Router``, one request per connection. A plain
request's head is checked first (path, method, bearer token): a body is read only for a
request that will be served. ``endpoint`` routes each connection by its request line.
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
from logging import Logger
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

MAX_HEAD = 16 * 1024
"""A plain HTTP request's line and headers."""
MAX_BODY = 1024 * 1024
"""A plain HTTP request's body (the admin API's JSON)."""


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


class HttpExchange:
    """One HTTP request and its response, parsed and written with h11.

    The request's head is admitted by the router before any of its body is read; a request
    refused then (or one whose body is too large) is answered at once, the rest of its body
    is read and dropped until the client closes, so it sees the answer rather than a reset.
    """

    def __init__(self, router: Router, transport: asyncio.Transport, logger: Logger) -> None:
        self._router = router
        self._transport = transport
        self._logger = logger
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._request: HttpRequest | None = None
        self._body = bytearray()
        self.done = False
        """The answer is written (the client may still be sending what is dropped)."""
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
                refused = self._router.admit(self._request)
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
        return not self.done

    def _start(self, early: HttpResponse | None) -> None:
        self._task = asyncio.ensure_future(self._respond(early))

    async def _respond(self, early: HttpResponse | None) -> None:
        response = early
        if response is None:
            assert self._request is not None
            request = dataclasses.replace(self._request, body=bytes(self._body))
            try:
                response = await self._router.dispatch(request)
            except Exception:
                self._logger.error("http handler failed", exc_info=True)
                response = HttpResponse.json(500, {"error": "internal error"})
        head = h11.Response(
            status_code=response.status,
            headers=[
                ("content-type", response.content_type),
                ("content-length", str(len(response.body))),
                ("connection", "close"),
            ],
        )
        transport = self._transport
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
        self._transport.close()
        self._set_done()

    def _set_done(self) -> None:
        self.done = True


def _head(event: h11.Request) -> HttpRequest:
    target = urlsplit(event.target.decode("latin-1"))
    return HttpRequest(
        event.method.decode("ascii", "replace"),
        target.path,
        parse_qs(target.query),
        {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers},
        b"",
    )


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
