"""Which address a connection comes from, behind trusted reverse proxies (``X-Forwarded-For``).

Anyone can send ``X-Forwarded-For``, so it is read only when the TCP peer is one of the
configured trusted proxies, and then from the right: each proxy appends the address it
received the request from, so the list's right end was written by the proxy in front of
this server and its left end by the client. Walking from the right, trusted proxies are
skipped and the first address that is not one is the client (the rightmost-untrusted rule):
whatever a client puts in the header itself stays to the left of that and is never used.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["TrustedProxies"]

MAX_HOPS = 32
"""Addresses of ``X-Forwarded-For`` considered at most, from the right."""

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TrustedProxies:
    """The networks whose ``X-Forwarded-For`` is believed; sans-I/O."""

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(net, strict=False) for net in networks
        )

    def __bool__(self) -> bool:
        return bool(self._networks)

    def client_address(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The client's address, given the TCP ``peer`` and the request's header values.

        ``peer`` itself unless it is a trusted proxy; otherwise the rightmost address of the
        header that is not a trusted proxy. When every address is trusted, the leftmost one;
        when an entry is not an IP address, the trusted address to its right (the proxy that
        passed it on), since nothing beyond it can be believed.
        """
        if not self._trusted(peer):
            return peer
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        client = peer
        for hop in reversed(hops[-MAX_HOPS:]):
            if _address(hop) is None:
                return client
            client = hop
            if not self._trusted(hop):
                return hop
        return client

    def _trusted(self, host: str) -> bool:
        address = _address(host)
        return address is not None and any(address in net for net in self._networks)


def _address(host: str) -> _Address | None:
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
