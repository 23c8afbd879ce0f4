"""Fixtures for driving the published JavaScript SDK (see tests/support/jsclient.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from tests.support.jsclient import JSClient, MakeJS, node_available


@pytest.fixture
async def js() -> AsyncIterator[MakeJS]:
    """`await js("alice")` starts one node driver; every one started is stopped at teardown."""
    reason = node_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"JavaScript interop cannot run in CI: {reason}")
        pytest.skip(reason)
    started: list[JSClient] = []

    async def make(label: str = "js") -> JSClient:
        client = JSClient(label)
        started.append(client)
        await client.start()
        return client

    try:
        yield make
    finally:
        for client in started:
            await client.aclose()
        for client in started:
            assert not client.driver_errors(), f"{client.label}: {client.driver_errors()}"
