"""What ICE settled on: the selected (nominated) candidate pairs of an aiortc connection.

aiortc has no getSelectedCandidatePair(); this reads aioice's nominated pairs through two
private attributes, ``RTCIceGatherer._connection`` and ``aioice.Connection._nominated``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SelectedPair:
    local_type: str
    remote_type: str
    local_transport: str
    local_addr: tuple[str, int]
    remote_addr: tuple[str, int]


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


def selected_pairs(pc: Any) -> list[SelectedPair]:
    """The nominated pair of every component of every ICE transport of ``pc``."""
    pairs: list[SelectedPair] = []
    for ice in ice_transports(pc):
        for pair in ice.iceGatherer._connection._nominated.values():
            local = pair.local_candidate
            pairs.append(
                SelectedPair(
                    local.type,
                    pair.remote_candidate.type,
                    local.transport,
                    pair.local_addr,
                    pair.remote_addr,
                )
            )
    return pairs


def local_candidate_types(pc: Any) -> set[str]:
    """The types of every candidate ``pc`` gathered (public aiortc API)."""
    return {c.type for ice in ice_transports(pc) for c in ice.iceGatherer.getLocalCandidates()}
