"""The ``metered-realtime demo`` subcommand: its flags and entry point."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .loopback import LOOPBACK_ENV
from .run import DemoOptions, run_demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` subcommand's flags."""
    parser.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: any free one)")
    parser.add_argument("--db", default=None, help="SQLite store (default: a temporary file)")
    parser.add_argument("--room", default="demo", help="room (channel) name")
    parser.add_argument(
        "--loopback",
        action="store_true",
        help=f"keep WebRTC on 127.0.0.1 (the default unless --browser; also {LOOPBACK_ENV}=1)",
    )
    parser.add_argument(
        "--lan",
        action="store_true",
        help="let WebRTC use the machine's network interfaces (the default with --browser)",
    )
    parser.add_argument(
        "--browser", action="store_true", help="also serve a page to join from a browser tab"
    )
    parser.add_argument("--http-port", type=int, default=0, help="port of the browser page")
    parser.add_argument("--sdk-js", default=None, help="path of the JS SDK's index.umd.js")
    parser.add_argument("--timeout", type=float, default=60.0, help="limit for the scripted run")
    parser.add_argument("--tone", type=float, default=440.0, help="tone frequency in Hz")
    parser.add_argument("--pings", type=int, default=10, help="ping-pongs per path")


def options_from(args: argparse.Namespace) -> DemoOptions:
    """The run's settings from the parsed flags."""
    return DemoOptions(
        host=args.host,
        port=args.port,
        db=args.db,
        room=args.room,
        # Two peers in one process need nothing but loopback; a browser tab needs real
        # interfaces, since browsers do not gather 127.0.0.1 candidates.
        loopback=args.loopback or not (args.lan or args.browser),
        browser=args.browser,
        http_port=args.http_port,
        sdk_js=args.sdk_js,
        timeout=args.timeout,
        tone=args.tone,
        pings=max(1, min(args.pings, 1000)),
    )


def main(args: argparse.Namespace) -> int:
    """Entry point of ``metered-realtime demo`` (flags from :func:`add_arguments`)."""
    opts = options_from(args)
    if not (20 <= opts.tone <= 4000):
        print("--tone must be between 20 and 4000 Hz", file=sys.stderr)
        return 2
    return asyncio.run(run_demo(opts))
