"""``SignallingClient`` and its options."""

from __future__ import annotations

from .client import SignallingClient
from .options import ReconnectOptions, SignallingClientOptions, SubscribeOptions

__all__ = ["ReconnectOptions", "SignallingClient", "SignallingClientOptions", "SubscribeOptions"]
