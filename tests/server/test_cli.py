"""The ``metered-realtime`` command: serve --dev, keys, token, and drain on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import pytest
from tests.server.wire import Wire

from metered_realtime.server.config import ServerConfig
from metered_realtime.server.settings import load_config

CLI = [sys.executable, "-m", "metered_realtime.cli"]


async def run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def start_serve(db: Path, *extra: str) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--dev",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--db",
        str(db),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    info: dict[str, str] = {}
    assert proc.stdout is not None
    while "connect" not in info:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line, "serve exited early"
        name, _, value = line.strip().partition(": ")
        info[name] = value
    return proc, info


async def stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 30)


async def test_serve_dev_prints_a_working_key_and_drains_on_sigterm(tmp_path):
    db = tmp_path / "dev.db"
    proc, info = await start_serve(db)
    try:
        assert info["url"].startswith("ws://localhost:") and info["url"].endswith("/v1")
        assert info["key"].startswith("pk_live_") and len(info["key"]) == len("pk_live_") + 24
        port = info["url"].rsplit(":", 1)[1].split("/")[0]
        a = await Wire.open(f"ws://127.0.0.1:{port}/v1?key={info['key']}")
        b = await Wire.open(f"ws://127.0.0.1:{port}/v1?key={info['key']}")
        # --dev also turns on the admin API with a fresh token.
        from tests.server.test_admin import call

        status, apps, _ = await call(int(port), "GET", "/admin/apps", token=info["admin-token"])
        assert status == 200 and apps["apps"][0]["name"] == "dev"
        # The dev key has every permission, send included.
        reply = await a.request({"type": "send", "to": b.peer_id, "data": 1, "requestId": "d"})
        assert reply == {"type": "ack", "requestId": "d"}
        # A load balancer's TCP health check (connect, close) is no error.
        _, probe = await asyncio.open_connection("127.0.0.1", int(port))
        probe.close()
        await probe.wait_closed()
        await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert await a.recv() == {"type": "going_away", "retryAfterMs": 1000}
        assert (await a.closed(timeout=15))[0] == 1001
        assert await stop(proc) == 0
        assert proc.stderr is not None
        logs = (await proc.stderr.read()).decode()
        assert "draining" in logs and info["key"] not in logs
        lines = [json.loads(line) for line in logs.splitlines()]  # stderr is no terminal: JSON
        assert [line for line in lines if line["level"] in ("warning", "error")] == []
    finally:
        await stop(proc)
    # Run again on the same store: the same dev key is reused.
    proc2, info2 = await start_serve(db)
    try:
        assert info2["key"] == info["key"]
    finally:
        await stop(proc2)


async def test_keys_create_list_revoke_and_token(tmp_path):
    db = str(tmp_path / "keys.db")
    code, out, _ = await run(
        "keys", "create", "--app", "shop", "--allow", "send", "--channels", "room-*", "--db", db
    )
    assert code == 0
    created = json.loads(out)
    assert created["key"].startswith("pk_live_")
    assert created["permissions"] == ["presence", "publish", "send", "subscribe"]
    code, out, _ = await run("keys", "create", "--app", "shop", "--secret", "--db", db)
    secret = json.loads(out)
    assert secret["key_id"].startswith("sk_id_") and secret["secret"].startswith("sk_live_")
    code, listing, _ = await run("keys", "list", "--db", db)
    assert code == 0 and "shop" in listing and "channels=room-*" in listing
    assert created["key"] not in listing and secret["secret"] not in listing
    code, token, _ = await run(
        "token",
        "--key-id",
        secret["key_id"],
        "--secret",
        secret["secret"],
        "--channels",
        "a,b",
        "--peer-metadata",
        '{"n":1}',
        "--ttl",
        "60",
    )
    assert code == 0 and token.count(".") == 2
    proc, info = await start_serve(Path(db))
    try:
        port = info["url"].rsplit(":", 1)[1].split("/")[0]
        wire = await Wire.open(f"ws://127.0.0.1:{port}/v1?token={token.strip()}")
        # The CLI minted it for 60 s.
        assert abs(wire.welcome["expiresAt"] - (time.time() + 60)) < 15
        await wire.close()
        code, out, _ = await run("keys", "revoke", created["key"], "--db", db)
        assert code == 0
        # Revoked through the CLI, the key reaches the server's key cache within store_refresh
        # (1 s, docs/scaling.md); from then on it is refused before any welcome.
        url = f"ws://127.0.0.1:{port}/v1?key={created['key']}"
        deadline = time.time() + 5
        while True:
            attempt = await Wire.open(url, welcome=False)
            try:
                code, _ = await attempt.refused()
                break
            except AssertionError:  # welcomed: the revocation is not in the cache yet
                assert time.time() < deadline, "the revoked key was still accepted after 5 s"
                await attempt.close()
                await asyncio.sleep(0.1)
        assert code == 4001
    finally:
        await stop(proc)
    code, _, err = await run("keys", "revoke", "pk_live_none", "--db", db)
    assert code == 1 and "no such key" in err
    code, _, err = await run("keys", "create", "--allow", "fly", "--db", db)
    assert code == 2 and "unknown permissions" in err
    code, _, err = await run("token", "--key-id", "k", "--secret", "s", "--ttl", "0")
    assert code == 2 and "ttl" in err


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--channels", ""], "--channels"),
        (["--channels", " , "], "--channels"),
        (["--permissions", ""], "--permissions"),
        (["--permissions", ","], "--permissions"),
        (["--permissions", "", "--allow", "send"], "--permissions"),
    ],
)
async def test_keys_create_refuses_empty_grants(tmp_path, flags, complaint):
    # An empty list must not fall back to a default (every channel, the default permissions).
    db = str(tmp_path / "keys.db")
    code, out, err = await run("keys", "create", "--app", "shop", *flags, "--db", db)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and complaint in err
    code, listing, _ = await run("keys", "list", "--db", db)
    assert code == 0 and " pk " not in listing  # nothing was created
    code, out, _ = await run("keys", "create", "--app", "shop", "--channels", "a, b", "--db", db)
    assert code == 0
    code, listing, _ = await run("keys", "list", "--db", db)
    assert "channels=a,b" in listing


def test_settings_precedence(tmp_path):
    toml = tmp_path / "server.toml"
    toml.write_text('[server]\nport = 9001\nmax_message_size = 1000\nice_urls = ["stun:a:1"]\n')
    env = {"METERED_REALTIME_PORT": "9002", "METERED_REALTIME_MAX_SUBSCRIPTIONS": "7"}
    config = load_config({"port": 9003}, env=env, toml_path=str(toml))
    assert config.port == 9003
    assert config.max_subscriptions == 7
    assert config.max_message_size == 1000
    assert config.ice_urls == ("stun:a:1",)
    assert load_config({}, env=env, toml_path=str(toml)).port == 9002
    assert load_config({}, env={}, toml_path=str(toml)).port == 9001
    assert load_config({}, env={}).port == ServerConfig().port
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = 1\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_config({}, env={}, toml_path=str(bad))
    with pytest.raises(ValueError):
        load_config({}, env={"METERED_REALTIME_PRESENCE_WINDOW": "1.0"})
