"""The page from which a browser tab joins a room with the JavaScript SDK (``--browser``)."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

from .site import HTML, JAVASCRIPT, Route, StaticSite

#: Where the JavaScript SDK's UMD build sits once ``npm install`` ran in tests/interop.
UMD_RELATIVE = Path("tests/interop/node_modules/@metered-ca/realtime/dist/index.umd.js")
JS_SDK_INSTALL_HINT = (
    "the JavaScript SDK is not installed: run `npm install` in tests/interop "
    "(or `npm install @metered-ca/realtime` anywhere and pass --sdk-js "
    "node_modules/@metered-ca/realtime/dist/index.umd.js)"
)
DEMO_INTRO = (
    "<b>alice</b> streams a tone to you (press <i>unmute</i> to hear it) and <b>bob</b> "
    "echoes what you send. The terminal running <code>metered-realtime demo --browser</code> "
    "prints what the Python peers see."
)
# src/metered_realtime/demo/page.py -> the checkout, for an editable install
_CHECKOUT = Path(__file__).resolve().parents[3]
_TEMPLATE = resources.files("metered_realtime.demo") / "page.html"


def find_js_sdk(explicit: str | None = None) -> Path | None:
    """The JavaScript SDK's UMD build: ``explicit``, else tests/interop's copy, else None.

    The copy is looked up under the current directory and under the source checkout this
    package runs from (an editable install).
    """
    if explicit:
        path = Path(explicit)
        return path if path.is_file() else None
    for root in (Path.cwd(), _CHECKOUT):
        candidate = root / UMD_RELATIVE
        if candidate.is_file():
            return candidate
    return None


def browser_page(url: str, key: str, room: str, sdk_available: bool, intro: str) -> bytes:
    """The page (package data ``page.html``) with the connection settings filled in."""
    config = json.dumps({"url": url, "apiKey": key, "room": room, "sdk": sdk_available})
    missing = "" if sdk_available else f"<p class='err'>{html.escape(JS_SDK_INSTALL_HINT)}</p>"
    template = (
        resources.files("metered_realtime.demo").joinpath("page.html").read_text(encoding="utf-8")
    )
    return (
        template.replace("%%CONFIG%%", config.replace("</", "<\\/"))
        .replace("%%MISSING%%", missing)
        .replace("%%ROOM%%", html.escape(room))
        .replace("%%INTRO%%", intro)
        .encode()
    )


@contextlib.asynccontextmanager
async def serve_page(
    url: str,
    api_key: str,
    room: str,
    *,
    port: int = 0,
    sdk_js: str | None = None,
    intro: str = DEMO_INTRO,
) -> AsyncIterator[str]:
    """Serve, on 127.0.0.1, a page that joins ``room`` with the JavaScript SDK.

    Yields the page's address. The page loads the SDK's UMD build from ``/sdk.js``
    (:func:`find_js_sdk` locates it; without it the page says how to install it) and
    offers join, unmute, microphone sharing, broadcast, direct and data channel
    messages. ``intro`` is an HTML fragment shown above the buttons. The publishable
    ``api_key`` is embedded in the page, which is what publishable keys are for.
    """
    sdk = find_js_sdk(sdk_js)
    page: Route = (browser_page(url, api_key, room, sdk is not None, intro), HTML)
    routes = {"/": page, "/index.html": page}
    if sdk is not None:
        routes["/sdk.js"] = (sdk, JAVASCRIPT)
    site = StaticSite(routes, port=port)
    try:
        yield site.url
    finally:
        await asyncio.to_thread(site.close)
