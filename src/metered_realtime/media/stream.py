"""``MediaStream``: a plain grouping of tracks. Needs no aiortc."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any


class MediaStream:
    """An ordered set of tracks sharing one stream id (the msid stream id on the wire).

    Changing a stream does not change what is already being sent.
    """

    __slots__ = ("_id", "_tracks")

    def __init__(self, tracks: Iterable[Any] = (), *, id: str | None = None) -> None:
        self._id = id if id is not None else uuid.uuid4().hex
        self._tracks: list[Any] = []
        for track in tracks:
            self.add_track(track)

    @property
    def id(self) -> str:
        return self._id

    def get_tracks(self) -> list[Any]:
        return list(self._tracks)

    def get_audio_tracks(self) -> list[Any]:
        return [t for t in self._tracks if getattr(t, "kind", None) == "audio"]

    def get_video_tracks(self) -> list[Any]:
        return [t for t in self._tracks if getattr(t, "kind", None) == "video"]

    def add_track(self, track: Any) -> None:
        if not any(t is track for t in self._tracks):
            self._tracks.append(track)

    def remove_track(self, track: Any) -> None:
        self._tracks = [t for t in self._tracks if t is not track]

    def __repr__(self) -> str:
        kinds = ", ".join(str(getattr(t, "kind", "?")) for t in self._tracks)
        return f"<MediaStream id={self._id} tracks=[{kinds}]>"
