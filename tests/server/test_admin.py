"""Plain HTTP beside the WebSocket endpoint: probes, metrics and the admin API."""

from __future__ import annotations

import asyncio
import http.client
import json
from typing import Any

from tests.server.wire import Wire

TOKEN = "admin-secret-for-tests"


async def call(
    port: int, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> tuple[int, Any, str]:
    def do() -> tuple[int, bytes, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        payload = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data, resp.getheader("content-type") or ""

    status, data, ctype = await asyncio.to_thread(do)
    return (
        status,
        json.loads(data) if ctype.startswith("application/json") else data.decode(),
        ctype,
    )


async def test_probes_and_metrics(server):
    port = server.server.port
    assert (await call(port, "GET", "/healthz", token=None))[:2] == (200, "ok\n")
    assert (await call(port, "GET", "/readyz", token=None))[:2] == (200, "ready\n")
    # Metrics are per node: every connection here goes to the node scraped.
    here = f"ws://127.0.0.1:{port}/v1?key="
    wire = await Wire.open(here + server.api_key)
    await wire.subscribe("room")
    await wire.request({"type": "publish", "channel": "room", "data": 1, "requestId": "p"})
    assert (await (await Wire.open(here + "pk_live_wrong", welcome=False)).refused())[0] == 4001
    status, text, ctype = await call(port, "GET", "/metrics", token=None)
    assert status == 200 and ctype.startswith("text/plain")
    lines = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert lines["metered_realtime_connections"] == "1.0"
    assert lines["metered_realtime_channels"] == "1.0"
    assert lines["metered_realtime_subscriptions"] == "1.0"
    assert float(lines["metered_realtime_connections_total"]) >= 1
    assert float(lines["metered_realtime_deliveries_total"]) >= 1
    assert float(lines["metered_realtime_frames_received_total"]) >= 2
    for _ in range(100):  # the refused socket is counted once its handler ran
        _, text, _ = await call(port, "GET", "/metrics", token=None)
        if 'metered_realtime_refusals_total{code="4001"} 1.0' in text:
            break
        await asyncio.sleep(0.02)
    assert 'metered_realtime_refusals_total{code="4001"} 1.0' in text
    assert server.api_key not in text
    await wire.close()


async def test_http_errors(server_factory):
    async with server_factory(admin_token=TOKEN) as srv:
        port = srv.server.port
        assert (await call(port, "GET", "/nothing"))[0] == 404
        assert (await call(port, "DELETE", "/healthz"))[0] == 405
        assert (await call(port, "POST", "/admin/apps", b"{not json"))[0] == 400
        assert (await call(port, "POST", "/admin/apps", {"name": ""}))[0] == 400
        assert (await call(port, "GET", "/admin/apps/app_nope/keys"))[0] == 404
        # GET /v1 without an upgrade is still websockets' to answer.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1?key=x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 426")
        writer.close()


async def test_admin_needs_its_token(server_factory, server):
    assert (await call(server.server.port, "GET", "/admin/apps"))[0] == 404  # not enabled
    async with server_factory(admin_token=TOKEN) as srv:
        assert (await call(srv.server.port, "GET", "/admin/apps", token=None))[0] == 401
        assert (await call(srv.server.port, "GET", "/admin/apps", token="wrong"))[0] == 401
        status, body, _ = await call(srv.server.port, "GET", "/admin/apps")
        assert status == 200 and [a["id"] for a in body["apps"]] == [srv.app_id]


async def test_admin_manages_apps_and_keys(server_factory):
    async with server_factory(admin_token=TOKEN) as srv:
        port = srv.server.port
        status, app, _ = await call(port, "POST", "/admin/apps", {"name": "shop"})
        assert status == 201 and app["name"] == "shop"
        status, key, _ = await call(
            port,
            "POST",
            f"/admin/apps/{app['id']}/keys",
            {"permissions": ["subscribe", "publish", "presence", "send"], "channels": ["room-*"]},
        )
        assert status == 201 and key["key"].startswith("pk_live_")
        status, secret, _ = await call(
            port, "POST", f"/admin/apps/{app['id']}/keys", {"type": "secret"}
        )
        assert status == 201 and secret["secret"].startswith("sk_live_")
        status, listing, _ = await call(port, "GET", f"/admin/apps/{app['id']}/keys")
        text = json.dumps(listing)
        assert key["key"] not in text and secret["secret"] not in text
        assert listing["publishable"][0]["channels"] == ["room-*"]
        assert listing["secret"] == [{"id": secret["id"], "revoked": False}]
        wire = await Wire.open(srv.key_url(key["key"]))
        assert await wire.subscribe("room-1") == []
        await wire.close()
        assert (await call(port, "DELETE", f"/admin/keys/{key['key']}"))[0] == 200
        refused = await Wire.open(srv.key_url(key["key"]), welcome=False)
        assert (await refused.refused())[0] == 4001
        assert (await call(port, "DELETE", "/admin/keys/pk_live_none"))[0] == 404
        bad = await call(port, "POST", f"/admin/apps/{app['id']}/keys", {"permissions": ["fly"]})
        assert bad[0] == 400


async def test_admin_live_state_disconnect_suspend_and_drain(server_factory):
    async with server_factory(admin_token=TOKEN, drain_grace=0.1) as srv:
        port = srv.server.port
        a = await Wire.open(srv.key_url())
        b = await Wire.open(srv.key_url())
        await a.subscribe("room")
        await b.subscribe("room")
        _, conns, _ = await call(port, "GET", f"/admin/connections?app={srv.app_id}")
        assert {c["peerId"] for c in conns["connections"]} == {a.peer_id, b.peer_id}
        _, channels, _ = await call(port, "GET", "/admin/channels")
        assert channels["channels"] == [
            {"app": srv.app_id, "channel": "room", "subscribers": 2, "members": 2}
        ]
        assert (await call(port, "POST", f"/admin/peers/{b.peer_id}/disconnect"))[0] == 200
        assert (await b.closed())[0] == 4020
        assert (await call(port, "POST", "/admin/peers/nobody/disconnect"))[0] == 404
        status, body, _ = await call(port, "POST", f"/admin/apps/{srv.app_id}/suspend")
        assert status == 200 and body["closed"] == 1
        assert (await a.closed())[0] == 4012
        refused = await Wire.open(srv.key_url(), welcome=False)
        assert (await refused.refused())[0] == 4012
        assert (await call(port, "POST", f"/admin/apps/{srv.app_id}/resume"))[0] == 200
        c = await Wire.open(srv.key_url())
        _, conns, _ = await call(port, "GET", "/admin/connections")
        (node,) = [conn["node"] for conn in conns["connections"] if conn["peerId"] == c.peer_id]
        assert (await call(port, "POST", f"/admin/nodes/{node}/drain"))[0] == 202
        assert await c.recv() == {"type": "going_away", "retryAfterMs": 1000}
        assert (await c.closed())[0] == 1001
