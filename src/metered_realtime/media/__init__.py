"""Media grouping and (later) media-input helpers. Importing this module needs no aiortc."""

from __future__ import annotations

from typing import Any

from .stream import MediaStream

StreamMetadata = dict[str, Any]

__all__ = ["MediaStream", "StreamMetadata"]
