"""Fixtures for the SignallingClient tests: a fault proxy in front of the real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support.faultproxy import FaultProxy


@pytest.fixture
async def proxy(server: Any) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", server.server.port) as p:
        yield p
