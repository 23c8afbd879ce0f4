"""A throwaway PostgreSQL server on a free loopback port, for tests.

``PostgresServer.start()`` runs ``initdb`` into a fresh temporary directory and starts ``postgres``
on 127.0.0.1 (unix socket in the same directory, fsync off, trust auth) and waits until it answers;
``stop()`` shuts it down by its own pid (SIGINT: a fast shutdown) and removes the directory.
PostgreSQL refuses to run as root, so as root both run as the ``postgres`` OS user (via
``setpriv``, which execs, so the pid we hold is the server's own), with the directory chowned to it.
The server also gets SIGINT if the test process dies without stopping it (``--pdeathsig``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries on this machine (or no ``postgres`` user to run them as root)."""


def find_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin`` (Debian), or the directory of ``initdb`` on PATH."""

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path))

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable("PostgreSQL is not installed (no initdb); apt-get install postgresql")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """One running ``postgres``; ``url(dbname)`` connects to a database in it."""

    bindir: Path
    base: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def logfile(self) -> Path:
        return self.base / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{dbname}"

    # --- lifecycle ---------------------------------------------------------

    @classmethod
    def start(cls, timeout: float = 60.0) -> PostgresServer:
        bindir = find_bindir()
        base = Path(tempfile.mkdtemp(prefix="mr-pg-"))
        server = cls(bindir, base)
        try:
            server._initdb()
            server._launch(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _as_owner(self, argv: list[str]) -> list[str]:
        """``argv`` run as the postgres user when we are root, and stopped (SIGINT) if we die.

        ``setpriv`` execs, so the pid we hold is the server's own.
        """
        if shutil.which("setpriv") is None:
            if os.geteuid() == 0:
                raise PostgresUnavailable("running as root needs setpriv (util-linux)")
            return argv
        prefix = ["setpriv", "--pdeathsig", "INT"]
        if os.geteuid() == 0:
            prefix += ["--reuid", PG_USER, "--regid", PG_USER, "--clear-groups"]
        return [*prefix, "--", *argv]

    def _initdb(self) -> None:
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(PG_USER)
            except KeyError:
                raise PostgresUnavailable(f"running as root and no {PG_USER!r} user") from None
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        os.chmod(self.base, 0o700)
        subprocess.run(
            self._as_owner(
                [
                    str(self.bindir / "initdb"),
                    "--pgdata",
                    str(self.datadir),
                    "--username",
                    PG_USER,
                    "--auth",
                    "trust",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def _launch(self, timeout: float) -> None:
        # A port picked here could be taken before postgres binds it; then try another.
        for _attempt in range(3):
            self.port = _free_port()
            with open(self.logfile, "ab") as log:
                self.proc = subprocess.Popen(
                    self._as_owner(
                        [
                            str(self.bindir / "postgres"),
                            "-D",
                            str(self.datadir),
                            "-p",
                            str(self.port),
                            "-c",
                            "listen_addresses=127.0.0.1",
                            "-c",
                            f"unix_socket_directories={self.base}",
                            "-c",
                            "fsync=off",
                            "-c",
                            "synchronous_commit=off",
                            "-c",
                            "full_page_writes=off",
                            "-c",
                            "max_connections=100",
                        ]
                    ),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            if self._wait_ready(timeout):
                return
        raise RuntimeError(f"postgres did not start; its log:\n{self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        import psycopg

        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        self._shutdown()
        raise TimeoutError(f"postgres not ready in {timeout} s; its log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _shutdown(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # fast shutdown: roll back sessions, then exit
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        self._shutdown()
        shutil.rmtree(self.base, ignore_errors=True)

    # --- databases ---------------------------------------------------------

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started server for the ``with`` block."""
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()
