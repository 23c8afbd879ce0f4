"""Debian's nginx in front of a test server, configured from the template the docs quote.

`running_nginx(...)` renders ``docs/nginx/metered-realtime.conf`` (TLS terminated by nginx,
``/v1`` proxied with the WebSocket upgrade headers, the HTTP routes beside it), wraps it in
a main configuration of its own (a temporary prefix: pid, logs and temp paths; one process,
in the foreground) and starts ``/usr/sbin/nginx`` on a free loopback port. nginx connects
to the server from ``UPSTREAM_SOURCE``, so a server can tell the proxy (trusted) from the
clients (127.0.0.1). Only the process started here is ever stopped, by its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support.redis import free_port
from tests.support.waiting import accepts

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATE = ROOT / "docs" / "nginx" / "metered-realtime.conf"
NGINX = "/usr/sbin/nginx"
UPSTREAM_SOURCE = "127.0.0.2"
"""The address nginx connects to the upstream from (test only: ``proxy_bind``)."""

# Test-only: foreground, one process (master_process off also keeps nginx from switching
# to another user, which a user namespace mapping only root could not do), everything under
# the prefix, and the access log carrying what the server is told.
MAIN_CONFIG = """\
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{
    worker_connections 256;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    proxy_bind {source};
    include {prefix}/metered-realtime.conf;
}}
"""


class NginxUnavailable(RuntimeError):
    """nginx did not start."""


def nginx_missing() -> str | None:
    """Why nginx cannot run here, or None when it can."""
    if not os.access(NGINX, os.X_OK):
        return f"{NGINX} is missing: apt-get install nginx"
    return None


def render(template: str, **values: str) -> str:
    """The template with each ``@NAME@`` replaced; every placeholder must be given."""
    for name, value in values.items():
        template = template.replace(f"@{name.upper()}@", value)
    leftover = re.findall(r"@[A-Z_]+@", template)
    if leftover:
        raise ValueError(f"placeholders left in the nginx template: {leftover}")
    return template


@dataclasses.dataclass(frozen=True)
class Nginx:
    """A running nginx: its TLS port and its error log."""

    port: int
    prefix: Path

    @property
    def url(self) -> str:
        """The origin for the SDKs (the certificate holds ``localhost``)."""
        return f"wss://localhost:{self.port}"

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text(errors="replace")


@contextlib.asynccontextmanager
async def running_nginx(
    prefix: Path, upstream_port: int, cert: Path, key: Path, timeout: float = 10.0
) -> AsyncIterator[Nginx]:
    """nginx terminating TLS with ``cert``/``key`` in front of 127.0.0.1:``upstream_port``."""
    missing = nginx_missing()
    if missing is not None:
        raise NginxUnavailable(missing)
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    site = render(
        TEMPLATE.read_text(),
        upstream=f"127.0.0.1:{upstream_port}",
        listen=f"127.0.0.1:{port}",
        server_name="localhost",
        cert=str(cert),
        key=str(key),
    )
    (prefix / "metered-realtime.conf").write_text(site)
    main = prefix / "nginx.conf"
    main.write_text(MAIN_CONFIG.format(prefix=prefix, source=UPSTREAM_SOURCE))
    error_log = prefix / "error.log"
    proc = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(prefix), "-c", str(main), "-e", str(error_log),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await accepts("127.0.0.1", port):
            if proc.returncode is not None:
                raise NginxUnavailable(f"nginx exited with {proc.returncode}: {_tail(error_log)}")
            if loop.time() > deadline:
                raise NginxUnavailable(f"nginx did not listen within {timeout} s")
            await asyncio.sleep(0.02)  # a poll step: nginx signals readiness no other way
        yield Nginx(port, prefix)
    finally:
        if proc.returncode is None:
            proc.terminate()  # SIGTERM: a fast shutdown
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no error log)"
