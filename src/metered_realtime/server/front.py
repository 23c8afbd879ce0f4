"""Plain HTTP beside the WebSocket endpoint, on the same port.

websockets parses only ``GET`` requests, so each TCP connection is routed by its request
line: ``GET /v1`` goes to websockets, everything else (health, metrics, the admin API) is
parsed with h11 and answered by a ``Router``, one request per connection.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import InvalidHandshake

MAX_REQUEST_LINE = 16 * 1024
MAX_BODY = 1024 * 1024


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


class Router:
    """Routes ``(method, path pattern)`` to handlers; ``{name}`` captures one path segment."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self._routes.append((method, re.compile(regex + r"\Z"), handler))

    async def dispatch(self, request: HttpRequest) -> HttpResponse:
        allowed = False
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if match is None:
                continue
            if method != request.method:
                allowed = True
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
        if allowed:
            return HttpResponse.json(405, {"error": "method not allowed"})
        return HttpResponse.json(404, {"error": "not found"})


class _Exchange:
    """One HTTP request and its response, parsed and written with h11."""

    def __init__(self, conn: FrontConnection) -> None:
        self._conn = conn
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_LINE)
        self._request: h11.Request | None = None
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
                self._request = event
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

    def _start(self, early: HttpResponse | None) -> None:
        self._task = asyncio.ensure_future(self._respond(early))

    async def _respond(self, early: HttpResponse | None) -> None:
        response = early
        if response is None:
            assert self._request is not None
            target = urlsplit(self._request.target.decode("latin-1"))
            request = HttpRequest(
                self._request.method.decode("ascii", "replace"),
                target.path,
                parse_qs(target.query),
                {
                    k.decode("latin-1").lower(): v.decode("latin-1")
                    for k, v in self._request.headers
                },
                bytes(self._body),
            )
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
        self._finish()

    def _finish(self) -> None:
        self._conn.transport.close()
        if not self.done.done():
            self.done.set_result(None)


class FrontConnection(ServerConnection):
    """A websockets connection that hands any request but ``GET /v1`` to a ``Router``."""

    router: Router

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sniffed: bytearray | None = bytearray()
        self._exchange: _Exchange | None = None
        self._routed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self._sniffed is None:
            if self._exchange is not None:
                self._exchange.feed(data)
            else:
                super().data_received(data)
            return
        self._sniffed += data
        end = self._sniffed.find(b"\r\n")
        if end < 0:
            if len(self._sniffed) > MAX_REQUEST_LINE:
                self.transport.close()
            return
        buffered, self._sniffed = bytes(self._sniffed), None
        method, _, rest = buffered[:end].partition(b" ")
        target = rest.partition(b" ")[0]
        if method != b"GET" or urlsplit(target).path != b"/v1":
            self._exchange = _Exchange(self)
            self._exchange.feed(buffered)
        else:
            super().data_received(buffered)
        if not self._routed.done():
            self._routed.set_result(None)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
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
