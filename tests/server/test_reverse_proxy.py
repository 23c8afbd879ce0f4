"""Behind a reverse proxy: Debian's nginx terminating TLS in front of the server (configured
from the template docs/self-hosting.md quotes), both SDKs through it, and X-Forwarded-For
believed only from a trusted proxy, read from the right."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
import websockets
from tests.server.test_tls import https
from tests.support.jsclient import JSClient, node_available
from tests.support.nginx import TEMPLATE, UPSTREAM_SOURCE, nginx_missing, running_nginx
from tests.support.pki import TestPki
from tests.support.waiting import next_event

from metered_realtime import Message, SignallingClient
from metered_realtime.server.config import ServerConfig
from metered_realtime.server.forwarded import TrustedProxies
from metered_realtime.server.settings import load_config
from metered_realtime.signalling.options import ValidatedOptions

ROOT = Path(__file__).resolve().parent.parent.parent
SELF_HOSTING = ROOT / "docs" / "self-hosting.md"
one_node = pytest.mark.parametrize("server_factory", ["one-node"], indirect=True)


def limited(burst: int, trusted: str) -> dict[str, Any]:
    """Settings where every loopback address is limited to ``burst`` connections (no refill
    within a test) and ``trusted`` is the one proxy believed."""
    return {
        "trusted_proxies": (trusted,),
        "ip_connect_exempt": (),
        "ip_connect_rate": 0.001,
        "ip_connect_burst": float(burst),
    }


async def refused_status(url: str, **kwargs: Any) -> int | None:
    """The HTTP status an upgrade to ``url`` is refused with (None: it was accepted)."""
    try:
        ws = await asyncio.wait_for(websockets.connect(url, **kwargs), 10)
    except websockets.InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return None


def connected_from(caplog: pytest.LogCaptureFixture, peer_id: str | None) -> list[str]:
    """The addresses the server logged ``peer_id`` as connected from."""
    pattern = re.compile(rf"peer {peer_id} connected from (\S+)")
    return [m.group(1) for r in caplog.records if (m := pattern.fullmatch(r.getMessage()))]


@one_node
@pytest.mark.timeout(60)
async def test_both_sdks_through_nginx_and_the_limit_sees_the_forwarded_address(
    server_factory: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for reason in (nginx_missing(), node_available()):
        if reason is not None:
            if os.environ.get("CI"):
                pytest.fail(f"CI must run this test: {reason}")
            pytest.skip(reason)
    caplog.set_level(logging.DEBUG, logger="metered_realtime.server")
    pki = TestPki.create(tmp_path)
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(pki.ca))  # the JS SDK's trust (node's ws)
    # Two connections from 127.0.0.1 in all, however they arrive; nginx is 127.0.0.2.
    async with server_factory(**limited(2, f"{UPSTREAM_SOURCE}/32")) as srv:
        async with running_nginx(tmp_path / "nginx", srv.server.port, pki.cert, pki.key) as nginx:
            ours = SignallingClient(
                api_key=srv.api_key, url=nginx.url, ssl_context=pki.client_context()
            )
            async with ours, JSClient("js") as js:
                messages = ours.events(Message)
                await ours.subscribe("room")
                welcome = await js.connect(nginx.url, key=srv.api_key)
                assert welcome is not None
                await js.subscribe("room")
                await js.publish("room", {"from": "js"})
                message = await next_event(messages, 10)
                assert (message.sender_peer_id, message.data) == (welcome["peerId"], {"from": "js"})
                await ours.publish("room", {"from": "python"})
                got = await js.next_event("message", lambda m: m.get("data") == {"from": "python"})
                assert got["from"] == ours.peer_id
                # The HTTP routes go through the same server block.
                assert await https(nginx.port, "/healthz", pki.client_context()) == (200, "ok\n")
                # The server logged the clients' address, not nginx's.
                assert connected_from(caplog, ours.peer_id) == ["127.0.0.1"]
                assert connected_from(caplog, welcome["peerId"]) == ["127.0.0.1"]
                # Both proxied connections took 127.0.0.1's tokens: a direct connection from
                # 127.0.0.1 finds none left (counted by nginx's address, it would get in).
                direct = f"ws://127.0.0.1:{srv.server.port}/v1?key={srv.api_key}"
                assert await refused_status(direct) == 429
                proxied = f"{nginx.url}/v1?key={srv.api_key}"
                assert await refused_status(proxied, ssl=pki.client_context()) == 429
        assert "[emerg]" not in nginx.error_log()


@one_node
@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted-peer", "trusted-peer"])
async def test_forwarded_for_counts_only_from_a_trusted_peer(
    server_factory: Any, caplog: pytest.LogCaptureFixture, trusted: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="metered_realtime.server")
    proxy = "127.0.0.1/32" if trusted else f"{UPSTREAM_SOURCE}/32"
    async with server_factory(**limited(1, proxy)) as srv:
        url = f"ws://127.0.0.1:{srv.server.port}/v1?key={srv.api_key}"

        async def claiming(address: str) -> int | None:
            return await refused_status(url, additional_headers={"X-Forwarded-For": address})

        assert await claiming("192.0.2.1") is None
        if trusted:  # each claimed address has a bucket of its own
            assert await claiming("192.0.2.2") is None
            assert await claiming("192.0.2.1") == 429
        else:  # the claim is ignored: 127.0.0.1 has used its one connection
            assert await claiming("192.0.2.2") == 429
        logged = [r.getMessage() for r in caplog.records if " connected from " in r.getMessage()]
        assert [line.rsplit(" ", 1)[1] for line in logged] == (
            ["192.0.2.1", "192.0.2.2"] if trusted else ["127.0.0.1"]
        )


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("192.0.2.50", ["203.0.113.9"], "192.0.2.50"),  # the peer is no proxy: header ignored
        ("127.0.0.2", ["203.0.113.9"], "203.0.113.9"),
        ("127.0.0.2", ["198.51.100.1, 203.0.113.9"], "203.0.113.9"),  # the left is the client's
        ("127.0.0.2", ["198.51.100.1", "203.0.113.9, 10.1.2.3"], "203.0.113.9"),  # skip proxies
        ("127.0.0.2", ["garbage, 203.0.113.9"], "203.0.113.9"),  # never read that far
        ("127.0.0.2", ["203.0.113.9, garbage, 10.1.2.3"], "10.1.2.3"),  # cannot see past it
        ("127.0.0.2", ["10.1.2.3, 10.9.9.9"], "10.1.2.3"),  # all proxies: the leftmost
        ("127.0.0.2", [], "127.0.0.2"),
        ("127.0.0.2", [""], "127.0.0.2"),
        ("::ffff:127.0.0.2", ["2001:db8::7"], "2001:db8::7"),
        ("127.0.0.2", ["::ffff:10.1.2.3, 203.0.113.9"], "203.0.113.9"),
    ],
)
def test_rightmost_untrusted_address(peer: str, header: list[str], client: str) -> None:
    proxies = TrustedProxies(["127.0.0.2/32", "10.0.0.0/8"])
    assert proxies.client_address(peer, header) == client


def test_no_trusted_proxies_reads_no_header() -> None:
    assert not TrustedProxies([])
    assert TrustedProxies([]).client_address("127.0.0.1", ["203.0.113.9"]) == "127.0.0.1"


def test_the_docs_quote_the_template_the_fixture_uses() -> None:
    text = SELF_HOSTING.read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", text, flags=re.DOTALL)
    assert blocks == [TEMPLATE.read_text()]


def test_proxy_timeouts_outlast_the_heartbeats() -> None:
    timeouts = re.findall(r"proxy_(?:read|send)_timeout (\d+)s;", TEMPLATE.read_text())
    assert len(timeouts) == 2
    defaults = ServerConfig()
    assert defaults.ws_ping_interval is not None and defaults.ws_ping_timeout is not None
    server_silence = defaults.ws_ping_interval + defaults.ws_ping_timeout
    sdk = ValidatedOptions("wss://x", 10.0, None, None, 60.0, True)
    for seconds in map(int, timeouts):
        assert seconds > server_silence and seconds > sdk.heartbeat_interval


def test_tls_and_trusted_proxies_from_the_environment_and_toml(tmp_path: Path) -> None:
    env = {
        "METERED_REALTIME_TLS_CERT": "/c.pem",
        "METERED_REALTIME_TLS_KEY": "/k.pem",
        "METERED_REALTIME_TRUSTED_PROXIES": "127.0.0.1/32, 10.0.0.0/8",
    }
    config = load_config({}, env=env)
    assert (config.tls_cert, config.tls_key) == ("/c.pem", "/k.pem")
    assert config.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8")
    toml = tmp_path / "server.toml"
    toml.write_text('[server]\ntrusted_proxies = ["::1/128"]\ntls_cert = "/c.pem"\n')
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        load_config({}, env={}, toml_path=str(toml))
    config = load_config({"trusted_proxies": ["192.0.2.0/24"]}, env=env, toml_path=str(toml))
    assert config.trusted_proxies == ("192.0.2.0/24",)
    with pytest.raises(ValueError, match="not-a-network"):
        load_config({"trusted_proxies": ["not-a-network"]}, env={})
