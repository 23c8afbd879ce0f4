"""What the scripts under ``examples/`` share: where to connect, from flags or the environment."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Callable

from .embedded import embedded_server

HOSTED_URL = "wss://rms.metered.ca"


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection flags every example shares: ``--url``, ``--key`` and ``--server``."""
    parser.add_argument("--url", help="server origin (env METERED_REALTIME_URL)")
    parser.add_argument("--key", help="publishable key (env METERED_REALTIME_KEY)")
    parser.add_argument("--server", action="store_true", help="start an embedded server")


@contextlib.asynccontextmanager
async def example_connection(
    args: argparse.Namespace, log: Callable[[str], None] | None = None
) -> AsyncIterator[tuple[str, str]]:
    """``(url, key)``: an embedded server's with ``--server``, else ``--url``/``--key`` or the
    ``METERED_REALTIME_URL``/``METERED_REALTIME_KEY`` environment (the hosted service by
    default)."""
    if args.server:
        async with embedded_server() as srv:
            line = f"embedded server: url {srv.url} key {srv.api_key}"
            if log is None:
                print(line, flush=True)
            else:
                log(line)
            yield srv.url, srv.api_key
        return
    url = args.url or os.environ.get("METERED_REALTIME_URL") or HOSTED_URL
    key = args.key or os.environ.get("METERED_REALTIME_KEY")
    if not key:
        raise SystemExit("pass --key (or set METERED_REALTIME_KEY), or use --server")
    yield url, key
