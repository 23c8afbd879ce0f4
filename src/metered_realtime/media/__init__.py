"""Media grouping and media helpers.

Importing this module needs no aiortc: ``MediaStream`` is plain Python, and the helpers
(which need the ``webrtc`` extra, aiortc + av) load on first attribute access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._lazy import lazy_attributes
from .stream import MediaStream

StreamMetadata = dict[str, Any]

if TYPE_CHECKING:
    from .audio_source import AudioSource
    from .capture import (
        from_camera,
        from_file,
        from_microphone,
        from_rtsp,
        iter_frames,
        screen_share,
    )
    from .generators import SilenceSource, ToneSource
    from .recorder import Recorder
    from .sinks import AudioSink, VideoFrameSink

#: helper name -> submodule defining it (imported on first access; needs aiortc + av).
_LAZY: dict[str, str] = {
    "AudioSource": "audio_source",
    "iter_frames": "capture",
    "from_file": "capture",
    "from_rtsp": "capture",
    "from_camera": "capture",
    "from_microphone": "capture",
    "screen_share": "capture",
    "ToneSource": "generators",
    "SilenceSource": "generators",
    "AudioSink": "sinks",
    "VideoFrameSink": "sinks",
    "Recorder": "recorder",
}

__all__ = [
    "AudioSink",
    "AudioSource",
    "MediaStream",
    "Recorder",
    "SilenceSource",
    "StreamMetadata",
    "ToneSource",
    "VideoFrameSink",
    "from_camera",
    "from_file",
    "from_microphone",
    "from_rtsp",
    "iter_frames",
    "screen_share",
]


__getattr__, __dir__ = lazy_attributes(
    __name__, {name: f"{__name__}.{module}" for name, module in _LAZY.items()}, __all__
)
