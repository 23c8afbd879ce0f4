"""The admin surface: drain ends the process, a separate admin listener, a protected
/metrics, the admin token kept off argv, and masked key listings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import pytest
from tests.server.test_admin import TOKEN, call
from tests.server.test_cli import run
from tests.server.wire import Wire

CLI = [sys.executable, "-m", "metered_realtime.cli"]


async def serve_process(
    tmp_path, *extra: str, env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """``serve`` as a real process; returns it and what it printed (``url``, ...)."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--db",
        str(tmp_path / "serve.db"),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "METERED_REALTIME_DRAIN_GRACE": "0.2", **(env or {})},
    )
    assert proc.stdout is not None
    printed: dict[str, str] = {}
    wanted = {"url", "admin-url"} if "--admin-port" in extra else {"url"}
    while not wanted <= printed.keys():
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line, "serve exited early"
        name, _, value = line.strip().partition(": ")
        printed[name] = value
    return proc, printed


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, list[dict[str, object]]]:
    """Wait for the process to exit by itself; its exit code and its JSON log lines."""
    code = await asyncio.wait_for(proc.wait(), 15)
    assert proc.stderr is not None
    logs = (await proc.stderr.read()).decode()
    return code, [json.loads(line) for line in logs.splitlines()]


@pytest.mark.parametrize("cluster", [False, True], ids=["one-node", "redis-cluster"])
async def test_admin_drain_ends_the_process(tmp_path, request, cluster):
    extra: list[str] = []
    if cluster:
        extra = ["--redis", request.getfixturevalue("redis_server").url]
    env = {
        "METERED_REALTIME_ADMIN_TOKEN": TOKEN,
        "METERED_REALTIME_REDIS_PREFIX": f"d{os.getpid()}",
    }
    code, out, _ = await run("keys", "create", "--db", str(tmp_path / "serve.db"))
    assert code == 0
    proc, printed = await serve_process(tmp_path, *extra, env=env)
    try:
        port = port_of(printed["url"])
        wire = await Wire.open(f"ws://127.0.0.1:{port}/v1?key={json.loads(out)['key']}")
        started = time.monotonic()
        assert (await call(port, "POST", "/admin/drain"))[0] == 202
        assert await wire.recv() == {"type": "going_away", "retryAfterMs": 1000}
        assert (await wire.closed())[0] == 1001
        code, logs = await finish(proc)
        assert code == 0
        assert time.monotonic() - started < 10  # the drain timeout is 30 s; nothing waits for it
        # The token came from the environment: no warning about it.
        assert [line for line in logs if line["level"] in ("warning", "error")] == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_admin_token_on_argv_is_warned_about(tmp_path):
    proc, printed = await serve_process(tmp_path, "--admin-token", TOKEN)
    try:
        port = port_of(printed["url"])
        assert (await call(port, "GET", "/admin/apps"))[0] == 200
        assert (await call(port, "POST", "/admin/drain"))[0] == 202
        code, logs = await finish(proc)
        assert code == 0
        (warning,) = [line for line in logs if line["level"] == "warning"]
        assert "METERED_REALTIME_ADMIN_TOKEN" in str(warning["msg"])
        assert TOKEN not in str(warning["msg"])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    code, out, _ = await run("serve", "--help")
    assert "METERED_REALTIME_ADMIN_TOKEN" in " ".join(out.split())


