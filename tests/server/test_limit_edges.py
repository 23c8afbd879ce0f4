"""Limits at their exact edge: the last allowed unit passes, the next one
does not. Written for mutants that moved an edge by one and survived the rest of the suite."""

from __future__ import annotations

from tests.server.wire import Wire


async def test_rate_limit_admits_exactly_the_burst(server_factory):
    # A refill so slow that it never adds a whole frame during the test.
    async with server_factory(rate_per_second=0.001, rate_burst=5) as srv:
        wire = await Wire.open(srv.key_url())
        for i in range(5):
            reply = await wire.request({"type": "ping", "requestId": f"p{i}"})
            assert reply == {"type": "pong", "requestId": f"p{i}"}
        await wire.send({"type": "ping", "requestId": "one-too-many"})
        code, reason = await wire.closed()
        assert (code, reason) == (4011, "over message rate")


async def test_peer_metadata_of_exactly_the_limit_is_accepted(server_factory):
    async with server_factory(peer_metadata_limit=4096) as srv:
        at_limit = {"k": "x" * (4096 - len('{"k":""}'))}  # 4096 bytes of compact JSON
        wire = await Wire.open(srv.token_url(srv.mint(peer_metadata=at_limit)))
        await wire.subscribe("room")
        await wire.close()
        over = {"k": "x" * (4097 - len('{"k":""}'))}
        refused = await Wire.open(srv.token_url(srv.mint(peer_metadata=over)), welcome=False)
        assert await refused.refused() == (4001, "peerMetadata too large")
