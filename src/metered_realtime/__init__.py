"""metered-realtime: async realtime messaging and WebRTC for Python.

``import metered_realtime`` needs only ``websockets``. The WebRTC classes and the media
helpers load lazily on first access (they need the ``webrtc`` extra: aiortc + av).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._logging import Logger, NoopLogger, StdlibLogger
from ._types import (
    IceServerConfig,
    MeteredPeerState,
    PeerConnectionState,
    SignallingClientState,
    StreamMetadata,
    TokenProviderFn,
)
from .errors import (
    AccountSuspendedError,
    AckTimeoutError,
    AdminDisconnectError,
    ChannelNotAuthorizedError,
    DataChannelOverflowError,
    DisconnectedError,
    IceRestartExhaustedError,
    InvalidTokenError,
    MeteredPeerOversizedError,
    MeteredPeerReplaceTrackError,
    MeteredPeerSendError,
    MeteredPeerStateError,
    MeteredRealtimeError,
    NotConnectedError,
    OversizedPayloadError,
    ReconcileTimeoutError,
    ReplaceTrackFailure,
    ServerRequestError,
    SignallingConnectError,
    SignallingError,
    TokenExpiredError,
    TokenProviderFailedError,
)
from .events import (
    Connected,
    ConnectionReset,
    Data,
    DataChannelOpened,
    DCClose,
    DCError,
    DCMessage,
    DCOpen,
    Direct,
    Disconnected,
    Event,
    FatalError,
    GoingAway,
    IceCandidateError,
    Joined,
    Left,
    Message,
    NegotiationError,
    PeerJoined,
    PeerLeft,
    Presence,
    ServerError,
    StateChange,
    StreamAdded,
    StreamRemoved,
    TokenProviderError,
    Track,
)
from .protocol.codes import ErrorCode, WsCloseCode
from .protocol.frames import PresencePeer
from .signalling import (
    ReconnectOptions,
    SignallingClient,
    SignallingClientOptions,
    SubscribeOptions,
)

if TYPE_CHECKING:  # resolved lazily at runtime, see __getattr__
    from .media import (
        AudioSink,
        AudioSource,
        MediaStream,
        Recorder,
        SilenceSource,
        ToneSource,
        VideoFrameSink,
        from_camera,
        from_file,
        from_microphone,
        from_rtsp,
        iter_frames,
        screen_share,
    )
    from .peer import DataChannel, MeteredPeer, RemotePeer

__version__ = "1.0.2"

#: name -> module that defines it; imported on first attribute access.
_LAZY: dict[str, str] = {
    "MeteredPeer": "metered_realtime.peer",
    "RemotePeer": "metered_realtime.peer",
    "DataChannel": "metered_realtime.peer",
    "MediaStream": "metered_realtime.media",
    "AudioSource": "metered_realtime.media",
    "iter_frames": "metered_realtime.media",
    "from_file": "metered_realtime.media",
    "from_rtsp": "metered_realtime.media",
    "from_camera": "metered_realtime.media",
    "from_microphone": "metered_realtime.media",
    "screen_share": "metered_realtime.media",
    # section 14.10 helpers
    "ToneSource": "metered_realtime.media",
    "SilenceSource": "metered_realtime.media",
    "AudioSink": "metered_realtime.media",
    "VideoFrameSink": "metered_realtime.media",
    "Recorder": "metered_realtime.media",
}

__all__ = [
    "AccountSuspendedError",
    "AckTimeoutError",
    "AdminDisconnectError",
    "AudioSink",
    "AudioSource",
    "ChannelNotAuthorizedError",
    "Connected",
    "ConnectionReset",
    "DCClose",
    "DCError",
    "DCMessage",
    "DCOpen",
    "Data",
    "DataChannel",
    "DataChannelOpened",
    "DataChannelOverflowError",
    "Direct",
    "Disconnected",
    "DisconnectedError",
    "ErrorCode",
    "Event",
    "FatalError",
    "GoingAway",
    "IceCandidateError",
    "IceRestartExhaustedError",
    "IceServerConfig",
    "InvalidTokenError",
    "Joined",
    "Left",
    "Logger",
    "MediaStream",
    "Message",
    "MeteredPeer",
    "MeteredPeerOversizedError",
    "MeteredPeerReplaceTrackError",
    "MeteredPeerSendError",
    "MeteredPeerState",
    "MeteredPeerStateError",
    "MeteredRealtimeError",
    "NegotiationError",
    "NoopLogger",
    "NotConnectedError",
    "OversizedPayloadError",
    "PeerConnectionState",
    "PeerJoined",
    "PeerLeft",
    "Presence",
    "PresencePeer",
    "ReconcileTimeoutError",
    "ReconnectOptions",
    "Recorder",
    "RemotePeer",
    "ReplaceTrackFailure",
    "ServerError",
    "ServerRequestError",
    "SignallingClient",
    "SignallingClientOptions",
    "SignallingClientState",
    "SignallingConnectError",
    "SignallingError",
    "SilenceSource",
    "StateChange",
    "StdlibLogger",
    "StreamAdded",
    "StreamMetadata",
    "StreamRemoved",
    "SubscribeOptions",
    "TokenExpiredError",
    "TokenProviderError",
    "TokenProviderFailedError",
    "TokenProviderFn",
    "ToneSource",
    "Track",
    "VideoFrameSink",
    "WsCloseCode",
    "__version__",
    "from_camera",
    "from_file",
    "from_microphone",
    "from_rtsp",
    "iter_frames",
    "screen_share",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(module_name)
    try:
        value = getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