async def test_serve_with_an_admin_listener(tmp_path):
    env = {"METERED_REALTIME_ADMIN_TOKEN": TOKEN}
    proc, printed = await serve_process(
        tmp_path, "--admin-host", "127.0.0.1", "--admin-port", "0", env=env
    )
    try:
        public, admin = port_of(printed["url"]), port_of(printed["admin-url"])
        assert printed["admin-url"].startswith("http://127.0.0.1:") and admin != public
        assert (await call(public, "GET", "/admin/apps"))[0] == 404
        assert (await call(admin, "GET", "/admin/apps"))[0] == 200
        assert (await call(admin, "POST", "/admin/drain"))[0] == 202
        code, _ = await finish(proc)
        assert code == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_workers_share_one_admin_listener(tmp_path, redis_server):
    env = {
        "METERED_REALTIME_ADMIN_TOKEN": TOKEN,
        "METERED_REALTIME_REDIS_PREFIX": f"w{os.getpid()}",
    }
    proc, printed = await serve_process(
        tmp_path, "--redis", redis_server.url, "--workers", "2", "--admin-port", "0", env=env
    )
    try:
        public, admin = port_of(printed["url"]), port_of(printed["admin-url"])
        deadline = time.monotonic() + 15
        while True:  # both workers bound the admin port (SO_REUSEPORT) and see each other
            try:
                status, body, _ = await call(admin, "GET", "/admin/nodes")
            except OSError:
                status, body = 0, {}
            if status == 200 and len(body["nodes"]) == 2:
                break
            assert time.monotonic() < deadline, (status, body)
            await asyncio.sleep(0.1)
        assert (await call(public, "GET", "/admin/nodes"))[0] == 404
        proc.send_signal(signal.SIGTERM)
        code, _ = await finish(proc)
        assert code == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_admin_listener_serves_admin_and_metrics_only_there(server_factory):
    async with server_factory(admin_token=TOKEN, admin_port=0, drain_grace=0.5) as srv:
        public = srv.server.port
        admin = srv.server.admin_port
        assert admin is not None and admin != public
        for port in (public, admin):
            assert (await call(port, "GET", "/healthz", token=None))[:2] == (200, "ok\n")
            assert (await call(port, "GET", "/readyz", token=None))[:2] == (200, "ready\n")
        # The public port knows nothing of the admin API, whatever the token.
        assert (await call(public, "GET", "/admin/apps"))[0] == 404
        assert (await call(public, "POST", "/admin/drain"))[0] == 404
        assert (await call(public, "GET", "/metrics", token=None))[0] == 404
        status, apps, _ = await call(admin, "GET", "/admin/apps")
        assert status == 200 and [a["id"] for a in apps["apps"]] == [srv.app_id]
        assert (await call(admin, "GET", "/admin/apps", token="wrong"))[0] == 401
        assert (await call(admin, "GET", "/metrics", token=None))[0] == 200
        # WebSockets stay on the public port: the admin port is plain HTTP only.
        wire = await Wire.open(f"ws://127.0.0.1:{public}/v1?key={srv.api_key}")
        assert (await call(admin, "GET", "/v1?key=x", token=None))[0] == 404
        # The admin listener drains with the server: not ready, then closed.
        assert (await call(admin, "POST", "/admin/drain"))[0] == 202
        assert await wire.recv() == {"type": "going_away", "retryAfterMs": 1000}
        assert (await call(admin, "GET", "/readyz", token=None))[0] == 503
        assert (await wire.closed())[0] == 1001
        await asyncio.wait_for(srv.server.stopped.wait(), 10)
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", admin)


async def test_admin_listener_is_loopback_by_default():
    from metered_realtime.server.config import ServerConfig

    assert ServerConfig().admin_host == "127.0.0.1"
    assert ServerConfig().admin_port is None
    with pytest.raises(ValueError):
        ServerConfig(admin_port=70000)


async def test_metrics_token(server_factory):
    async with server_factory(metrics_token="scrape-me") as srv:
        port = srv.server.port
        assert (await call(port, "GET", "/metrics", token=None))[0] == 401
        assert (await call(port, "GET", "/metrics", token="wrong"))[0] == 401
        status, text, _ = await call(port, "GET", "/metrics", token="scrape-me")
        assert status == 200 and "metered_realtime_connections" in text
        assert (await call(port, "GET", "/healthz", token=None))[0] == 200


async def test_key_listings_are_masked(server_factory, tmp_path):
    async with server_factory(admin_token=TOKEN) as srv:
        status, listing, _ = await call(srv.server.port, "GET", f"/admin/apps/{srv.app_id}/keys")
        assert status == 200
        (shown,) = [k["key"] for k in listing["publishable"]]
        assert shown == "pk_live_…" + srv.api_key[-4:]
    db = str(tmp_path / "keys.db")
    code, out, _ = await run("keys", "create", "--app", "shop", "--db", db)
    key = json.loads(out)["key"]
    code, listing_text, _ = await run("keys", "list", "--db", db)
    assert code == 0 and f"pk pk_live_…{key[-4:]} active" in listing_text
    assert key not in listing_text
