"""The track metadata one remote peer announced, and the lookup for its inbound tracks.

Pure: no aiortc, no I/O. :meth:`TrackMetaCache.lookup` states the order in which a track
finds its entry.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

#: Entries cached per remote peer; the oldest is evicted first (updates do not evict).
MAX_TRACK_META = 512


@dataclass(frozen=True, slots=True)
class _Entry:
    metadata: dict[str, Any]
    kind: str | None
    stream_id: str | None


def _agreed(candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The one metadata all candidates share, or None (none, or they disagree)."""
    if candidates and all(c == candidates[0] for c in candidates):
        return candidates[0]
    return None


class TrackMetaCache:
    """Set/clear messages of one remote peer, keyed by the sender's track id (bounded)."""

    def __init__(self, cap: int = MAX_TRACK_META) -> None:
        self._cap = cap
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, track_id: str) -> dict[str, Any] | None:
        """The metadata announced for ``track_id``, or None."""
        entry = self._entries.get(track_id)
        return None if entry is None else entry.metadata

    def store(
        self,
        track_id: str,
        metadata: dict[str, Any] | None,
        kind: str | None,
        stream_id: str | None,
    ) -> None:
        """Apply one message: ``metadata`` None clears the entry."""
        if metadata is None:
            self._entries.pop(track_id, None)
            return
        self._entries[track_id] = _Entry(metadata, kind, stream_id)
        while len(self._entries) > self._cap:
            self._entries.popitem(last=False)

    def lookup(
        self,
        msid_track: str | None,
        track_id: str | None,
        kind: str | None,
        stream_id: str | None,
        claimed: frozenset[str] = frozenset(),
    ) -> dict[str, Any] | None:
        """Metadata for an inbound track (``claimed``: every msid track id of the remote SDP).

        By the msid track id, then by the track's own id, then by stream id and kind when the
        candidates agree. Last, for a browser that sends on a transceiver our offer created
        (its msid names a generated sender id, not the track id its message names, and a
        JS message has no kind or stream id): the "orphaned" messages, those no msid claims,
        with no stream id and no other kind, when they all agree.
        """
        for key in (msid_track, track_id):
            if key and key in self._entries:
                return self._entries[key].metadata
        if stream_id is not None:
            found = _agreed(
                [
                    e.metadata
                    for e in self._entries.values()
                    if (e.stream_id, e.kind) == (stream_id, kind)
                ]
            )
            if found is not None:
                return found
        return _agreed(
            [
                e.metadata
                for t, e in self._entries.items()
                if t not in claimed and e.stream_id is None and e.kind in (None, kind)
            ]
        )
