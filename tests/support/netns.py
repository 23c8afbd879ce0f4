"""Two hosts with no route to each other, each reaching only one service address.

Built inside the test's own loopback-only namespace (scripts/test), which plays the router
that does not route: it holds ``SERVICE_IP`` (where coturn and the signalling server listen)
and one veth link to each host namespace, and forwards nothing (``ip_forward`` is 0). Each
host namespace has its own /24 and a single /32 route, to ``SERVICE_IP``; the other host's
addresses are unreachable from it. The addresses come from 198.18.0.0/15, the range set
aside for test networks, and exist only inside these namespaces.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVICE_IP = "198.18.0.1"


@dataclass(frozen=True)
class Host:
    """One isolated host: its namespace name and address."""

    netns: str
    ip: str

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def netns_unavailable() -> str | None:
    """Why the test cannot build namespaces here, or None."""
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "0":
        return "not inside the test namespace (ip_forward is on): run through scripts/test"
    return None


def route_error(host: Host, destination: str) -> str | None:
    """The kernel's refusal to route from ``host`` to ``destination``, or None if it would."""
    out = subprocess.run(
        ["ip", "-n", host.netns, "route", "get", destination],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return out.stderr.strip() if out.returncode != 0 else None


@contextlib.contextmanager
def isolated_hosts() -> Iterator[tuple[Host, Host]]:
    """Two host namespaces (deleted on exit), as described in the module docstring."""
    reason = netns_unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the namespace tests: {reason}")
        pytest.skip(reason)
    tag = os.getpid()
    hosts = (Host(f"mr-turn-a-{tag}", "198.18.1.2"), Host(f"mr-turn-b-{tag}", "198.18.2.2"))
    made: list[str] = []
    try:
        _ip("addr", "add", f"{SERVICE_IP}/32", "dev", "lo")
        for index, host in enumerate(hosts, start=1):
            _ip("netns", "add", host.netns)
            made.append(host.netns)
            outside, inside = f"mrt{index}", f"mrt{index}h"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", host.netns)
            _ip("addr", "add", f"198.18.{index}.1/24", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip("-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", inside)
            _ip("-n", host.netns, "link", "set", inside, "up")
            _ip("-n", host.netns, "route", "add", f"{SERVICE_IP}/32", "via", f"198.18.{index}.1")
        yield hosts
    finally:
        for name in made:
            with contextlib.suppress(subprocess.SubprocessError):
                _ip("netns", "del", name)  # takes its end of the veth link, and so both ends
        with contextlib.suppress(subprocess.SubprocessError):
            _ip("addr", "del", f"{SERVICE_IP}/32", "dev", "lo")
