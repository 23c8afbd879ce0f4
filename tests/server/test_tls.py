"""TLS on the server's own ports: wss:// and https:// on one port (and on the admin listener),
with a certificate made in the test; our SDK with a custom CA, Chromium with the JS SDK, and
the start-up errors for files that cannot be used."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import websockets
from tests.server.test_admin import TOKEN
from tests.server.test_admin_surface import port_of, serve_process
from tests.server.test_cli import run
from tests.support import browser as browser_support
from tests.support.pki import TestPki
from tests.support.waiting import event_matching, next_event

from metered_realtime import Message, Presence, SignallingClient, SignallingConnectError

# One node is enough: TLS is the listener's business, the same on every node of a cluster.
one_node = pytest.mark.parametrize("server_factory", ["one-node"], indirect=True)


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki.create(tmp_path)


def tls(pki: TestPki) -> dict[str, str]:
    return {"tls_cert": str(pki.cert), "tls_key": str(pki.key)}


async def https(
    port: int, path: str, context: ssl.SSLContext, token: str | None = None
) -> tuple[int, str]:
    """One GET over HTTPS to localhost (the name the certificate holds)."""

    def do() -> tuple[int, str]:
        conn = http.client.HTTPSConnection("localhost", port, timeout=5, context=context)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    return await asyncio.to_thread(do)


@one_node
async def test_sdk_over_wss_with_a_custom_ca(server_factory: Any, pki: TestPki) -> None:
    async with server_factory(**tls(pki)) as srv:
        url = f"wss://localhost:{srv.server.port}"
        a = SignallingClient(api_key=srv.api_key, url=url, ssl_context=pki.client_context())
        b = SignallingClient(api_key=srv.api_key, url=url, ssl_context=pki.client_context())
        async with a, b:
            presence, messages = a.events(Presence), a.events(Message)
            await a.subscribe("room")
            await b.subscribe("room")
            joined = await event_matching(presence, lambda p: bool(p.joined))
            assert [p.peer_id for p in joined.joined] == [b.peer_id]
            await b.publish("room", {"over": "tls"})
            message = await next_event(messages)
            assert (message.sender_peer_id, message.data) == (b.peer_id, {"over": "tls"})
        # Without the CA the certificate is refused: the context above is what let it in.
        untrusting = SignallingClient(api_key=srv.api_key, url=url, reconnect=False)
        with pytest.raises(SignallingConnectError):
            await asyncio.wait_for(untrusting.connect(), 10)
        await untrusting.close()
        # Plain ws:// to the TLS port gets no WebSocket.
        with pytest.raises((websockets.InvalidMessage, OSError, EOFError)):
            await asyncio.wait_for(
                websockets.connect(f"ws://127.0.0.1:{srv.server.port}/v1?key={srv.api_key}"), 10
            )


async def test_serve_prints_wss_and_answers_https_on_both_listeners(
    tmp_path: Path, pki: TestPki
) -> None:
    proc, printed = await serve_process(
        tmp_path,
        "--tls-cert",
        str(pki.cert),
        "--tls-key",
        str(pki.key),
        "--admin-port",
        "0",
        env={"METERED_REALTIME_ADMIN_TOKEN": TOKEN},
    )
    try:
        assert printed["url"].startswith("wss://localhost:")
        assert printed["admin-url"].startswith("https://127.0.0.1:")
        public, admin = port_of(printed["url"]), port_of(printed["admin-url"])
        context = pki.client_context()
        assert await https(public, "/healthz", context) == (200, "ok\n")
        status, body = await https(admin, "/admin/apps", context, token=TOKEN)
        assert status == 200 and isinstance(json.loads(body), (list, dict))
        # The admin listener speaks only TLS too.
        with pytest.raises((http.client.HTTPException, OSError)):
            await asyncio.to_thread(_plain_get, admin, "/healthz")
    finally:
        proc.terminate()  # SIGTERM: the server drains and exits 0
        try:
            assert await asyncio.wait_for(proc.wait(), 15) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _plain_get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


async def test_unusable_certificate_or_key_stops_serve_with_a_clear_error(
    tmp_path: Path, pki: TestPki
) -> None:
    missing = tmp_path / "missing.pem"
    cases = [
        ((pki.cert, missing), f"cannot read the TLS key {missing}: No such file or directory"),
        ((pki.cert, pki.other_key()), "does not belong to the certificate"),
        ((pki.key, pki.key), f"the TLS certificate {pki.key} is not a PEM certificate"),
    ]
    for (cert, key), expected in cases:
        code, out, err = await run(
            "serve", "--port", "0", "--db", str(tmp_path / "s.db"), "--tls-cert", str(cert),
            "--tls-key", str(key),
        )  # fmt: skip
        assert code == 2, err
        assert err.startswith("error: ") and expected in err, err
        assert "Traceback" not in err and "PRIVATE KEY" not in err
        assert out == ""  # it never got as far as listening
    code, _, err = await run("serve", "--port", "0", "--tls-cert", str(pki.cert))
    assert code != 0 and "tls_cert and tls_key go together" in err
    # --workers checks the files once, before it starts any worker (or reaches Redis).
    code, out, err = await run(
        "serve", "--workers", "2", "--redis", "redis://127.0.0.1:1/0", "--port", "0",
        "--tls-cert", str(pki.cert), "--tls-key", str(missing),
    )  # fmt: skip
    assert (code, out) == (2, "")
    assert err.count("error: cannot read the TLS key") == 1, err


@one_node
@pytest.mark.timeout(90)
async def test_chromium_js_sdk_over_wss(
    server_factory: Any, pki: TestPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = browser_support.browser_unavailable()
    if reason is not None:
        pytest.skip(reason)
    # Chromium accepts exactly this certificate's key (it has no way to take a CA file).
    pin = f"--ignore-certificate-errors-spki-list={pki.spki_sha256}"
    monkeypatch.setattr(browser_support, "CHROMIUM_ARGS", [*browser_support.CHROMIUM_ARGS, pin])
    site = browser_support.static_site()
    try:
        async with (
            server_factory(**tls(pki)) as srv,
            browser_support.Browser(site.url) as chromium,
        ):
            url = f"wss://localhost:{srv.server.port}"
            watcher = SignallingClient(
                api_key=srv.api_key, url=url, ssl_context=pki.client_context()
            )
            async with watcher:
                presence = watcher.events(Presence)
                await watcher.subscribe("room")
                page = await chromium.open("tab")
                peer_id = await page.join(f"wss://127.0.0.1:{srv.server.port}", srv.api_key, "room")
                joined = await event_matching(presence, lambda p: bool(p.joined), timeout=20)
                assert [p.peer_id for p in joined.joined] == [peer_id]
                await page.call("close", timeout=10)
            assert chromium.problems() == []
    finally:
        site.close()


def test_sdk_ssl_context_is_checked(pki: TestPki) -> None:
    with pytest.raises(ValueError, match="wss:// URLs only"):
        SignallingClient(api_key="pk", url="ws://127.0.0.1:1", ssl_context=pki.client_context())
    with pytest.raises(TypeError, match=r"ssl\.SSLContext"):
        SignallingClient(api_key="pk", url="wss://localhost:1", ssl_context=True)  # type: ignore[arg-type]
