"""The public surface of ``metered_realtime``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import metered_realtime as mr

PUBLISHED = [
    "__version__",
    "MeteredPeer",
    "RemotePeer",
    "SignallingClient",
    "DataChannel",
    "MediaStream",
    "StreamMetadata",
    "AudioSource",
    "iter_frames",
    "from_file",
    "from_rtsp",
    "from_camera",
    "from_microphone",
    "screen_share",
    "SignallingClientOptions",
    "ReconnectOptions",
    "SubscribeOptions",
    "TokenProviderFn",
    "Event",
    "StateChange",
    "Connected",
    "Disconnected",
    "Message",
    "Direct",
    "Presence",
    "ServerError",
    "GoingAway",
    "TokenProviderError",
    "Joined",
    "Left",
    "PeerJoined",
    "PeerLeft",
    "Data",
    "FatalError",
    "Track",
    "StreamAdded",
    "StreamRemoved",
    "DataChannelOpened",
    "NegotiationError",
    "IceCandidateError",
    "DCOpen",
    "DCClose",
    "DCError",
    "DCMessage",
    "SignallingClientState",
    "MeteredPeerState",
    "PeerConnectionState",
    "MeteredRealtimeError",
    "SignallingError",
    "SignallingConnectError",
    "NotConnectedError",
    "ServerRequestError",
    "AckTimeoutError",
    "DisconnectedError",
    "ReconcileTimeoutError",
    "MeteredPeerSendError",
    "MeteredPeerOversizedError",
    "MeteredPeerStateError",
    "MeteredPeerReplaceTrackError",
    "ReplaceTrackFailure",
    "DataChannelOverflowError",
    "Logger",
    "NoopLogger",
    "StdlibLogger",
    "ErrorCode",
    "IceServerConfig",
    "PresencePeer",
    "WsCloseCode",
]

EXTENDED = [
    "ConnectionReset",
    "OversizedPayloadError",
    "IceRestartExhaustedError",
    "InvalidTokenError",
    "TokenExpiredError",
    "ChannelNotAuthorizedError",
    "AccountSuspendedError",
    "AdminDisconnectError",
    "TokenProviderFailedError",
    "TurnAllocationError",
    "TurnError",
    "ToneSource",
    "SilenceSource",
    "AudioSink",
    "VideoFrameSink",
    "Recorder",
]


def test_all_is_published_surface_plus_section_14() -> None:
    assert len(PUBLISHED) == 68
    assert sorted(mr.__all__) == sorted(PUBLISHED + EXTENDED)
    assert len(set(mr.__all__)) == len(mr.__all__)
    assert mr.__version__ == "1.0.2"


def test_dir_is_sorted_all() -> None:
    assert dir(mr) == sorted(mr.__all__)


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError):
        mr.DoesNotExist  # noqa: B018


def test_import_needs_only_websockets() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('aiortc', 'av', 'jwt', 'numpy'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import metered_realtime as mr\n"
        "c = mr.SignallingClient(api_key='pk_live_x', url='ws://localhost:1')\n"
        "assert not any(m.split('.')[0] in ('aiortc', 'av') for m in sys.modules)\n"
        "assert 'metered_realtime.server' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_errors_hierarchy() -> None:
    sig = mr.SignallingError
    for cls in (
        mr.NotConnectedError,
        mr.SignallingConnectError,
        mr.ServerRequestError,
        mr.AckTimeoutError,
        mr.DisconnectedError,
        mr.OversizedPayloadError,
    ):
        assert issubclass(cls, sig)
    for cls in (
        mr.ReconcileTimeoutError,
        mr.MeteredPeerSendError,
        mr.MeteredPeerOversizedError,
        mr.MeteredPeerStateError,
        mr.MeteredPeerReplaceTrackError,
        mr.DataChannelOverflowError,
        mr.IceRestartExhaustedError,
        mr.InvalidTokenError,
        mr.TokenExpiredError,
        mr.ChannelNotAuthorizedError,
        mr.AccountSuspendedError,
        mr.AdminDisconnectError,
        mr.TokenProviderFailedError,
    ):
        assert issubclass(cls, mr.MeteredRealtimeError) and not issubclass(cls, sig)
    assert not issubclass(mr.ReplaceTrackFailure, BaseException)


def test_error_attributes_and_messages() -> None:
    import pickle

    e = mr.SignallingConnectError(4001, "invalid token")
    assert (e.close_code, e.close_reason) == (4001, "invalid token")
    assert "4001" in str(e) and "invalid token" in str(e)
    s = mr.ServerRequestError("peer_not_found", None, "rid")
    assert str(s) == "server rejected request: peer_not_found" and s.request_id == "rid"
    assert str(mr.ServerRequestError("x", "boom")) == "boom"
    a = mr.AckTimeoutError("rid")
    assert a.timeout == 15.0 and a.request_id == "rid"
    o = mr.OversizedPayloadError(10, 5)
    assert (o.size, o.cap) == (10, 5)
    r = mr.MeteredPeerReplaceTrackError(("a",), (mr.ReplaceTrackFailure("b", ValueError()),))
    assert str(r) == "replace_track failed for 1 of 2 peer(s)"
    st = mr.MeteredPeerStateError("invalid_state", "join", "joined")
    assert (st.code, st.method, st.current_state) == ("invalid_state", "join", "joined")
    assert mr.DataChannelOverflowError(256, 256).queued == 256
    assert "close()" in str(mr.ReconcileTimeoutError())
    assert mr.InvalidTokenError().close_code == 4001
    for err in (e, s, a, o, st, mr.AdminDisconnectError(close_reason="bye")):
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err) and str(copy) == str(err)


def test_fatal_error_for_close() -> None:
    from metered_realtime.errors import fatal_error_for_close

    assert isinstance(fatal_error_for_close(4001), mr.InvalidTokenError)
    assert isinstance(fatal_error_for_close(4002), mr.TokenExpiredError)
    assert isinstance(fatal_error_for_close(4003), mr.ChannelNotAuthorizedError)
    assert isinstance(fatal_error_for_close(4012), mr.AccountSuspendedError)
    err = fatal_error_for_close(4020, "kicked")
    assert isinstance(err, mr.AdminDisconnectError)
    assert str(err) == "connection closed terminally (admin_disconnect, code 4020): kicked"
    assert fatal_error_for_close(1006) is None


def test_logger_protocol() -> None:
    assert isinstance(mr.NoopLogger(), mr.Logger)
    assert isinstance(mr.StdlibLogger(), mr.Logger)
    assert not isinstance(object(), mr.Logger)
    assert mr.WsCloseCode.CLIENT_INACTIVITY == 4000
    from metered_realtime.protocol import ERROR_CODES

    assert len(ERROR_CODES) == 13
