"""Shared fixtures: a real server on an ephemeral loopback port."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.support.ci_skips import register as register_ci_skips
from tests.support.postgres import PostgresServer, PostgresUnavailable
from tests.support.redis import RedisServer, RedisUnavailable

from metered_realtime.demo.embedded import EmbeddedServer, embedded_server
from metered_realtime.server.app import Server
from metered_realtime.tokens import mint_token


@dataclasses.dataclass
class RunningServer(EmbeddedServer):
    """A started server plus an app with an all-permission publishable key and a secret key."""

    def key_url(self, key: str | None = None) -> str:
        """The full connect URL for a publishable key (default: the all-permission one)."""
        return f"{self.url}/v1?key={key or self.api_key}"

    def token_url(self, token: str) -> str:
        """The full connect URL for a JWT."""
        return f"{self.url}/v1?token={token}"

    def mint(self, **kwargs: Any) -> str:
        """A JWT for this app, signed with its secret key."""
        return mint_token(self.secret_key_id, self.secret, **kwargs)

    def new_key(self, **kwargs: Any) -> str:
        """Another publishable key for this app."""
        return self.store.create_publishable_key(self.app_id, **kwargs).key

    @property
    def nodes(self) -> list[Server]:
        """Every server process of this service (one, or the nodes of a cluster)."""
        return [self.server]

    def changed(self) -> None:
        """Keys or apps were changed in the store: every node reloads them now, as the
        admin API makes them do (otherwise they notice within ``store_refresh``)."""
        for node in self.nodes:
            node.reload_keys()


def pytest_configure(config: pytest.Config) -> None:
    # In CI nothing may skip (a missing tool or package): see tests/support/ci_skips.py.
    register_ci_skips(config)


T = TypeVar("T")

ServerFactory = Callable[..., contextlib.AbstractAsyncContextManager[RunningServer]]


@pytest.fixture
def server_factory(tmp_path: Path) -> ServerFactory:
    """``async with server_factory(**ServerConfig overrides) as srv`` starts a server."""
    counter = iter(range(1000))

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[RunningServer]:
        db = str(tmp_path / f"store-{next(counter)}.db")
        async with embedded_server(**{"db": db, "app_name": "test", **overrides}) as srv:
            yield RunningServer(**{f.name: getattr(srv, f.name) for f in dataclasses.fields(srv)})

    return start


@pytest.fixture
async def server(server_factory: ServerFactory) -> AsyncIterator[RunningServer]:
    """A server with default settings."""
    async with server_factory() as srv:
        yield srv


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL on a free loopback port (if absent: skip locally, fail in CI)."""
    server = required(PostgresServer.start, PostgresUnavailable, "PostgreSQL")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh database that lives for the whole session."""
    return postgres_server.create_database()


@pytest.fixture
def postgres_store_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database for one test (dropped afterwards)."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


def required(start: Callable[[], T], missing: type[Exception], what: str) -> T:
    """Start a tool the tests need: if it is absent, skip here, but fail in CI."""
    try:
        return start()
    except missing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have {what}: {exc}")
        pytest.skip(str(exc))


def redis_process() -> Iterator[RedisServer]:
    """A redis-server on a free port, closed at the end."""
    server = required(RedisServer.start_new, RedisUnavailable, "redis-server")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for the whole session (each cluster uses its own key prefix)."""
    yield from redis_process()
