"""The seam between ``MeteredPeer`` and its ``RemotePeer``s, both ways.

Each side reaches into the other's private members; these two protocols list every member it
may touch, so that coupling is visible and checked (mypy checks that MeteredPeer is an
``Owner``; ``tests/peer/test_seam.py`` checks that neither module reaches past the lists).
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any, Protocol

from .._logging import Logger
from ..media.stream import MediaStream
from .recovery import RecoveryState
from .trackmeta import TrackMetaCache


class LocalTrack(Protocol):
    """One track the owner publishes."""

    @property
    def track(self) -> Any: ...

    @property
    def stream(self) -> MediaStream | None: ...


class DirectSender(Protocol):
    """The part of the signalling client a RemotePeer uses: direct messages."""

    async def send(self, to_peer_id: str, data: Any) -> None: ...


class Owner(Protocol):
    """What a RemotePeer may touch of the MeteredPeer that owns it."""

    @property
    def _log(self) -> Logger: ...

    @property
    def _hangup_grace(self) -> float: ...

    @property
    def _ladder(self) -> RecoveryState: ...

    @property
    def _client(self) -> DirectSender: ...

    @property
    def _local(self) -> Mapping[int, LocalTrack]: ...

    def _new_pc(self) -> Any:
        """A new aiortc connection configured with the current ICE servers."""

    def _copy_of(self, track: Any) -> Any:
        """A per-peer copy of a local track that keeps its id (video: from one shared encoder)."""

    def _announce_tracks(self, remote: Member) -> None:
        """Queue the metadata message of every local track for ``remote``."""

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task the owner cancels when it closes."""

    async def send_to(self, peer_id: str, data: Any) -> None: ...


class Member(Protocol):
    """What a MeteredPeer may touch of each of its RemotePeers."""

    id: str
    metadata: dict[str, Any] | None

    @property
    def _track_meta(self) -> TrackMetaCache: ...

    def _enqueue_direct(self, data: dict[str, Any]) -> None:
        """Queue a direct message; it leaves before any later offer."""

    def _attach_all(self) -> None:
        """Record every local track of the owner for the next offer."""

    def _attach(self, track: Any, stream: MediaStream | None) -> bool:
        """Record one local track; True when it was new."""

    def _detach(self, track: Any) -> bool:
        """Stop sending ``track``; True when that needs a renegotiation."""

    def _carries(self, track: Any) -> bool:
        """Whether ``track`` is attached to this peer's connection."""

    def _replace(self, old: Any, new: Any | None) -> bool:
        """Swap the copy of ``old`` for one of ``new`` without renegotiation."""

    def _local_changed(self) -> None:
        """Local media or channels changed: negotiate."""

    def _signal(self, data: Mapping[str, Any]) -> None:
        """An ``rtc-description`` or ``rtc-ice`` message from this peer."""

    def _signalling_lost(self) -> None:
        """The signalling socket dropped and will reconnect."""

    def _swap(self, polite: bool) -> None:
        """Signalling is back and this peer survived: move to a fresh connection."""

    def _close_now(self) -> None:
        """Removed from the room: state closed at once, before ``PeerLeft``."""

    async def _close(self) -> None:
        """Removed from the room: close the connection and stop the worker."""
