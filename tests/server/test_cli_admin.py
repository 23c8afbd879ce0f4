"""The admin actions of the command line: on the local store, and with ``--remote`` through
a running server's admin API (on a cluster, a peer held by the node not asked)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from tests.server.test_admin import TOKEN
from tests.server.wire import Wire

from metered_realtime.server.store import open_store

CLI = [sys.executable, "-m", "metered_realtime.cli"]


async def cli(*args: str, token: str | None = None) -> tuple[int, Any, str]:
    """Run the command; its exit status, its JSON answer (or raw stdout) and stderr."""
    env = {k: v for k, v in os.environ.items() if k != "METERED_REALTIME_ADMIN_TOKEN"}
    if token is not None:
        env["METERED_REALTIME_ADMIN_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    text = out.decode()
    try:
        answer = json.loads(text)
    except ValueError:
        answer = text
    return proc.returncode, answer, err.decode()


async def test_local_store(tmp_path):
    db = str(tmp_path / "local.db")
    code, app, _ = await cli("apps", "create", "shop", "--db", db)
    assert code == 0 and app["name"] == "shop" and app["suspended"] is False
    assert (await cli("apps", "list", "--db", db))[1]["apps"] == [app]
    assert (await cli("apps", "suspend", "shop", "--db", db))[:2] == (0, {"suspended": True})
    store = open_store(db)
    try:
        assert store.get_app(app["id"]).suspended
        assert (await cli("apps", "resume", app["id"], "--db", db))[0] == 0
        assert not store.get_app(app["id"]).suspended
        key = store.create_publishable_key(app["id"], label="web").key
    finally:
        store.close()
    code, keys, _ = await cli("keys", "list", "--app", "shop", "--db", db)
    assert code == 0 and [k["label"] for k in keys["publishable"]] == ["web"]
    assert key not in json.dumps(keys) and keys["publishable"][0]["key"].endswith(key[-4:])
    # A listed key is revoked through its ref (the listing never shows the key itself).
    assert (await cli("keys", "revoke", keys["publishable"][0]["ref"], "--db", db))[0] == 0
    code, keys, _ = await cli("keys", "list", "--app", "shop", "--db", db)
    assert keys["publishable"][0]["revoked"] is True
    code, _, err = await cli("apps", "suspend", "nosuch", "--db", db)
    assert code == 1 and "no such app: nosuch" in err
    # Live state is only in a running server.
    code, _, err = await cli("peers", "disconnect", "p1", "--db", db)
    assert code == 2 and "--remote" in err
    assert (await cli("drain", "--db", db))[0] == 2


async def test_local_suspend_reaches_a_running_server(server_factory):
    async with server_factory(store_refresh=0.2) as srv:
        wire = await Wire.open(srv.key_url())
        code, _, _ = await cli("apps", "suspend", srv.app_id, "--db", srv.server.config.db)
        assert code == 0
        assert (await wire.closed())[0] == 4012


async def test_remote(server_factory):
    # A periodic key refresh between the suspend and the admin reload would close the session
    # first and the answer would count 0: keep it out of the way.
    async with server_factory(admin_token=TOKEN, drain_grace=0.1, store_refresh=600) as srv:
        asked, holder = srv.nodes[0], srv.nodes[-1]
        remote = ["--remote", f"http://127.0.0.1:{asked.port}"]
        on_holder = f"ws://127.0.0.1:{holder.port}/v1?key={srv.api_key}"
        a = await Wire.open(on_holder)
        b = await Wire.open(on_holder)

        code, apps, _ = await cli("apps", "list", *remote, token=TOKEN)
        assert code == 0 and apps["apps"] == [
            {"id": srv.app_id, "name": "test", "suspended": False, "connections": 2}
        ]
        code, keys, _ = await cli("keys", "list", "--app", "test", *remote, token=TOKEN)
        assert code == 0 and srv.api_key not in json.dumps(keys)
        assert keys["publishable"][0]["key"].endswith(srv.api_key[-4:])
        code, created, _ = await cli("apps", "create", "other", *remote, token=TOKEN)
        assert code == 0 and srv.store.get_app(created["id"]).name == "other"

        code, answer, _ = await cli("peers", "disconnect", a.peer_id, *remote, token=TOKEN)
        assert (code, answer) == (0, {"disconnected": a.peer_id})
        assert (await a.closed())[0] == 4020
        code, _, err = await cli("peers", "disconnect", "nobody", *remote, token=TOKEN)
        assert code == 1 and "404" in err

        code, answer, _ = await cli("apps", "suspend", "test", *remote, token=TOKEN)
        assert code == 0 and answer == {"suspended": True, "closed": 1}
        assert (await b.closed())[0] == 4012
        assert (await cli("apps", "resume", "test", *remote, token=TOKEN))[0] == 0

        c = await Wire.open(on_holder)
        code, answer, _ = await cli("drain", "--node", holder.node_id, *remote, token=TOKEN)
        assert (code, answer) == (0, {"draining": True, "node": holder.node_id})
        assert await c.recv() == {"type": "going_away", "retryAfterMs": 1000}
        assert (await c.closed())[0] == 1001


async def test_remote_needs_the_token(server_factory):
    async with server_factory(admin_token=TOKEN) as srv:
        remote = ["--remote", f"http://127.0.0.1:{srv.server.port}"]
        code, _, err = await cli("apps", "list", *remote)
        assert code == 2 and "METERED_REALTIME_ADMIN_TOKEN" in err
        code, _, err = await cli("apps", "list", *remote, token="not-the-token-81f3")
        assert code == 1 and "401: admin token required" in err
        assert "not-the-token-81f3" not in err
        code, _, err = await cli("keys", "list", *remote, token=TOKEN)
        assert code == 2 and "needs --app" in err
