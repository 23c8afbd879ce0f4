"""The ICE transport policy of a ``MeteredPeer``, named as the JS ``iceTransportPolicy``.

``"relay"`` keeps every connection on TURN: no host or server-reflexive candidate is
gathered, so the peer's own addresses never reach the remote side.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

IceTransportPolicy = Literal["all", "relay"]
ICE_TRANSPORT_POLICIES: tuple[str, ...] = get_args(IceTransportPolicy)


def check_policy(value: object) -> IceTransportPolicy:
    """``value`` if it is a valid policy, else a ``ValueError`` naming the allowed ones."""
    if value == "all":
        return "all"
    if value == "relay":
        return "relay"
    allowed = " or ".join(repr(p) for p in ICE_TRANSPORT_POLICIES)
    raise ValueError(f"ice_transport_policy must be {allowed}, not {value!r}")


def rtc_policy(policy: IceTransportPolicy) -> Any:
    """The aiortc ``RTCIceTransportPolicy`` member for ``policy``."""
    from aiortc import RTCIceTransportPolicy

    return RTCIceTransportPolicy.RELAY if policy == "relay" else RTCIceTransportPolicy.ALL
