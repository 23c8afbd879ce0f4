"""The welcome's TURN credentials are accepted by a real coturn, and relay traffic."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint
from tests.server.wire import Wire


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait((data, addr))


async def allocate(port: int, username: str, password: str) -> tuple[Any, Inbox]:
    last: Exception | None = None
    for _ in range(50):  # coturn needs a moment to open its listener
        try:
            return await asyncio.wait_for(
                create_turn_endpoint(Inbox, ("127.0.0.1", port), username, password), 5
            )
        except (ConnectionError, asyncio.TimeoutError, OSError) as exc:
            last = exc
            await asyncio.sleep(0.1)
    raise AssertionError(f"coturn never answered: {last!r}")


async def test_coturn_accepts_welcome_credentials_and_relays(coturn, server_factory):
    async with server_factory(ice_urls=(coturn.url,), turn_secret=coturn.secret) as srv:
        wire = await Wire.open(srv.key_url())
        entry = wire.welcome["metadata"]["iceServers"][0]
        transport, client = await allocate(coturn.port, entry["username"], entry["credential"])
        relayed = transport.get_extra_info("sockname")
        assert relayed[0] == "127.0.0.1"
        # A peer on loopback sends to the relayed address; coturn forwards it to the client.
        loop = asyncio.get_running_loop()
        peer_transport, peer = await loop.create_datagram_endpoint(
            Inbox, local_addr=("127.0.0.1", 0)
        )
        peer_addr = peer_transport.get_extra_info("sockname")
        transport.sendto(b"hello through turn", peer_addr)  # installs the permission
        data, _ = await asyncio.wait_for(peer.received.get(), 5)
        assert data == b"hello through turn"
        peer_transport.sendto(b"and back", relayed)
        data, _ = await asyncio.wait_for(client.received.get(), 5)
        assert data == b"and back"
        peer_transport.close()
        transport.close()
        await wire.close()


async def test_coturn_refuses_a_forged_credential(coturn, server_factory):
    async with server_factory(ice_urls=(coturn.url,), turn_secret="not-the-coturn-secret") as srv:
        wire = await Wire.open(srv.key_url())
        entry = wire.welcome["metadata"]["iceServers"][0]
        # Make sure coturn is up with a good allocation first, so the refusal is a real one.
        from metered_realtime.server.turn import turn_credential

        good, _ = await allocate(
            coturn.port, entry["username"], turn_credential(coturn.secret, entry["username"])
        )
        good.close()
        with pytest.raises(TransactionFailed) as refused:
            await asyncio.wait_for(
                create_turn_endpoint(
                    Inbox, ("127.0.0.1", coturn.port), entry["username"], entry["credential"]
                ),
                10,
            )
        assert refused.value.response.attributes["ERROR-CODE"][0] == 401
        await wire.close()
