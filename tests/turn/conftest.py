"""A real coturn on loopback, in TURN REST (use-auth-secret) mode (tests/support/coturn.py)."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.support.coturn import Coturn, running_coturn
from tests.support.webrtc import keep_ice_on_loopback, peer_factory


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Host candidates on 127.0.0.1, so a direct path exists that only the policy forbids."""
    if importlib.util.find_spec("aioice") is not None:
        keep_ice_on_loopback(monkeypatch)


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[Coturn]:
    """coturn on 127.0.0.1: UDP and TCP on ``port``, TLS on ``tls_port``."""
    async with running_coturn(tmp_path) as started:
        yield started


@pytest.fixture
def turn_server(server_factory: Any, coturn: Coturn) -> Callable[..., Any]:
    """``async with turn_server(urls=None, **config) as srv``: a server whose welcome hands
    out credentials for ``coturn`` (its UDP URL unless ``urls`` says otherwise)."""

    def start(urls: tuple[str, ...] | None = None, **overrides: Any) -> Any:
        settings = {"ice_urls": urls or (coturn.url,), "turn_secret": coturn.secret}
        return server_factory(**{**settings, **overrides})

    return start


@pytest.fixture
def relay_peers() -> Callable[..., Any]:
    """``async with relay_peers(srv) as make``: MeteredPeers on ``srv``, closed at exit."""
    return peer_factory
