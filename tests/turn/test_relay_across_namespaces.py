"""A call that only TURN can carry: two Python peers in two network namespaces with no route
to each other, each reaching only coturn and the signalling server (tests/support/netns.py).
The peers use the default policy ("all"): they gather host candidates too, and still can
only connect through the relay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.support.coturn import running_coturn
from tests.support.netns import SERVICE_IP, Host, isolated_hosts, route_error

pytest.importorskip("aiortc")

ROOT = Path(__file__).resolve().parents[2]


async def start_peer(host: Host, port: int, key: str, role: str) -> asyncio.subprocess.Process:
    argv = host.command(
        sys.executable, "-m", "tests.turn.netns_peer", SERVICE_IP, str(port), key, role
    )
    return await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )


async def report(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 90)
    assert line, f"peer exited with {await proc.wait()} before reporting"
    seen: dict[str, Any] = json.loads(line)
    return seen


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.write(b"close\n")
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.mark.timeout(150)
async def test_relayed_call_between_hosts_with_no_route(
    tmp_path: Path, server_factory: Any
) -> None:
    with isolated_hosts() as (a, b):
        assert "unreachable" in (route_error(a, b.ip) or "")
        assert "unreachable" in (route_error(b, a.ip) or "")
        async with (
            running_coturn(tmp_path, SERVICE_IP, loopback_peers=False) as coturn,
            server_factory(
                host=SERVICE_IP, ice_urls=(coturn.url,), turn_secret=coturn.secret
            ) as srv,
        ):
            port = srv.server.port
            callee = await start_peer(b, port, srv.api_key, "callee")
            caller = await start_peer(a, port, srv.api_key, "caller")
            try:
                seen_a, seen_b = await asyncio.gather(report(caller), report(callee))
            finally:
                await asyncio.gather(stop(caller), stop(callee))
    assert seen_a["dc"] == "pong" and seen_b["dc"] == "ping"
    assert seen_b["audio_samples"] > 0
    for seen in (seen_a, seen_b):
        assert seen["gathered"] == ["host", "relay"]  # a direct path was tried, and failed
        # Every path goes through coturn: a host candidate may send straight to the other
        # side's relayed address, which sits on the TURN server, never to the other host.
        assert seen["pairs"] and all("relay" in pair for pair in seen["pairs"])
