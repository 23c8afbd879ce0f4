"""The ICE transport policy of a ``MeteredPeer``, named as the JS ``iceTransportPolicy``.

``"relay"`` keeps every connection on TURN: no host or server-reflexive candidate is
gathered, so the peer's own addresses never reach the remote side.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

IceTransportPolicy = Literal["all", "relay"]
ICE_TRANSPORT_POLICIES: tuple[str, ...] = get_args(IceTransportPolicy)


def relay_supported() -> bool:
    """Whether the installed aiortc can keep ICE to relays (1.16 and later; Python 3.11+)."""
    from aiortc import RTCConfiguration

    return "iceTransportPolicy" in RTCConfiguration.__dataclass_fields__


def check_policy(value: object) -> IceTransportPolicy:
    """``value`` if it is a valid policy this aiortc can honour, else a ``ValueError``."""
    if value == "all":
        return "all"
    if value == "relay":
        if not relay_supported():
            # Gathering host candidates anyway would leak the addresses "relay" hides.
            raise ValueError(
                'ice_transport_policy="relay" needs aiortc 1.16 or later, which needs '
                "Python 3.11 or later"
            )
        return "relay"
    allowed = " or ".join(repr(p) for p in ICE_TRANSPORT_POLICIES)
    raise ValueError(f"ice_transport_policy must be {allowed}, not {value!r}")


def configuration_fields(policy: IceTransportPolicy) -> dict[str, Any]:
    """The ``RTCConfiguration`` keyword for ``policy`` (none where aiortc predates it)."""
    if not relay_supported():
        return {}  # check_policy let only "all" through: aiortc's one behaviour
    from aiortc import RTCIceTransportPolicy

    member = RTCIceTransportPolicy.RELAY if policy == "relay" else RTCIceTransportPolicy.ALL
    return {"iceTransportPolicy": member}
