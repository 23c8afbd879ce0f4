"""Every close code the server sends, and the JWT and key failures behind 4001-4003."""

from __future__ import annotations

import asyncio
import logging
import time

import jwt
import pytest
from tests.server.wire import Wire, raw_token
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidStatus


async def closed_before_welcome(url: str, **kwargs: object) -> tuple[int | None, str]:
    """The close code and reason of a refused connection; any frame first (a welcome) fails."""
    wire = await Wire.open(url, welcome=False, **kwargs)
    return await wire.refused()


async def test_no_or_both_credentials_close_4001(server):
    assert (await closed_before_welcome(f"{server.url}/v1"))[0] == 4001
    token = server.mint()
    both = f"{server.url}/v1?key={server.api_key}&token={token}"
    assert (await closed_before_welcome(both))[0] == 4001


async def test_unknown_and_revoked_keys_close_4001(server):
    assert (await closed_before_welcome(server.key_url("pk_live_nope")))[0] == 4001
    key = server.new_key()
    server.store.revoke(key)
    server.changed()
    code, reason = await closed_before_welcome(server.key_url(key))
    assert code == 4001 and key not in reason


async def test_percent_encoded_credential_is_decoded(server):
    token = server.mint()
    wire = await Wire.open(server.url + "/v1?token=" + token.replace(".", "%2E"))
    assert wire.welcome["type"] == "welcome"
    await wire.close()


def forged(server, **header: object) -> str:
    claims = {"exp": int(time.time()) + 60}
    return jwt.encode(claims, server.secret, algorithm="HS256", headers=header)


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(
            lambda s: jwt.encode(
                {"exp": int(time.time()) + 60},
                "wrong-secret-of-at-least-32-bytes!",
                algorithm="HS256",
                headers={"kid": s.secret_key_id},
            ),
            id="bad-signature",
        ),
        pytest.param(lambda s: forged(s, kid="sk_id_unknown"), id="unknown-kid"),
        pytest.param(
            lambda s: jwt.encode({"exp": int(time.time()) + 60}, s.secret, algorithm="HS256"),
            id="no-kid",
        ),
        pytest.param(
            lambda s: jwt.encode(
                {"exp": int(time.time()) + 60},
                s.secret,
                algorithm="HS512",
                headers={"kid": s.secret_key_id},
            ),
            id="hs512",
        ),
        pytest.param(
            lambda s: jwt.encode(
                {"exp": int(time.time()) + 60},
                None,
                algorithm="none",
                headers={"kid": s.secret_key_id},
            ),
            id="alg-none",
        ),
        pytest.param(
            lambda s: jwt.encode(
                {"iat": int(time.time())},
                s.secret,
                algorithm="HS256",
                headers={"kid": s.secret_key_id},
            ),
            id="no-exp",
        ),
        pytest.param(lambda s: "not.a.jwt", id="garbage"),
        pytest.param(lambda s: s.mint(peer_metadata={"blob": "x" * 5000}), id="metadata-too-big"),
        pytest.param(
            lambda s: jwt.encode(
                {"exp": int(time.time()) + 60, "permissions": ["fly"]},
                s.secret,
                algorithm="HS256",
                headers={"kid": s.secret_key_id},
            ),
            id="bad-permission",
        ),
        pytest.param(
            lambda s: jwt.encode(
                {"exp": int(time.time()) + 60, "channels": "room"},
                s.secret,
                algorithm="HS256",
                headers={"kid": s.secret_key_id},
            ),
            id="channels-not-list",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_bad_tokens_close_4001(server, make_token):
    token = make_token(server)
    code, reason = await closed_before_welcome(server.token_url(token))
    assert code == 4001
    assert token not in reason and server.secret not in reason


async def test_revoked_secret_key_closes_4001(server):
    token = server.mint()
    server.store.revoke(server.secret_key_id)
    server.changed()
    assert (await closed_before_welcome(server.token_url(token)))[0] == 4001


async def test_expired_token_closes_4002(server):
    # Expired for longer than the default 60 s clock-skew leeway.
    token = server.mint(ttl=60, now=time.time() - 200)
    assert (await closed_before_welcome(server.token_url(token)))[0] == 4002


def signed(srv, claims: dict[str, object]) -> str:
    return jwt.encode(claims, srv.secret, algorithm="HS256", headers={"kid": srv.secret_key_id})


async def test_clock_skew_within_the_leeway_is_accepted(server):
    now = int(time.time())
    for claims in (
        {"iat": now + 1, "exp": now + 60},  # the issuer's clock is a second ahead
        {"iat": now + 50, "nbf": now + 50, "exp": now + 600},
    ):
        wire = await Wire.open(server.token_url(signed(server, claims)))
        assert wire.welcome["expiresAt"] == claims["exp"]
        await wire.close()


@pytest.mark.parametrize("claim", ["iat", "nbf"])
async def test_token_from_the_future_beyond_the_leeway_closes_4001(server_factory, claim):
    async with server_factory(jwt_leeway=5) as srv:
        now = int(time.time())
        token = signed(srv, {claim: now + 30, "exp": now + 600})
        code, reason = await closed_before_welcome(srv.token_url(token))
        assert code == 4001 and claim in reason
        ok = signed(srv, {claim: now + 3, "exp": now + 600})
        await (await Wire.open(srv.token_url(ok))).close()


async def test_expired_within_the_leeway_is_accepted_until_exp_plus_leeway(server_factory):
    async with server_factory(jwt_leeway=2) as srv:
        exp = int(time.time()) - 1
        wire = await Wire.open(srv.token_url(signed(srv, {"exp": exp})))
        # The welcome reports the token's own exp; the server closes at exp + leeway.
        assert wire.welcome["expiresAt"] == exp
        code, _ = await wire.closed(timeout=5)
        assert code == 4002
        assert time.time() >= exp + 2 - 0.05
        late = signed(srv, {"exp": int(time.time()) - 3})
        assert (await closed_before_welcome(srv.token_url(late)))[0] == 4002


def test_leeway_setting_is_validated():
    from metered_realtime.server.config import ServerConfig

    assert ServerConfig().jwt_leeway == 60.0
    assert ServerConfig(jwt_leeway=0).jwt_leeway == 0
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="jwt_leeway"):
            ServerConfig(jwt_leeway=bad)


