"""A real coturn (``/usr/bin/turnserver``) for one test, configured from ``coturn.conf``.

``coturn.conf`` is the one copy of the configuration: docs/self-hosting.md quotes it, and
tests/turn/test_docs_config.py checks that the quote matches. TLS uses a self-signed
certificate made here for the listening address; ``ca_file`` is what a client must trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import shutil
import socket
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.support.waiting import accepts

TEMPLATE = Path(__file__).with_name("coturn.conf")
REALM = "metered-test"
SECRET = "turn-secret-for-tests"


@dataclass(frozen=True)
class Coturn:
    """A running coturn: where it listens and the secret it shares with the server."""

    ip: str
    port: int
    tls_port: int
    ca_file: Path
    log_file: Path
    secret: str = field(default=SECRET, repr=False)

    @property
    def url(self) -> str:
        return f"turn:{self.ip}:{self.port}?transport=udp"

    @property
    def tcp_url(self) -> str:
        return f"turn:{self.ip}:{self.port}?transport=tcp"

    @property
    def tls_url(self) -> str:
        return f"turns:{self.ip}:{self.tls_port}?transport=tcp"


def render_config(**values: object) -> str:
    """``coturn.conf`` with every ``${name}`` filled in (a missing one is a KeyError)."""
    return string.Template(TEMPLATE.read_text()).substitute(values)


def make_certificate(directory: Path, ip: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``ip`` (also its own CA); returns (cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"coturn test {ip}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "turn-cert.pem", directory / "turn-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def free_port(ip: str) -> int:
    """A port free for both UDP and TCP on ``ip``."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((ip, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((ip, port))
                except OSError:
                    continue
        return port
    raise RuntimeError(f"no port free for both UDP and TCP on {ip}")


def turnserver_binary() -> str:
    """The coturn binary; skip the test locally, fail it in CI, when it is missing."""
    binary = shutil.which("turnserver")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("coturn (turnserver) is not installed; scripts/check installs it")
        pytest.skip("coturn is not installed (apt-get install coturn)")
    return binary


async def _wait_listening(
    coturn: Coturn, proc: asyncio.subprocess.Process, ports: list[int]
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    for port in ports:
        while not await accepts(coturn.ip, port):
            if proc.returncode is not None or loop.time() > deadline:
                log = coturn.log_file.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"coturn did not start listening on {port}:\n{log}")
            await asyncio.sleep(0.05)  # a poll step: coturn signals readiness no other way


@contextlib.asynccontextmanager
async def running_coturn(
    state_dir: Path,
    ip: str = "127.0.0.1",
    *,
    loopback_peers: bool = True,
    listeners: tuple[str, ...] = ("udp", "tcp", "tls"),
) -> AsyncIterator[Coturn]:
    """Start coturn listening on ``ip`` (UDP and TCP on one port, TLS on another), relaying
    from ``ip`` too; stop it on exit. ``loopback_peers`` lets it relay to 127.0.0.0/8, which
    only a test on loopback needs; ``listeners`` names the client transports it accepts.
    """
    binary = turnserver_binary()
    cert, key = make_certificate(state_dir, ip)
    port, tls_port = free_port(ip), free_port(ip)
    config = state_dir / "turnserver.conf"
    config.write_text(
        render_config(
            listening_ip=ip,
            port=port,
            tls_port=tls_port,
            relay_ip=ip,
            min_port=49160,
            max_port=49360,
            realm=REALM,
            secret=SECRET,
            cert=cert,
            pkey=key,
            state_dir=state_dir,
        )
    )
    coturn = Coturn(ip, port, tls_port, cert, state_dir / "turnserver.log")
    args = [binary, "-c", str(config)] + (["--allow-loopback-peers"] if loopback_peers else [])
    args += [f"--no-{kind}" for kind in ("udp", "tcp", "tls") if kind not in listeners]
    with coturn.log_file.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
        )
    try:
        # UDP cannot be probed without a TURN request; the TCP listener opens with it.
        probed = [p for kind, p in (("tcp", port), ("tls", tls_port)) if kind in listeners]
        await _wait_listening(coturn, proc, probed)
        yield coturn
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
