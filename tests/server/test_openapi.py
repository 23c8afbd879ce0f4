"""The admin API's OpenAPI document: valid, served behind the admin token, and in step with
the router (every route documented, nothing documented that does not exist)."""

from __future__ import annotations

from openapi_spec_validator import validate
from tests.server.test_admin import TOKEN, call

from metered_realtime.server.admin import AdminApi
from metered_realtime.server.app import Server
from metered_realtime.server.config import ServerConfig
from metered_realtime.server.openapi import document


def _routes(tmp_path) -> set[tuple[str, str]]:
    server = Server(ServerConfig(db=str(tmp_path / "routes.db"), admin_token=TOKEN))
    try:
        return set(AdminApi(server).routes().patterns)
    finally:
        server.store.close()


def test_document_matches_the_router(tmp_path):
    documented = {
        (method.upper(), path)
        for path, operations in document()["paths"].items()
        for method in operations
    }
    routed = _routes(tmp_path)
    assert routed - documented == set(), "routes without an OpenAPI entry"
    assert documented - routed == set(), "OpenAPI entries without a route"


def test_document_is_valid_openapi():
    validate(document())


async def test_served_with_the_admin_token(server_factory):
    async with server_factory(admin_token=TOKEN) as srv:
        port = srv.server.port
        assert (await call(port, "GET", "/admin/openapi.json", token=None))[0] == 401
        status, body, ctype = await call(port, "GET", "/admin/openapi.json")
        assert status == 200 and ctype.startswith("application/json")
        assert body == document()
        assert "/admin/peers/{peer}/disconnect" in body["paths"]
