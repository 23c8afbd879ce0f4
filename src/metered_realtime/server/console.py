"""The web console's static files (package data in ``console_files/``), served as they are.

No build step and nothing from a CDN: the page is plain HTML, CSS and one script, which
asks for the admin token, keeps it in ``sessionStorage`` and calls the admin API with it.
"""

from __future__ import annotations

from importlib import resources

from .front import HttpRequest, HttpResponse

ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
"""The files served under ``/console/`` and their types; nothing else is."""


def _read(name: str) -> bytes:
    return (resources.files("metered_realtime.server") / "console_files" / name).read_bytes()


async def page(request: HttpRequest) -> HttpResponse:
    """``/console``: the page."""
    return HttpResponse(200, _read("index.html"), "text/html; charset=utf-8")


async def asset(request: HttpRequest) -> HttpResponse:
    """``/console/<file>``: its script and style sheet."""
    name = request.params["file"]
    content_type = ASSETS.get(name)
    if content_type is None:
        return HttpResponse.json(404, {"error": "not found"})
    return HttpResponse(200, _read(name), content_type)
