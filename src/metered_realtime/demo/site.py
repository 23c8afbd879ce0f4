"""A static site on a loopback port, served by the standard library from a daemon thread:
the demo's browser page, and the browser tests' harness page."""

from __future__ import annotations

import functools
import http.server
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

log = logging.getLogger("metered_realtime.demo")

#: A route's body (a file is read at each request) and its content type.
Route = tuple[bytes | Path, str]

HTML = "text/html; charset=utf-8"
JAVASCRIPT = "text/javascript; charset=utf-8"


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[Mapping[str, Route]] = {}
    timeout = 5  # a client that stalls mid-request releases its thread

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, *, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        route = self.routes.get(path)
        if route is None:
            self.send_error(204 if path == "/favicon.ico" else 404)
            return
        source, ctype = route
        body = source.read_bytes() if isinstance(source, Path) else source
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("site: " + format, *args)


class StaticSite:
    """Serves ``routes`` (path -> body and content type) on ``host``:``port`` (0: any free
    port) until :meth:`close`; GET and HEAD only."""

    def __init__(self, routes: Mapping[str, Route], host: str = "127.0.0.1", port: int = 0):
        handler = type("Handler", (_Handler,), {"routes": dict(routes)})
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=functools.partial(self.httpd.serve_forever, poll_interval=0.2),
            name="metered-realtime-site",
            daemon=True,
        )
        self.thread.start()

    @property
    def url(self) -> str:
        """The site's root, ``http://host:port/``."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def close(self) -> None:
        """Stop serving and release the port (waits for the serving thread, 5 s at most)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
