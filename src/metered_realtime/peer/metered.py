"""``MeteredPeer``: one channel, N remote peers over WebRTC."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Literal

from .._emitter import EventEmitter
from .._logging import Logger, NoopLogger
from .._scrub import scrub, scrub_exception
from .._swallow import best_effort
from .._types import IceServerConfig, TokenProviderFn
from ..errors import (
    AccountSuspendedError,
    ChannelNotAuthorizedError,
    InvalidTokenError,
    MeteredPeerOversizedError,
    MeteredPeerReplaceTrackError,
    MeteredPeerSendError,
    MeteredPeerStateError,
    MeteredRealtimeError,
    ReconcileTimeoutError,
    ReplaceTrackFailure,
    SignallingError,
    TokenExpiredError,
    TokenProviderFailedError,
    fatal_error_for_close,
)
from ..events import (
    Connected,
    Data,
    Direct,
    Disconnected,
    FatalError,
    Joined,
    Left,
    Message,
    PeerJoined,
    PeerLeft,
    Presence,
    ServerError,
    StateChange,
    TokenProviderError,
)
from ..media.stream import MediaStream
from ..protocol import FATAL_CLOSE_CODES, is_reserved_channel, payload_size
from ..signalling import (
    ReconnectOptions,
    SignallingClient,
    SignallingClientOptions,
    SubscribeOptions,
)
from .ice_policy import IceTransportPolicy, check_policy, configuration_fields
from .negotiation import HANGUP_GRACE, is_polite
from .recovery import RecoveryState
from .remote import RemotePeer
from .seam import Member

MeteredPeerState = Literal["idle", "joining", "joined", "reconnecting", "leaving", "closed"]

TRACK_META_KEY = "__meteredTrackMeta"
MAX_REMOTE_PEERS = 256
RECONCILE_DEADLINE = 10.0
RECONCILE_RESUBSCRIBES = 2
MAX_META_ID = 256
_FATAL_SERVER_CODES: dict[str, type[MeteredRealtimeError] | None] = {
    "account_suspended": AccountSuspendedError,
    "channel_not_authorized": ChannelNotAuthorizedError,
    "action_not_permitted": None,
    "invalid_token": InvalidTokenError,
    "token_expired": TokenExpiredError,
}


@dataclass
class _LocalTrack:
    track: Any
    stream: MediaStream | None
    metadata: dict[str, Any] | None


def _is_rtc_signal(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    kind = data.get("type")
    if kind == "rtc-description":
        desc = data.get("description")
        return (
            isinstance(desc, dict)
            and desc.get("type") in ("offer", "answer")
            and isinstance(desc.get("sdp"), str)
        )
    if kind == "rtc-ice":
        return "candidate" in data and (
            data["candidate"] is None or isinstance(data["candidate"], dict)
        )
    return False


def _valid_meta_str(value: Any) -> bool:
    return value is None or (isinstance(value, str) and 0 < len(value) <= MAX_META_ID)


class MeteredPeer(EventEmitter):
    """Joins one channel and keeps a :class:`RemotePeer` (one WebRTC connection) per member.

    Events: Joined, Left, StateChange, PeerJoined, PeerLeft, Data, FatalError.
    """

    def __init__(
        self,
        options: SignallingClientOptions | None = None,
        *,
        api_key: str | None = None,
        token_provider: TokenProviderFn | None = None,
        url: str | None = None,
        token_provider_timeout: float = 10.0,
        logger: Logger | None = None,
        reconnect: bool | ReconnectOptions = True,
        inactivity_timeout: float = 60.0,
        auto_resubscribe: bool = True,
        ice_transport_policy: IceTransportPolicy = "all",
        _client: SignallingClient | None = None,
        _pc_factory: Any = None,
        _reconcile_deadline: float = RECONCILE_DEADLINE,
        _ladder_delays: tuple[float, ...] | None = None,
        _probe_timeout: float | None = None,
        _hangup_grace: float | None = None,
    ) -> None:
        self._ice_policy = check_policy(ice_transport_policy)
        own_logger = logger if logger is not None else NoopLogger()
        if options is not None and options.logger is not None and logger is None:
            own_logger = options.logger
        self._init_emitter(own_logger)
        self._log: Logger = self._emitter_logger
        if _client is None:
            _client = SignallingClient(
                options,
                api_key=api_key,
                token_provider=token_provider,
                url=url,
                token_provider_timeout=token_provider_timeout,
                logger=logger,
                reconnect=reconnect,
                inactivity_timeout=inactivity_timeout,
                auto_resubscribe=auto_resubscribe,
            )
        self._client = _client
        self._pc_factory = _pc_factory
        self._reconcile_deadline = float(_reconcile_deadline)
        # Test seams: the ICE recovery ladder's timings.
        ladder = RecoveryState()
        if _ladder_delays is not None:
            ladder = replace(ladder, delays=tuple(float(d) for d in _ladder_delays))
        if _probe_timeout is not None:
            ladder = replace(ladder, probe_timeout=float(_probe_timeout))
        self._ladder = ladder
        self._hangup_grace = HANGUP_GRACE if _hangup_grace is None else float(_hangup_grace)
        self._state: MeteredPeerState = "idle"
        self._channel: str | None = None
        self._sub_opts = SubscribeOptions()
        self._peer_id: str | None = _client.peer_id
        self._ice_servers: tuple[IceServerConfig, ...] | None = None
        self._remotes: dict[str, RemotePeer] = {}
        self._local: dict[int, _LocalTrack] = {}
        self._fanouts: dict[int, tuple[Any, Any]] = {}
        self._shared_video: dict[int, tuple[Any, Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconcile_pending = False
        self._reconcile_timer: asyncio.TimerHandle | None = None
        self._reconcile_resubs = 0
        self._wire_client()

    # --- properties ---------------------------------------------------------

    @property
    def state(self) -> MeteredPeerState:
        return self._state

    @property
    def peer_id(self) -> str | None:
        return self._peer_id

    @property
    def channel(self) -> str | None:
        return self._channel

    @property
    def remote_peers(self) -> list[RemotePeer]:
        return list(self._remotes.values())

    def __repr__(self) -> str:
        return f"<MeteredPeer state={self._state} peer_id={self._peer_id} channel={self._channel}>"

    def __reduce__(self) -> Any:
        raise TypeError("MeteredPeer cannot be pickled")

    def _current_state(self) -> MeteredPeerState:
        return self._state  # re-read after an await (defeats mypy's narrowing)

    def _set_state(self, to: MeteredPeerState) -> None:
        if to == self._state:
            return
        before, self._state = self._state, to
        self.emit(StateChange(before, to))

    # --- helpers --------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _new_pc(self) -> Any:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

        from . import rtp_guard

        rtp_guard.install()

        servers = [
            RTCIceServer(
                urls=s.urls if isinstance(s.urls, str) else list(s.urls),
                username=s.username,
                credential=s.credential,
            )
            for s in (self._ice_servers or ())
        ]
        # Always a list: aiortc substitutes a public STUN server for None.
        config = RTCConfiguration(
            iceServers=servers,
            alwaysNegotiateDataChannels=True,
            **configuration_fields(self._ice_policy),
        )
        if self._pc_factory is not None:
            pc = self._pc_factory(config)
        else:
            pc = RTCPeerConnection(configuration=config)
        # Read back by RemotePeer.create_data_channel; a test factory's object may have slots.
        with best_effort(self._log, "keeping the configuration", None, (AttributeError,)):
            pc._metered_config = config
        return pc

    def _copy_of(self, track: Any) -> Any:
        """A per-peer copy of ``track`` that keeps its id.

        Video copies share one encoder per track (``shared_video``); audio copies get the
        track's frames, and each sender encodes them (Opus costs little).
        """
        if getattr(track, "kind", None) != "video":
            return self._fanout(track).copy()
        known = self._shared_video.get(id(track))
        if known is None or known[0] is not track:
            from .shared_video import SharedVideo

            fanout = self._fanout(track)
            known = (track, SharedVideo(fanout.copy, track.id, self._log))
            self._shared_video[id(track)] = known
        return known[1].copy()

    def _fanout(self, track: Any) -> Any:
        """The one reader of ``track`` that all its copies share."""
        known = self._fanouts.get(id(track))
        if known is None or known[0] is not track:
            from .fanout import Fanout

            known = self._fanouts[id(track)] = (track, Fanout(track, self._log))
        return known[1]

    def _forget_track(self, track: Any) -> None:
        """Drop the shared reader and encoder of a track no longer published (copies still
        running keep theirs until they stop)."""
        self._fanouts.pop(id(track), None)
        self._shared_video.pop(id(track), None)

    def _cap(self) -> int:
        return int(self._client.max_message_size)

    def _check_size(self, data: Any) -> None:
        try:
            size = payload_size(data)
        except (TypeError, ValueError):
            return  # fails in the frame builder instead
        cap = self._cap()
        if size > cap:
            raise MeteredPeerOversizedError(size, cap)

    def _meta_message(self, local: _LocalTrack, clear: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"trackId": local.track.id}
        if not clear:
            body["metadata"] = local.metadata
            body["kind"] = local.track.kind
            if local.stream is not None:
                body["streamId"] = local.stream.id
        return {TRACK_META_KEY: body}

    def _announce_tracks(self, remote: Member) -> None:
        for local in self._local.values():
            if local.metadata is not None:
                remote._enqueue_direct(self._meta_message(local))

    # --- client wiring ------------------------------------------------------------

    def _wire_client(self) -> None:
        c = self._client
        c.on(Connected, self._on_connected)
        c.on(Disconnected, self._on_disconnected)
        c.on(Presence, self._on_presence)
        c.on(Message, self._on_message)
        c.on(Direct, self._on_direct)
        c.on(ServerError, self._on_server_error)
        c.on(TokenProviderError, self._on_token_error)

    def _on_connected(self, ev: Connected) -> None:
        self._peer_id = ev.peer_id
        if ev.ice_servers is not None:
            self._ice_servers = ev.ice_servers
        if ev.is_reconnect and self._state == "reconnecting":
            if not self._remotes:
                self._reconcile_pending = False
                self._set_state("joined")
            else:
                self._reconcile_pending = True
                self._reconcile_resubs = 0
                self._arm_reconcile()

    def _arm_reconcile(self) -> None:
        if self._reconcile_timer is not None:
            self._reconcile_timer.cancel()
        loop = asyncio.get_running_loop()
        self._reconcile_timer = loop.call_later(self._reconcile_deadline, self._reconcile_expired)

    def _cancel_reconcile(self) -> None:
        if self._reconcile_timer is not None:
            self._reconcile_timer.cancel()
            self._reconcile_timer = None

    def _reconcile_expired(self) -> None:
        self._reconcile_timer = None
        if not self._reconcile_pending or self._state != "reconnecting":
            return
        if self._reconcile_resubs < RECONCILE_RESUBSCRIBES and self._channel is not None:
            self._reconcile_resubs += 1
            channel, opts = self._channel, self._sub_opts

            async def resubscribe() -> None:
                with best_effort(self._log, "forced re-subscribe", {"channel": channel}):
                    await self._client.subscribe(channel, opts)

            self._spawn(resubscribe())
            self._arm_reconcile()
            return
        self._reconcile_pending = False
        self.emit(FatalError(ReconcileTimeoutError()))

    def _on_disconnected(self, ev: Disconnected) -> None:
        if self._state in ("idle", "closed", "leaving", "joining"):
            return  # a drop while joining makes join() fail, which resets to idle
        if ev.will_reconnect:
            self._cancel_reconcile()
            self._reconcile_pending = True
            for remote in self._remotes.values():
                remote._signalling_lost()
            self._set_state("reconnecting")
            return
        if ev.code in FATAL_CLOSE_CODES:
            err = fatal_error_for_close(ev.code, ev.reason)
            if err is not None:
                self.emit(FatalError(err))
        reason = ev.reason or f"disconnected (code {ev.code})"
        self._spawn(self._teardown(reason, close_client=False))

    def _on_server_error(self, ev: ServerError) -> None:
        if ev.request_id is not None or ev.code not in _FATAL_SERVER_CODES:
            return
        text = f"server error: {ev.code}"
        if ev.message:
            text += f": {scrub(ev.message)}"
        cls = _FATAL_SERVER_CODES[ev.code]
        err = MeteredRealtimeError(text) if cls is None else cls(text)
        self.emit(FatalError(err))

    def _on_token_error(self, ev: TokenProviderError) -> None:
        detail = scrub(str(ev.err)) if str(ev.err) else type(ev.err).__name__
        text = f"token provider failed {ev.consecutive_failures} consecutive attempts: {detail}"
        self.emit(FatalError(TokenProviderFailedError(ev.consecutive_failures, text)))

    # --- presence -------------------------------------------------------------------

    def _on_presence(self, ev: Presence) -> None:
        if self._channel is None or ev.channel != self._channel:
            return
        if self._state not in ("joining", "joined", "reconnecting"):
            return
        if self._reconcile_pending and self._state == "reconnecting":
            self._reconcile(ev)
            return
        # Departures first, each announced at once: a newcomer never precedes a peer that
        # left before it (a page reloading leaves and joins again in one delta).
        for entry in ev.left:
            remote = self._remotes.get(entry.peer_id)
            if remote is None:
                self._log.debug("presence left for unknown peer", {"peer": entry.peer_id})
                continue
            self._drop_remote(remote)
            self._spawn(remote._close())
        for entry in ev.joined:
            self._add_remote(entry.peer_id, entry.metadata)

    def _add_remote(self, peer_id: str, metadata: dict[str, Any] | None) -> None:
        me = self._peer_id
        if me is None or peer_id == me or peer_id in self._remotes:
            return
        if len(self._remotes) >= MAX_REMOTE_PEERS:
            self._log.warning("remote peer cap reached; peer ignored", {"peer": peer_id})
            return
        remote = RemotePeer(self, peer_id, metadata, is_polite(me, peer_id))
        self._remotes[peer_id] = remote
        self._announce_tracks(remote)
        remote._attach_all()
        if self._local:
            remote._local_changed()
        self.emit(PeerJoined(remote))

    def _drop_remote(self, remote: RemotePeer) -> None:
        """Forget ``remote`` and announce ``PeerLeft`` now; its connection closes after."""
        del self._remotes[remote.id]
        remote._close_now()
        self.emit(PeerLeft(remote))

    async def _remove_remote(self, remote: RemotePeer) -> None:
        if self._remotes.get(remote.id) is not remote:
            return
        self._drop_remote(remote)
        await remote._close()

    def _reconcile(self, ev: Presence) -> None:
        self._reconcile_pending = False
        self._cancel_reconcile()
        me = self._peer_id or ""
        roster: dict[str, dict[str, Any] | None] = {}
        for entry in ev.joined:
            if entry.peer_id != me and entry.peer_id not in roster:
                roster[entry.peer_id] = entry.metadata
        departed = [r for pid, r in self._remotes.items() if pid not in roster]
        for remote in departed:
            self._drop_remote(remote)
        survivors = [r for r in self._remotes.values()]

        async def finish() -> None:
            for remote in departed:
                with best_effort(self._log, "closing a departed peer", {"peer": remote.id}):
                    await remote._close()
            for remote in survivors:
                try:
                    remote.metadata = roster.get(remote.id)
                    remote._swap(is_polite(me, remote.id))
                except Exception as exc:  # one failing survivor does not stop the others
                    self._log.error(
                        "reconcile swap failed", {"peer": remote.id, "error": repr(exc)}
                    )
            for pid, meta in roster.items():
                if pid not in self._remotes:
                    self._add_remote(pid, meta)
            if self._state == "reconnecting":
                self._set_state("joined")

        self._spawn(finish())

    # --- inbound data -----------------------------------------------------------------

    def _on_message(self, ev: Message) -> None:
        if self._channel is None or ev.channel != self._channel:
            return
        if ev.sender_peer_id == self._peer_id:
            return
        self.emit(Data(ev.sender_peer_id, ev.data, "broadcast", ev.sender_metadata))

    def _on_direct(self, ev: Direct) -> None:
        remote = self._remotes.get(ev.sender_peer_id)
        data = ev.data
        if _is_rtc_signal(data):
            if remote is not None:
                remote._signal(data)
            return
        if isinstance(data, dict) and TRACK_META_KEY in data:
            body = data[TRACK_META_KEY]
            if self._accept_track_meta(remote, body):
                return
        if remote is None:
            return
        self.emit(Data(ev.sender_peer_id, data, "direct", ev.sender_metadata))

    def _accept_track_meta(self, remote: RemotePeer | None, body: Any) -> bool:
        """Store a valid track-metadata control message; True when it was one."""
        if not isinstance(body, dict):
            return False
        track_id = body.get("trackId")
        if not isinstance(track_id, str) or not track_id:
            return False
        if not (_valid_meta_str(body.get("streamId")) and _valid_meta_str(body.get("kind"))):
            return False
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            return False
        if remote is None:
            return True
        if metadata is not None:
            try:
                if payload_size(metadata) > self._cap():
                    return True  # oversized bag: dropped
            except (TypeError, ValueError):
                return True
        remote._track_meta.store(track_id, metadata, body.get("kind"), body.get("streamId"))
        return True

    # --- join / close -----------------------------------------------------------------

    async def join(self, channel: str, *, include_sender_metadata: bool = False) -> None:
        if self._state != "idle":
            raise MeteredPeerStateError("invalid_state", "join", self._state)
        if isinstance(channel, str) and is_reserved_channel(channel):
            raise MeteredPeerSendError("reserved_channel", f"channel {channel!r} is reserved")
        self._set_state("joining")
        opts = SubscribeOptions(include_sender_metadata=include_sender_metadata)
        self._sub_opts = opts
        try:
            if self._client.state in ("idle", "closed"):
                await self._client.connect()
            self._peer_id = self._client.peer_id
            self._channel = channel
            await self._client.subscribe(channel, opts)
        except BaseException:
            if self._current_state() == "joining":
                self._channel = None
                self._set_state("idle")
                # The join failed: the client may not be connected any more.
                with best_effort(
                    self._log, "unsubscribe after a failed join", None, (SignallingError,)
                ):
                    await self._client.unsubscribe(channel)
                with best_effort(self._log, "closing the client after a failed join"):
                    await self._client.close()
                for remote in list(self._remotes.values()):
                    await self._remove_remote(remote)
            raise
        if self._current_state() != "joining":
            return  # close() raced the join
        self._set_state("joined")
        self.emit(Joined(self._peer_id or "", channel))

    async def close(self, reason: str | None = None) -> None:
        if self._state in ("closed", "leaving"):
            return
        if self._state == "idle":
            self._set_state("closed")
            with best_effort(self._log, "closing the client"):
                await self._client.close()
            await self._drain_handlers()
            self._teardown_emitter()
            return
        await self._teardown(reason, close_client=True)

    async def _teardown(self, reason: str | None, *, close_client: bool) -> None:
        if self._state in ("closed", "leaving"):
            return
        self._set_state("leaving")
        self._cancel_reconcile()
        self._reconcile_pending = False
        for remote in list(self._remotes.values()):
            await self._remove_remote(remote)
        self._forget_tracks()
        with best_effort(self._log, "closing the client"):
            await self._client.close()
        channel, self._channel = self._channel, None
        self._set_state("closed")
        self.emit(Left(self._peer_id, channel, reason))
        await self._drain_handlers()
        self._teardown_emitter()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current and not task.done():
                task.cancel()

    def _forget_tracks(self) -> None:
        self._local.clear()

    async def __aenter__(self) -> MeteredPeer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def joined(
        self, channel: str, *, include_sender_metadata: bool = False
    ) -> AsyncIterator[MeteredPeer]:
        """``async with peer.joined("room"):`` joins on enter and closes on exit."""
        await self.join(channel, include_sender_metadata=include_sender_metadata)
        try:
            yield self
        finally:
            await self.close()

    # --- sending -------------------------------------------------------------------------

    async def send(self, data: Any) -> None:
        """Broadcast ``data`` to the channel (not echoed to our own Data handlers)."""
        if self._state != "joined" or self._channel is None:
            raise MeteredPeerSendError("not_joined", "send() requires a joined peer")
        self._check_size(data)
        await self._client.publish(self._channel, data)

    async def send_to(self, peer_id: str, data: Any) -> None:
        """Send ``data`` to one peer through the server (no WebRTC involved)."""
        if self._state != "joined":
            raise MeteredPeerSendError("not_joined", "send_to() requires a joined peer")
        if not isinstance(peer_id, str) or not peer_id:
            raise MeteredPeerSendError("invalid_args", "peer_id must be a non-empty string")
        if peer_id == self._peer_id:
            raise MeteredPeerSendError("self_send", "cannot send to yourself")
        if isinstance(data, dict) and TRACK_META_KEY in data:
            self._log.warning("payload uses the reserved key " + TRACK_META_KEY)
        self._check_size(data)
        await self._client.send(peer_id, data)

    # --- media -------------------------------------------------------------------------

    def _media_gate(self, method: str) -> None:
        if self._state in ("leaving", "closed"):
            raise MeteredPeerStateError("invalid_state", method, self._state)

    def add_track(
        self,
        track: Any,
        stream: MediaStream | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Publish ``track`` to every current and future remote peer."""
        self._media_gate("add_track")
        existing = self._local.get(id(track))
        if existing is not None:
            if existing.stream is stream:
                return
            raise MeteredPeerStateError("track_already_attached", "add_track", None)
        local = _LocalTrack(track, stream, copy.deepcopy(metadata) if metadata else metadata)
        if metadata is not None:
            size = payload_size(self._meta_message(local))
            if size > self._cap():
                raise MeteredPeerOversizedError(size, self._cap())
        self._local[id(track)] = local
        if self._state != "joined":
            return
        for remote in self._remotes.values():
            if local.metadata is not None:
                remote._enqueue_direct(self._meta_message(local))
            if remote._attach(track, stream):
                remote._local_changed()

    def add_stream(self, stream: MediaStream, metadata: dict[str, Any] | None = None) -> None:
        self._media_gate("add_stream")
        for track in stream.get_tracks():
            self.add_track(track, stream, copy.deepcopy(metadata))

    def remove_track(self, track: Any) -> None:
        self._media_gate("remove_track")
        local = self._local.pop(id(track), None)
        self._forget_track(track)
        if local is None or self._state != "joined":
            return
        for remote in self._remotes.values():
            if local.metadata is not None:
                remote._enqueue_direct(self._meta_message(local, clear=True))
            if remote._detach(track):
                remote._local_changed()

    def remove_stream(self, stream: MediaStream) -> None:
        self._media_gate("remove_stream")
        for track in stream.get_tracks():
            self.remove_track(track)

    def get_track_metadata(self, track: Any) -> dict[str, Any] | None:
        local = self._local.get(id(track))
        return None if local is None else local.metadata

    def get_stream_metadata(self, stream: MediaStream) -> dict[str, Any] | None:
        for track in stream.get_tracks():
            local = self._local.get(id(track))
            if local is not None:
                return local.metadata
        return None

    async def replace_track(self, old: Any, new: Any | None) -> None:
        """Swap ``old`` for ``new`` (or silence) on every peer, without renegotiation."""
        if self._state in ("reconnecting", "leaving", "closed"):
            raise MeteredPeerStateError("invalid_state", "replace_track", self._state)
        if old is None:
            raise TypeError("old track must not be None")
        local = self._local.get(id(old))
        succeeded: list[str] = []
        failed: list[ReplaceTrackFailure] = []
        for remote in list(self._remotes.values()):
            if not remote._carries(old):
                continue
            try:
                remote._replace(old, new)
            except Exception as exc:
                failed.append(ReplaceTrackFailure(remote.id, scrub_exception(exc)))
                continue
            succeeded.append(remote.id)
        if local is not None and (succeeded or not failed):
            del self._local[id(old)]
            if new is not old:
                self._forget_track(old)
            if new is not None:
                self._local[id(new)] = _LocalTrack(new, local.stream, local.metadata)
            if local.metadata is not None:
                for pid in succeeded:
                    remote = self._remotes[pid]
                    remote._enqueue_direct(self._meta_message(local, clear=True))
                    if new is not None:
                        remote._enqueue_direct(self._meta_message(self._local[id(new)]))
        if failed:
            raise MeteredPeerReplaceTrackError(tuple(succeeded), tuple(failed))
