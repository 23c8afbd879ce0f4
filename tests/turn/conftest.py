"""A real coturn on loopback, in TURN REST (use-auth-secret) mode."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Coturn:
    port: int
    secret: str

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = int(udp.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", port))
    return port


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[Coturn]:
    binary = shutil.which("turnserver")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("coturn (turnserver) is not installed; .ci/run installs it")
        pytest.skip("coturn is not installed (apt-get install coturn)")
    secret = "turn-secret-for-tests"
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-n",
        "--listening-ip=127.0.0.1",
        f"--listening-port={port}",
        "--relay-ip=127.0.0.1",
        "--min-port=49160",
        "--max-port=49360",
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        "--realm=metered-test",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--allow-loopback-peers",
        "--no-software-attribute",
        "--log-file=stdout",
        "--simple-log",
        f"--pidfile={tmp_path / 'turn.pid'}",
        f"--userdb={tmp_path / 'turndb.sqlite'}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield Coturn(port, secret)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
