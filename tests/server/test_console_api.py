"""What the web console needs from the server: its files, live counts and rates
(``/admin/stats``), a channel's members (``/admin/members``), and revoking a listed key."""

from __future__ import annotations

import asyncio

from tests.server.test_admin import TOKEN, call
from tests.server.wire import Wire

from metered_realtime.server.rates import RateRing


async def test_console_files(server_factory):
    async with server_factory(admin_token=TOKEN) as srv:
        port = srv.server.port
        status, page, ctype = await call(port, "GET", "/console", token=None)
        assert status == 200 and ctype.startswith("text/html")
        # Everything from this server: no CDN.
        assert '<script src="/console/console.js"' in page and "https://" not in page
        status, script, ctype = await call(port, "GET", "/console/console.js", token=None)
        assert status == 200 and ctype.startswith("text/javascript") and "sessionStorage" in script
        assert (await call(port, "GET", "/console/console.css", token=None))[0] == 200
        assert (await call(port, "GET", "/console/..%2fadmin.py", token=None))[0] == 404
    async with server_factory() as srv:  # no admin API, no console
        assert (await call(srv.server.port, "GET", "/console", token=None))[0] == 404
    async with server_factory(admin_token=TOKEN, admin_port=0) as srv:
        assert (await call(srv.server.port, "GET", "/console", token=None))[0] == 404
        assert (await call(srv.server.admin_port, "GET", "/console", token=None))[0] == 200


def test_rate_ring_rates_and_bound():
    ring = RateRing(capacity=3)
    ring.record(100.0, 0, 0, {})
    ring.record(102.0, 10, 40, {4020: 1})
    ring.record(104.0, 10, 40, {4020: 1, 1000: 2})
    assert ring.series() == [
        {"t": 102.0, "in": 5.0, "out": 20.0, "closes": {"4020": 1}},
        {"t": 104.0, "in": 0.0, "out": 0.0, "closes": {"1000": 2}},
    ]
    for i in range(10):
        ring.record(106.0 + 2 * i, 10 + i, 40, {})
    series = ring.series()
    assert len(series) == 3 and series[-1]["t"] == 124.0 and series[-1]["in"] == 0.5


async def test_stats_count_and_rate_what_clients_do(server_factory):
    # Publishing until a sample shows it: far more than the default rate limit allows.
    async with server_factory(admin_token=TOKEN, rate_per_second=1e6, rate_burst=1e6) as srv:
        port = srv.server.port
        a = await Wire.open(srv.key_url())
        await a.subscribe("room")
        _, stats, _ = await call(port, "GET", "/admin/stats")
        assert {n["node"] for n in stats["nodes"]} == {node.node_id for node in srv.nodes}
        assert sum(n["connections"] for n in stats["nodes"]) == 1
        assert sum(n["channels"] for n in stats["nodes"]) == 1
        assert sum(n["apps"] for n in stats["nodes"]) == 1

        async def rated() -> None:
            for i in range(10_000):
                await a.send(
                    {"type": "publish", "channel": "room", "data": i, "requestId": f"p{i}"}
                )
                got = {(await a.recv())["type"], (await a.recv())["type"]}
                assert got == {"ack", "message"}
                _, stats, _ = await call(port, "GET", "/admin/stats")
                samples = [s for n in stats["nodes"] for s in n["samples"]]
                if any(s["in"] > 0 for s in samples) and any(s["out"] > 0 for s in samples):
                    return
            raise AssertionError(f"no sample shows the publishes: {stats}")

        await asyncio.wait_for(rated(), 30)


async def test_members_with_metadata_on_every_node(server_factory):
    async with server_factory(admin_token=TOKEN) as srv:
        port = srv.server.port
        a = await Wire.open(srv.token_url(srv.mint(peer_metadata={"name": "Ada"})))
        b = await Wire.open(srv.token_url(srv.mint(peer_metadata={"name": "Bo"})))
        await a.subscribe("room")
        await b.subscribe("room")
        status, body, _ = await call(port, "GET", f"/admin/members?app={srv.app_id}&channel=room")
        assert status == 200
        seen = {m["peerId"]: m["metadata"] for m in body["members"]}
        assert seen == {a.peer_id: {"name": "Ada"}, b.peer_id: {"name": "Bo"}}
        assert {m["node"] for m in body["members"]} <= {n.node_id for n in srv.nodes}
        assert (await call(port, "GET", f"/admin/members?app={srv.app_id}"))[0] == 400
        assert (await call(port, "GET", "/admin/members?app=nosuch&channel=room"))[0] == 404


async def test_a_listed_key_is_revoked_by_its_ref(server_factory):
    # A periodic key refresh between the revoke and the admin reload would close the session
    # first and the answer would count 0: keep it out of the way.
    async with server_factory(admin_token=TOKEN, store_refresh=600) as srv:
        port = srv.server.port
        _, created, _ = await call(port, "POST", f"/admin/apps/{srv.app_id}/keys", {"label": "web"})
        wire = await Wire.open(srv.key_url(created["key"]))
        _, keys, _ = await call(port, "GET", f"/admin/apps/{srv.app_id}/keys")
        (listed,) = [k for k in keys["publishable"] if k["label"] == "web"]
        assert listed["ref"] == created["ref"] and created["key"] not in listed["ref"]
        status, body, _ = await call(port, "DELETE", f"/admin/keys/{listed['ref']}")
        assert status == 200 and body == {"revoked": True, "closed": 1}
        assert (await wire.closed())[0] == 4001
        assert (await call(port, "DELETE", "/admin/keys/pkref_0000"))[0] == 404