EXP = str(int(time.time()) + 3600)


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param('{"exp":1e400}', id="exp-overflows"),
        pytest.param('{"exp":-1e400}', id="exp-overflows-negative"),
        pytest.param('{"exp":NaN}', id="exp-nan"),
        pytest.param('{"exp":Infinity}', id="exp-infinity"),
        pytest.param('{"exp":1e300}', id="exp-out-of-range"),
        pytest.param('{"exp":' + "9" * 40 + "}", id="exp-huge-int"),
        pytest.param('{"exp":true}', id="exp-bool"),
        pytest.param('{"exp":"' + EXP + '"}', id="exp-string"),
        pytest.param('{"exp":' + EXP + ',"iat":1e400}', id="iat-overflows"),
        pytest.param('{"exp":' + EXP + ',"iat":NaN}', id="iat-nan"),
        pytest.param('{"exp":' + EXP + ',"nbf":[1]}', id="nbf-list"),
        pytest.param('{"exp":' + EXP + ',"permissions":[{}]}', id="permissions-unhashable"),
        pytest.param('{"exp":' + EXP + ',"permissions":[["publish"]]}', id="permissions-nested"),
        pytest.param('{"exp":' + EXP + ',"channels":[{}]}', id="channels-unhashable"),
        pytest.param('{"exp":' + EXP + ',"metadata":{"x":NaN}}', id="metadata-nan"),
        pytest.param('{"exp":' + EXP + ',"metadata":{"x":[1e400]}}', id="metadata-overflow"),
        pytest.param('{"exp":' + EXP + ',"peerMetadata":{"x":-Infinity}}', id="peer-meta-inf"),
        pytest.param(
            '{"exp":' + EXP + ',"metadata":' + '{"a":' * 200 + "1" + "}" * 200 + "}",
            id="metadata-deep",
        ),
        pytest.param(
            '{"exp":' + EXP + ',"peerMetadata":' + "[" * 1500 + "]" * 1500 + "}",
            id="peer-meta-too-deep-to-parse",
        ),
        pytest.param('[{"exp":' + EXP + "}]", id="claims-not-object"),
        pytest.param("nope", id="claims-not-json"),
    ],
)
async def test_hostile_claims_close_4001_not_1011(server, claims):
    token = raw_token(server.secret_key_id, server.secret, claims)
    code, _ = await closed_before_welcome(server.token_url(token))
    assert code == 4001
    # The server is unharmed.
    await (await Wire.open(server.key_url())).close()


