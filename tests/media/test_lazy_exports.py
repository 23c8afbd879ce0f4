"""The media helpers load lazily: importing the package or ``metered_realtime.media``
pulls in neither aiortc nor av; first attribute access does."""

from __future__ import annotations

import subprocess
import sys

HELPERS = [
    "AudioSource",
    "iter_frames",
    "from_file",
    "from_rtsp",
    "from_camera",
    "from_microphone",
    "screen_share",
    "ToneSource",
    "SilenceSource",
    "AudioSink",
    "VideoFrameSink",
    "Recorder",
]

SCRIPT = f"""
import sys
import metered_realtime
import metered_realtime.media as media
from metered_realtime.media import MediaStream
MediaStream()
assert "aiortc" not in sys.modules and "av" not in sys.modules, "eager import"
for name in {HELPERS!r}:
    value = getattr(media, name)
    assert getattr(metered_realtime, name) is value, name
assert "aiortc" in sys.modules and "av" in sys.modules
try:
    media.NoSuchThing
except AttributeError:
    pass
else:
    raise AssertionError("missing names must raise AttributeError")
assert sorted(media.__all__) == sorted(dir(media))
print("ok")
"""


def test_helpers_load_lazily_and_match_the_package_surface() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
