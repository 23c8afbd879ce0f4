"""metered-realtime: async realtime messaging and WebRTC for Python."""

from __future__ import annotations

__version__ = "1.0.2"

__all__ = ["__version__"]