async def test_hostile_header_closes_4001(server):
    deep = "[" * 1500 + "]" * 1500
    for header in (deep, '{"alg":"HS256","kid":' + deep + "}", '{"alg":NaN}'):
        token = raw_token(server.secret_key_id, server.secret, '{"exp":' + EXP + "}", header)
        assert (await closed_before_welcome(server.token_url(token)))[0] == 4001


async def test_token_granting_no_channel_closes_4003(server):
    assert (await closed_before_welcome(server.token_url(server.mint(channels=[]))))[0] == 4003


async def test_token_expiry_mid_session_closes_4002(server_factory):
    async with server_factory(jwt_leeway=0) as srv:
        token = srv.mint(ttl=1.5)
        wire = await Wire.open(srv.token_url(token))
        exp = wire.welcome["expiresAt"]
        assert (
            isinstance(exp, int)
            and exp == jwt.decode(token, options={"verify_signature": False})["exp"]
        )
        assert await wire.subscribe("room") == []
        code, _ = await wire.closed(timeout=5)
        assert code == 4002
        assert time.time() >= exp - 0.05


async def test_over_concurrent_limit_closes_4010(server_factory):
    async with server_factory(max_connections_per_app=1) as srv:
        first = await Wire.open(srv.key_url())
        assert (await closed_before_welcome(srv.key_url()))[0] == 4010
        await first.close()
        await first.ws.wait_closed()
        for _ in range(100):
            if not srv.server.hub.conns:
                break
            await asyncio.sleep(0.01)
        again = await Wire.open(srv.key_url())
        await again.close()


async def test_flood_closes_4011_and_others_unaffected(server_factory):
    async with server_factory(rate_per_second=5, rate_burst=5) as srv:
        calm = await Wire.open(srv.key_url())
        flood = await Wire.open(srv.key_url())
        for _ in range(20):
            await flood.send({"type": "ping"})
        code, _ = await flood.closed()
        assert code == 4011
        assert await calm.request({"type": "ping"}) == {"type": "pong"}
        await calm.close()


async def test_suspended_app_closes_4012(server):
    server.store.set_suspended(server.app_id, True)
    server.changed()
    assert (await closed_before_welcome(server.key_url()))[0] == 4012


async def test_oversize_data_closes_1009(server):
    wire = await Wire.open(server.key_url())
    ok = "x" * (65536 - 2)  # its JSON string is exactly maxMessageSize bytes
    reply = await wire.request({"type": "publish", "channel": "c", "data": ok, "requestId": "1"})
    assert reply == {"type": "ack", "requestId": "1"}
    await wire.send({"type": "publish", "channel": "c", "data": ok + "y", "requestId": "2"})
    assert (await wire.closed())[0] == 1009


async def test_oversize_non_ascii_measured_in_utf8_bytes(server):
    wire = await Wire.open(server.key_url())
    await wire.send({"type": "send", "to": wire.peer_id, "data": "é" * 32768, "requestId": "1"})
    assert (await wire.closed())[0] == 1009


async def test_frame_beyond_envelope_room_closes_1009(server):
    wire = await Wire.open(server.key_url(), welcome=True, max_size=None)
    await wire.send("x" * (65536 + 4097))
    assert (await wire.closed())[0] == 1009


async def test_allowed_origins(server):
    key = server.new_key(allowed_origins=["https://app.example"])
    wire = await Wire.open(server.key_url(key), origin="https://app.example")
    await wire.close()
    assert (await closed_before_welcome(server.key_url(key), origin="https://evil.example"))[
        0
    ] == 4001
    assert (await closed_before_welcome(server.key_url(key)))[0] == 4001


