"""The metered-realtime server: the hosted service's wire protocol, self-hosted."""

from __future__ import annotations

from .config import ServerConfig

__all__ = ["ServerConfig"]
