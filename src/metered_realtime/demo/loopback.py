"""Keep aiortc's ICE on 127.0.0.1: for tests, CI and the demo's two in-process peers."""

from __future__ import annotations

import os
from collections.abc import Callable

#: Setting this environment variable to 1 has the effect of ``--loopback``.
LOOPBACK_ENV = "METERED_REALTIME_LOOPBACK"


def loopback_requested(flag: bool = False) -> bool:
    """True when ``flag`` is set or the ``METERED_REALTIME_LOOPBACK`` variable is 1/true/yes."""
    return flag or os.environ.get(LOOPBACK_ENV, "").strip().lower() in ("1", "true", "yes")


def loopback_host_addresses(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    """Stands in for ``aioice.ice.get_host_addresses``: 127.0.0.1 only."""
    return ["127.0.0.1"]


def restrict_ice_to_loopback() -> Callable[[], None]:
    """Make aiortc gather ICE host candidates on 127.0.0.1 only; returns an undo function.

    aioice normally offers every interface address *except* loopback, so two peers on one
    machine talk over its real network interfaces. Tests and CI must keep traffic on
    127.0.0.1, so this points aioice's host-address discovery at 127.0.0.1. No STUN/TURN
    server is involved: the SDK always passes the server's ICE list, empty for the embedded
    server. Connections to peers elsewhere (a browser on another machine) cannot work while
    this is active.
    """
    import aioice.ice

    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = loopback_host_addresses

    def undo() -> None:
        if aioice.ice.get_host_addresses is loopback_host_addresses:
            aioice.ice.get_host_addresses = original

    return undo
