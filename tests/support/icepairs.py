"""What ICE settled on: the selected (nominated) candidate pairs of an aiortc connection.

aiortc has no getSelectedCandidatePair(); this reads aioice's nominated pairs through two
private attributes, ``RTCIceGatherer._connection`` and ``aioice.Connection._nominated``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metered_realtime.peer.turn_errors import gathered_types, ice_transports

__all__ = ["SelectedPair", "local_candidate_types", "selected_pairs"]

local_candidate_types = gathered_types


@dataclass(frozen=True)
class SelectedPair:
    local_type: str
    remote_type: str
    local_addr: tuple[str, int]
    remote_addr: tuple[str, int]


def selected_pairs(pc: Any) -> list[SelectedPair]:
    """The nominated pair of every component of every ICE transport of ``pc``."""
    return [
        SelectedPair(
            pair.local_candidate.type, pair.remote_candidate.type, pair.local_addr, pair.remote_addr
        )
        for ice in ice_transports(pc)
        for pair in ice.iceGatherer._connection._nominated.values()
    ]
