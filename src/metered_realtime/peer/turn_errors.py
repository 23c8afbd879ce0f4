"""A TURN allocation that failed, told as a ``TurnAllocationError`` instead of a silent ICE failure.

aioice drops the error of a failed allocation (the connection just has no relay candidate,
and with the relay-only policy no candidate at all). When a connection finishes gathering
without a relay candidate although a TURN server is configured, one fresh allocation with
the same credentials asks that server why, and the answer (coturn's 401 for a rejected or
expired credential) is reported.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from .._scrub import scrub
from ..errors import TurnAllocationError
from ..events import TurnError

PROBE_TIMEOUT = 10.0

_PROBES: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class TurnTarget:
    """The TURN server aiortc uses for a connection (it uses only the first usable one)."""

    url: str
    host: str
    port: int
    transport: str
    tls: bool
    username: str = field(repr=False)
    password: str = field(repr=False)


def turn_target(ice_servers: list[Any]) -> TurnTarget | None:
    """The first TURN URL of ``ice_servers`` that aiortc would use, by aiortc's own rules."""
    from aiortc.rtcicetransport import connection_kwargs

    for server in ice_servers:
        urls = server.urls if isinstance(server.urls, list) else [server.urls]
        for url in urls:
            kwargs = connection_kwargs([_single(server, url)])
            if "turn_server" in kwargs:
                host, port = kwargs["turn_server"]
                return TurnTarget(
                    scrub(url),
                    host,
                    int(port),
                    kwargs["turn_transport"],
                    bool(kwargs["turn_ssl"]),
                    kwargs["turn_username"] or "",
                    kwargs["turn_password"] or "",
                )
    return None


def _single(server: Any, url: str) -> Any:
    from aiortc import RTCIceServer

    return RTCIceServer(
        urls=url,
        username=server.username,
        credential=server.credential,
        credentialType=server.credentialType,
    )


def ice_transports(pc: Any) -> list[Any]:
    """Every distinct RTCIceTransport of ``pc`` (one when bundled)."""
    found: list[Any] = []
    dtls = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        dtls.append(pc.sctp.transport)
    for transport in dtls:
        if transport is not None and all(transport.transport is not f for f in found):
            found.append(transport.transport)
    return found


def gathered_types(pc: Any) -> set[str]:
    """The types ("host", "srflx", "relay") of every candidate ``pc`` gathered."""
    return {c.type for ice in ice_transports(pc) for c in ice.iceGatherer.getLocalCandidates()}


def credential_expired(username: str, now: float) -> bool:
    """True when a TURN REST username (``<unix expiry>:<user>``) names a time already past."""
    expiry, sep, _ = username.partition(":")
    return bool(sep) and expiry.isdigit() and int(expiry) <= now


async def probe(target: TurnTarget) -> TurnAllocationError | None:
    """Allocate once on ``target``; the error it answers, or None when it allocates."""
    from aioice.stun import TransactionFailed, TransactionTimeout
    from aioice.turn import create_turn_endpoint

    expired = credential_expired(target.username, time.time())
    try:
        transport, _ = await asyncio.wait_for(
            create_turn_endpoint(
                asyncio.DatagramProtocol,
                (target.host, target.port),
                target.username,
                target.password,
                ssl=target.tls,
                transport=target.transport,
            ),
            PROBE_TIMEOUT,
        )
    except TransactionFailed as exc:
        attributes = exc.response.attributes if exc.response is not None else {}
        code, reason = attributes.get("ERROR-CODE", (None, "refused"))
        return TurnAllocationError(target.url, code, str(reason), expired)
    except (TransactionTimeout, asyncio.TimeoutError):
        return TurnAllocationError(target.url, None, "no answer", expired)
    except OSError as exc:
        return TurnAllocationError(target.url, None, type(exc).__name__, expired)
    transport.close()
    return None


def watch(pc: Any, emitter: Any) -> None:
    """Emit a ``TurnError`` on ``emitter`` when ``pc`` gathers no relay candidate because
    its TURN server refused the allocation."""

    def on_gathering() -> None:
        if pc.iceGatheringState != "complete" or "relay" in gathered_types(pc):
            return
        config = getattr(pc, "_metered_config", None)  # set by MeteredPeer._new_pc
        target = turn_target(config.iceServers or []) if config is not None else None
        if target is None:
            return

        async def ask() -> None:
            error = await probe(target)
            if error is not None and pc.connectionState != "closed":
                emitter.emit(TurnError(error))

        task = asyncio.ensure_future(ask())
        _PROBES.add(task)
        task.add_done_callback(_PROBES.discard)

    pc.on("icegatheringstatechange", on_gathering)
