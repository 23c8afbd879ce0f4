"""ICE servers in every welcome: TURN REST credentials as coturn checks them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from tests.server.wire import Wire


async def test_welcome_carries_fresh_turn_credentials(server_factory):
    secret = "shared-turn-secret"
    urls = ("stun:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=udp")
    async with server_factory(ice_urls=urls, turn_secret=secret, turn_ttl=600) as srv:
        wire = await Wire.open(srv.key_url())
        servers = wire.welcome["metadata"]["iceServers"]
        assert servers[0] == {"urls": ["stun:127.0.0.1:3478"]}
        turn = servers[1]
        assert turn["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
        expiry, peer = turn["username"].split(":")
        assert peer == wire.peer_id
        assert abs(int(expiry) - (time.time() + 600)) < 5
        expected = base64.b64encode(
            hmac.new(secret.encode(), turn["username"].encode(), hashlib.sha1).digest()
        ).decode()
        assert turn["credential"] == expected
        # JWT sessions get them too, merged into the token's own metadata bag.
        jwt_wire = await Wire.open(srv.token_url(srv.mint(metadata={"plan": "pro"})))
        meta = jwt_wire.welcome["metadata"]
        assert meta["plan"] == "pro" and meta["iceServers"][1]["username"].endswith(
            jwt_wire.peer_id
        )
        # A token that brings its own iceServers wins.
        own = [{"urls": "stun:example.invalid:1"}]
        own_wire = await Wire.open(srv.token_url(srv.mint(metadata={"iceServers": own})))
        assert own_wire.welcome["metadata"] == {"iceServers": own}
        for w in (wire, jwt_wire, own_wire):
            await w.close()


async def test_no_ice_configured_means_no_metadata_for_keys(server):
    wire = await Wire.open(server.key_url())
    assert "metadata" not in wire.welcome
    await wire.close()
