"""WebRTC rooms: ``MeteredPeer``, ``RemotePeer``, ``DataChannel`` (aiortc is imported lazily)."""

from __future__ import annotations

from .datachannel import DataChannel
from .metered import MeteredPeer, MeteredPeerState
from .remote import RemotePeer

__all__ = ["DataChannel", "MeteredPeer", "MeteredPeerState", "RemotePeer"]