async def test_an_eviction_found_by_many_writes_is_logged_once(server, caplog):
    # Every write of one fan-out can find the buffer over the limit before the close runs.
    caplog.set_level(logging.WARNING, "metered_realtime.server")
    wire = await Wire.open(f"ws://127.0.0.1:{server.server.port}/v1?key={server.api_key}")
    (conn,) = [c for c in server.server.hub.conns.values() if c.peer_id == wire.peer_id]
    for _ in range(3):
        server.server.evict_slow(conn)
    assert (await wire.closed())[:1] == (1008,)
    evictions = [r.getMessage() for r in caplog.records if "evicting" in r.getMessage()]
    assert evictions == [f"evicting slow consumer {wire.peer_id} from 127.0.0.1"]


async def test_slow_consumer_is_evicted_with_1008(server_factory, caplog):
    caplog.set_level(logging.WARNING, "metered_realtime.server")
    async with server_factory(
        outbound_buffer_limit=256 * 1024, rate_per_second=10_000, rate_burst=10_000
    ) as srv:
        slow = await Wire.open(srv.key_url(), max_queue=1)
        fast = await Wire.open(srv.key_url())
        pub = await Wire.open(srv.key_url())
        await slow.subscribe("c")
        await fast.subscribe("c")
        payload = "z" * 60000
        received = 0
        evicted = False
        for i in range(600):
            await pub.send({"type": "publish", "channel": "c", "data": payload})
            while True:
                try:
                    frame = await fast.recv(timeout=0.5 if i == 599 else 0.001)
                except asyncio.TimeoutError:
                    break
                received += frame["type"] == "message"
            if not any(c.peer_id == slow.peer_id for c in srv.server.hub.conns.values()):
                evicted = True
                break
        assert evicted, "the slow consumer was never evicted"
        code, reason = await slow.closed(timeout=30)
        assert code == 1008 and reason == "slow consumer"
        evictions = [r for r in caplog.records if r.getMessage().startswith("evicting slow")]
        assert [r.getMessage() for r in evictions] == [
            f"evicting slow consumer {slow.peer_id} from 127.0.0.1"
        ]
        # Everyone else is unaffected: the fast subscriber still gets what follows.
        await pub.send({"type": "publish", "channel": "c", "data": "after"})
        for _ in range(1000):
            frame = await fast.recv()
            if frame.get("data") == "after":
                break
            assert frame["type"] in ("message", "presence")
        else:
            raise AssertionError("the fast subscriber lost the stream")
        for w in (fast, pub):
            await w.close()


async def test_drain_sends_going_away_then_1001(server_factory):
    async with server_factory(drain_grace=0.2) as srv:
        wire = await Wire.open(srv.key_url())
        drain = asyncio.ensure_future(srv.server.drain())
        assert await wire.recv() == {"type": "going_away", "retryAfterMs": 1000}
        # New upgrades are refused while draining.
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.server.port)
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 503")
        writer.close()
        # ... and so is a WebSocket upgrade to this node: HTTP 503, no welcome.
        with pytest.raises(InvalidStatus) as refused:
            await Wire.open(f"ws://127.0.0.1:{srv.server.port}/v1?key={srv.api_key}")
        assert refused.value.response.status_code == 503
        code, _ = await wire.closed()
        assert code == 1001
        await asyncio.wait_for(drain, 10)


async def test_http_routes(server):
    async def get(path: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.server.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        return line

    assert (await get("/healthz")).startswith(b"HTTP/1.1 200")
    assert (await get("/readyz")).startswith(b"HTTP/1.1 200")
    assert (await get("/nothing")).startswith(b"HTTP/1.1 404")


async def test_refusal_check_fails_on_a_welcome_then_close():
    # What closed_before_welcome guards against: a server that welcomes, then closes 4001.
    async def welcome_then_close(ws):
        await ws.send('{"type":"welcome","peerId":"p","expiresAt":null}')
        await ws.close(4001, "invalid key")

    async with serve(welcome_then_close, "127.0.0.1", 0) as fake:
        port = next(iter(fake.sockets)).getsockname()[1]
        with pytest.raises(AssertionError, match="close before any frame"):
            await closed_before_welcome(f"ws://127.0.0.1:{port}/v1?key=k")
        wire = await Wire.open(f"ws://127.0.0.1:{port}/v1?key=k", welcome=False)
        assert (await wire.closed())[0] == 4001  # the lenient check would have passed
