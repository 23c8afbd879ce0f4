"""``RemotePeer``: one aiortc connection per remote peer, driven by ``negotiation``.

All aiortc calls for one RemotePeer run on a single worker task, one event at a time, so
negotiation is single-flight. Outbound direct messages (track metadata and RTC signals) go
through one FIFO sender so metadata always precedes the offer that carries the track.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any

from .._emitter import EventEmitter
from .._scrub import scrub_exception
from .._swallow import best_effort
from ..errors import IceRestartExhaustedError, MeteredRealtimeError
from ..events import (
    ConnectionReset,
    DataChannelOpened,
    IceCandidateError,
    NegotiationError,
    StateChange,
    StreamAdded,
    StreamRemoved,
    Track,
)
from ..media.stream import MediaStream
from . import aiortc_private, turn_errors
from . import negotiation as neg
from . import sdp as sdp_util
from .seam import Owner
from .trackmeta import TrackMetaCache

MAX_INBOX = 4096
MAX_OUTBOX = 4096
PC_CLOSE_CAP = 2.0
#: After a rebuild-as-rollback the old connection lives this long, so the answer we just
#: sent reaches the remote before the old DTLS session's close does.
ROLLBACK_GRACE = 1.0
NO_STREAM = "-"
STOP_REPLACED_AFTER = 1.0


def _bind(copy: Any, transceiver: Any) -> None:
    """Tell a video copy its transceiver (its negotiated codec picks encoded or raw frames)."""
    bind = getattr(copy, "bind", None)
    if bind is not None and transceiver is not None:
        bind(transceiver)


class _Attached:
    """One local track as attached to the current connection.

    ``sender`` and ``transceiver`` stay None until our next offer gives the track its
    m-section (``RemotePeer._bind_pending``).
    """

    __slots__ = ("proxy", "rehomed", "sender", "stream_id", "transceiver")

    def __init__(self, proxy: Any, sender: Any, transceiver: Any, stream_id: str) -> None:
        self.proxy = proxy
        self.sender = sender
        self.transceiver = transceiver
        self.stream_id = stream_id
        self.rehomed = False
        """Moved once off an m-section the remote filled with its own track."""


class RemotePeer(EventEmitter):
    """A member of the joined channel, with its own WebRTC connection.

    Created only by :class:`MeteredPeer`. Events: StateChange, Track, StreamAdded,
    StreamRemoved, DataChannelOpened, NegotiationError, IceCandidateError, ConnectionReset,
    TurnError.
    """

    def __init__(
        self,
        owner: Owner,
        peer_id: str,
        metadata: dict[str, Any] | None,
        polite: bool,
    ) -> None:
        self._init_emitter(owner._log)
        self._owner = owner
        self.id = peer_id
        self.metadata = metadata
        self._neg = neg.initial_state(polite, owner._hangup_grace, owner._ladder)
        self._loop = asyncio.get_running_loop()
        self._inbox: deque[neg.Event] = deque()
        self._wakeup = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._removed = False
        self._closing = False
        self._track_meta = TrackMetaCache()
        self._attached: dict[int, _Attached] = {}  # id(original track) -> attachment
        self._bound: list[_Attached] = []  # given an m-section by the offer in flight
        self._channels: list[Any] = []
        self._inbound_streams: dict[str, MediaStream] = {}
        self._stream_tracks: dict[str, set[Any]] = {}
        self._stream_mids: dict[str, set[str]] = {}
        self._ever_connected = False
        self._negotiated_extmap: dict[str, int] = {}
        self._applying_remote_sdp: str | None = None
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(MAX_OUTBOX)
        self.pc: Any = self._make_pc()
        self._pc_generation = 0
        self._wire_pc(self.pc, 0)
        self._worker = asyncio.ensure_future(self._run())
        self._sender = asyncio.ensure_future(self._send_loop())

    # --- public -------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._neg.peer_state

    @property
    def polite(self) -> bool:
        return self._neg.polite

    def __repr__(self) -> str:
        return f"<RemotePeer id={self.id} state={self.state}>"

    async def send(self, data: Any) -> None:
        """Same as ``peer.send_to(remote.id, data)``."""
        if self._removed:
            raise MeteredRealtimeError(f"RemotePeer {self.id} is closed")
        await self._owner.send_to(self.id, data)

    def create_data_channel(self, label: str, **kwargs: Any) -> Any:
        """Create a raw aiortc data channel on the current connection; wrap it in DataChannel."""
        if self._removed:
            raise MeteredRealtimeError(f"RemotePeer {self.id} is closed")
        config = getattr(self.pc, "_metered_config", None)
        if getattr(self.pc, "sctp", None) is None and config is not None:
            # aiortc: with alwaysNegotiateDataChannels, an SCTP transport created by
            # createDataChannel before the first offer never gets its m-section. Let the
            # offer add it the ordinary way instead.
            config.alwaysNegotiateDataChannels = False
        channel = self.pc.createDataChannel(label, **kwargs)
        self._channels.append(channel)
        sctp = getattr(self.pc, "sctp", None)
        if sctp is None or getattr(sctp, "mid", None) is None:
            self._feed(neg.NegotiationNeeded())
        return channel

    # --- outbound messages ----------------------------------------------------

    def _enqueue_direct(self, data: dict[str, Any]) -> None:
        if self._removed:
            return
        try:
            self._outbox.put_nowait(data)
        except asyncio.QueueFull:
            self._owner._log.warning("outbound queue full; message dropped", {"peer": self.id})

    async def _send_loop(self) -> None:
        while True:
            data = await self._outbox.get()
            if data is None:
                return
            try:
                await self._owner._client.send(self.id, data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._owner._log.debug(
                    "direct send failed", {"peer": self.id, "error": type(exc).__name__}
                )

    # --- connection building ----------------------------------------------------

    def _make_pc(self) -> Any:
        return self._owner._new_pc()

    def _wire_pc(self, pc: Any, generation: int) -> None:
        log = self._owner._log

        def on_state() -> None:
            state = str(pc.connectionState)
            if state == "connected":
                aiortc_private.kick_transports(pc, log)
            hangup = state == "closed" and aiortc_private.closed_by_remote(pc, log)
            self._feed(neg.ConnectionStateChanged(generation, state, remote_hangup=hangup))

        def on_track(track: Any) -> None:
            if generation == self._pc_generation and pc is self.pc:
                self._on_track(pc, track)

        def on_datachannel(channel: Any) -> None:
            if pc is self.pc:
                self.emit(DataChannelOpened(channel))

        pc.on("connectionstatechange", on_state)
        pc.on("track", on_track)
        pc.on("datachannel", on_datachannel)
        turn_errors.watch(pc, self)

    def _attach_all(self) -> None:
        """Attach every local track the owner publishes to the current connection."""
        for local in list(self._owner._local.values()):
            self._attach(local.track, local.stream)

    def _attach(self, track: Any, stream: MediaStream | None) -> bool:
        """Record ``track`` for this connection; it joins the SDP in our next offer.

        The copy is not handed to aiortc yet: a transceiver created now would be matched to
        an m-section of the next remote offer and our media would ride on our answer, in an
        m-section the remote created. A browser's receiver track there keeps the id the
        browser generated, not our track id, so the remote could not match our metadata.
        """
        if id(track) in self._attached or self._removed:
            return False
        proxy = self._owner._copy_of(track)
        stream_id = stream.id if stream is not None else NO_STREAM
        self._attached[id(track)] = _Attached(proxy, None, None, stream_id)
        return True

    def _bind_pending(self, pc: Any) -> list[_Attached]:
        """Give every pending local track its own new m-section (called just before an offer).

        ``addTransceiver`` (not ``addTrack``, which would reuse a transceiver the remote's
        offer created) so the m-section is ours and carries our msid with our track id.
        ``sendrecv``, so a browser may answer with its own media on it (see NOTES in
        tests/browser): with ``sendonly`` Chromium leaves the transceivers its ``addTrack``
        made before our offer unassociated and the JS SDK never offers them.

        Returns the attachments bound now, for ``_rehome_associated``.
        """
        bound = [att for att in self._attached.values() if att.transceiver is None]
        for att in bound:
            transceiver = pc.addTransceiver(att.proxy, direction="sendrecv")
            _bind(att.proxy, transceiver)
            setattr(transceiver.sender, aiortc_private.STREAM_ID, att.stream_id)
            att.sender = transceiver.sender
            att.transceiver = transceiver
        return bound

    def _rehome_associated(self, bound: list[_Attached], answer: str) -> bool:
        """Move our tracks off m-sections a browser filled with tracks it had already.

        A browser that attached its camera before our offer arrived associates those
        transceivers with the first ``sendrecv`` m-sections of their kind in our offer (JSEP
        5.10) and answers sending on them. The receiver tracks of those transceivers keep ids
        the browser generated, which no metadata message names, so our metadata would never
        reach the page. Each such track of ours gets a new m-section in a follow-up offer
        (the browser's media keeps arriving on the old one), once. Returns True when a
        follow-up offer is needed.
        """
        sections = {s.mid: s for s in sdp_util.parse_sections(answer) if s.mid is not None}
        moved = False
        for att in bound:
            transceiver = att.transceiver
            if att.rehomed or transceiver is None or transceiver.mid is None:
                continue
            section = sections.get(transceiver.mid)
            if section is None or not section.msid:
                continue
            if section.direction not in ("sendrecv", "sendonly"):
                continue
            att.sender.replaceTrack(None)
            transceiver.direction = "recvonly"
            att.sender = att.transceiver = None
            att.rehomed = True
            moved = True
        return moved

    def _detach(self, track: Any) -> bool:
        att = self._attached.pop(id(track), None)
        if att is None:
            return False
        if att.transceiver is None:  # never offered: nothing to renegotiate
            self._stop_later(att.proxy)
            return False
        with best_effort(self._owner._log, "detaching a track", {"peer": self.id}):
            att.sender.replaceTrack(None)
        if att.transceiver is not None:
            direction = att.transceiver.direction
            att.transceiver.direction = (
                "recvonly" if direction in ("sendrecv", "recvonly") else "inactive"
            )
        self._stop_later(att.proxy)
        return True

    def _carries(self, track: Any) -> bool:
        return id(track) in self._attached

    def _stop_copies(self) -> None:
        """Stop every relay copy attached to the current connection and forget them."""
        for att in self._attached.values():
            with best_effort(self._owner._log, "stopping a copy", {"peer": self.id}):
                att.proxy.stop()
        self._attached = {}

    def _stop_later(self, proxy: Any) -> None:
        """Stop a replaced relay copy once the sender has moved off it.

        aiortc's sender may be suspended in the old copy's ``recv()``; an unbuffered relay
        copy that is stopped at once never wakes it, which would freeze the sender.
        """

        def stop() -> None:
            with best_effort(self._owner._log, "stopping a replaced copy", {"peer": self.id}):
                proxy.stop()

        self._loop.call_later(STOP_REPLACED_AFTER, stop)

    def _replace(self, old: Any, new: Any | None) -> bool:
        """Swap the copy of ``old`` for a copy of ``new`` without renegotiation."""
        att = self._attached.get(id(old))
        if att is None:
            return False
        proxy = self._owner._copy_of(new) if new is not None else None
        if att.sender is not None:  # else not offered yet: the offer takes the new copy
            _bind(proxy, att.transceiver)
            att.sender.replaceTrack(proxy)
        self._stop_later(att.proxy)
        del self._attached[id(old)]
        if new is not None:
            att.proxy = proxy
            self._attached[id(new)] = att
        return True

    def _unsatisfied(self) -> bool:
        for att in self._attached.values():
            t = att.transceiver
            if t is None or t.mid is None:
                return True
            if getattr(t, "currentDirection", None) not in ("sendrecv", "sendonly"):
                return True
        if self._channels:
            sctp = getattr(self.pc, "sctp", None)
            if sctp is None or getattr(sctp, "mid", None) is None:
                return True
        return False

    # --- event loop -------------------------------------------------------------

    def _feed(self, event: neg.Event) -> None:
        if self._removed and not isinstance(event, neg.Close):
            return
        if (
            isinstance(event, neg.NegotiationNeeded)
            and self._inbox
            and isinstance(self._inbox[-1], neg.NegotiationNeeded)
        ):
            # A burst (add_stream: one per track) coalesces into one offer; the offer takes
            # every track attached by then, so a second one would renegotiate nothing and
            # race the remote's follow-up offer.
            return
        if len(self._inbox) >= MAX_INBOX:
            self._owner._log.warning("negotiation inbox full; event dropped", {"peer": self.id})
            return
        self._inbox.append(event)
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            while not self._inbox:
                self._wakeup.clear()
                await self._wakeup.wait()
            item = self._inbox.popleft()
            try:
                await self._handle(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one bad event stop the worker
                self._owner._log.error(
                    "negotiation step failed", {"peer": self.id, "error": repr(exc)}
                )
            if self._neg.closed:
                return

    async def _handle(self, event: neg.Event) -> None:
        now = self._loop.time()
        self._neg, actions = neg.decide(self._neg, event, now)
        for action in actions:
            await self._do(action)

    async def _do(self, a: neg.Action) -> None:
        if isinstance(a, neg.ScheduleAt):
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(a.when, self._feed, neg.Tick())
        elif isinstance(a, neg.SetPeerState):
            if self._removed:
                return  # decided before the close: _close_now announced the last state
            if a.to == "connected":
                self._ever_connected = True
            self.emit(StateChange(a.from_, a.to))
        elif isinstance(a, neg.SendSignal):
            self._enqueue_direct(a.payload)
        elif isinstance(a, neg.MakeOffer):
            await self._make_offer(a.generation)
        elif isinstance(a, neg.ApplyRemoteOffer):
            await self._apply_offer(a.generation, a.sdp)
        elif isinstance(a, neg.ApplyRemoteAnswer):
            await self._apply_answer(a.generation, a.sdp)
        elif isinstance(a, neg.AddCandidate):
            await self._add_candidate(a)
        elif isinstance(a, neg.Rebuild):
            await self._rebuild(a)
        elif isinstance(a, neg.ReportError):
            self.emit(NegotiationError(scrub_exception(a.error)))
        elif isinstance(a, neg.ReportExhausted):
            self.emit(NegotiationError(IceRestartExhaustedError(a.attempts)))
        # Ignore: nothing to do.

    # --- aiortc operations --------------------------------------------------------

    def _description(self, kind: str, sdp: str) -> Any:
        from aiortc import RTCSessionDescription

        return RTCSessionDescription(sdp=sdp, type=kind)

    async def _make_offer(self, generation: int) -> None:
        pc = self.pc
        try:
            self._bound = self._bind_pending(pc)
            offer = await pc.createOffer()
            text = sdp_util.pin_extmap_ids(offer.sdp, self._negotiated_extmap)
            await pc.setLocalDescription(self._description("offer", text))
            local = pc.localDescription.sdp
        except Exception as exc:
            await self._handle(neg.DescriptionFailed(generation, "local-offer", exc))
            return
        await self._handle(neg.LocalDescriptionReady(generation, "offer", local))

    async def _apply_offer(self, generation: int, text: str) -> None:
        pc = self.pc
        try:
            if not sdp_util.looks_like_sdp(text):
                raise MeteredRealtimeError("remote offer is not an SDP description")
            self._applying_remote_sdp = text
            await pc.setRemoteDescription(self._description("offer", text))
            aiortc_private.rebundle(pc, text)
            self._after_remote_description(pc, text)
            answer = await pc.createAnswer()
            aiortc_private.settle_unmatched_transceivers(pc, self._owner._log)
            await pc.setLocalDescription(answer)
            local = pc.localDescription.sdp
        except Exception as exc:
            await self._handle(neg.DescriptionFailed(generation, "remote-offer", exc))
            return
        finally:
            self._applying_remote_sdp = None
        self._negotiated_extmap = sdp_util.extmap_ids(text)
        self._kick_later(pc)
        await self._handle(
            neg.LocalDescriptionReady(generation, "answer", local, unsatisfied=self._unsatisfied())
        )

    async def _apply_answer(self, generation: int, text: str) -> None:
        pc = self.pc
        try:
            if not sdp_util.looks_like_sdp(text):
                raise MeteredRealtimeError("remote answer is not an SDP description")
            self._applying_remote_sdp = text
            await pc.setRemoteDescription(self._description("answer", text))
            aiortc_private.rebundle(pc, text)
            self._after_remote_description(pc, text)
        except Exception as exc:
            await self._handle(neg.DescriptionFailed(generation, "remote-answer", exc))
            return
        finally:
            self._applying_remote_sdp = None
        self._negotiated_extmap = sdp_util.extmap_ids(text)
        self._kick_later(pc)
        bound, self._bound = self._bound, []
        if self._rehome_associated(bound, text):
            self._feed(neg.NegotiationNeeded())
        await self._handle(neg.RemoteAnswerApplied(generation))

    def _kick_later(self, pc: Any) -> None:
        """After a description on a connected transport, make sure RTP really started."""

        def kick() -> None:
            if pc is self.pc and str(pc.connectionState) == "connected":
                aiortc_private.kick_transports(pc, self._owner._log)

        self._loop.call_later(0.5, kick)

    async def _add_candidate(self, a: neg.AddCandidate) -> None:
        init = a.init
        text = str(init.get("candidate", ""))
        try:
            from aiortc.sdp import candidate_from_sdp

            body = text[len("candidate:") :] if text.startswith("candidate:") else text
            candidate = candidate_from_sdp(body)
            mid = init.get("sdpMid")
            index = init.get("sdpMLineIndex")
            candidate.sdpMid = mid if isinstance(mid, str) else None
            candidate.sdpMLineIndex = index if isinstance(index, int) else None
            if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
                candidate.sdpMLineIndex = 0
        except Exception:
            return  # malformed: dropped silently
        try:
            await self.pc.addIceCandidate(candidate)
        except Exception as exc:
            if a.report_errors:
                self.emit(IceCandidateError(scrub_exception(exc)))

    async def _rebuild(self, a: neg.Rebuild) -> None:
        old = self.pc
        had_channels = bool(self._channels)
        self._channels = []
        self._stop_copies()
        self._bound = []
        self._inbound_streams = {}
        self._stream_tracks = {}
        self._stream_mids = {}
        self._pc_generation = a.generation
        self.pc = self._make_pc()
        self._wire_pc(self.pc, a.generation)
        if a.reason == "reconcile":
            self._owner._announce_tracks(self)
        self._attach_all()
        grace = ROLLBACK_GRACE if a.reason in ("collision", "ufrag") else 0.0
        self._owner._spawn(self._close_pc(old, grace))
        if self._ever_connected or had_channels or a.reason == "reconcile":
            self.emit(ConnectionReset(self))
        if a.reason == "reconcile" and (self._attached or self._owner._local):
            self._feed(neg.NegotiationNeeded())

    async def _close_pc(self, pc: Any, grace: float) -> None:
        if grace > 0:
            await asyncio.sleep(grace)
        # Closing is capped: a connection stuck in its DTLS shutdown is abandoned.
        with best_effort(
            self._owner._log, "closing a connection", {"peer": self.id}, (asyncio.TimeoutError,)
        ):
            await asyncio.wait_for(pc.close(), PC_CLOSE_CAP)

    # --- inbound media ------------------------------------------------------------

    def _remote_sdp(self, pc: Any) -> str | None:
        if self._applying_remote_sdp is not None:
            return self._applying_remote_sdp
        desc = getattr(pc, "remoteDescription", None)
        return getattr(desc, "sdp", None)

    def _on_track(self, pc: Any, track: Any) -> None:
        mid = None
        for t in pc.getTransceivers():
            if t.receiver is not None and getattr(t.receiver, "track", None) is track:
                mid = t.mid
                break
        by_mid = sdp_util.msid_by_mid(self._remote_sdp(pc))
        msid = by_mid.get(mid or "")
        stream_id = msid[0] if msid and msid[0] != NO_STREAM else None
        msid_track = msid[1] if msid else None
        claimed = frozenset(t for _, t in by_mid.values() if t)
        metadata = self._track_meta.lookup(
            msid_track, getattr(track, "id", None), track.kind, stream_id, claimed
        )
        streams: tuple[MediaStream, ...] = ()
        added: MediaStream | None = None
        if stream_id is not None:
            stream = self._inbound_streams.get(stream_id)
            if stream is None:
                stream = MediaStream(id=stream_id)
                self._inbound_streams[stream_id] = stream
                self._stream_tracks[stream_id] = set()
                self._stream_mids[stream_id] = set()
                added = stream
            stream.add_track(track)
            self._stream_tracks[stream_id].add(track)
            if mid is not None:
                self._stream_mids[stream_id].add(mid)
            streams = (stream,)
            generation = self._pc_generation

            def on_ended() -> None:
                if generation != self._pc_generation:
                    return
                self._track_ended(stream_id, track)

            # A track from a test's connection factory may not be an event emitter.
            with best_effort(
                self._owner._log, "watching a track's end", {"peer": self.id}, (AttributeError,)
            ):
                track.on("ended", on_ended)
        self.emit(Track(track, streams, metadata))
        if added is not None:
            self.emit(StreamAdded(added, metadata))

    def _track_ended(self, stream_id: str, track: Any) -> None:
        tracks = self._stream_tracks.get(stream_id)
        if tracks is None:
            return
        tracks.discard(track)
        if not tracks:
            self._drop_inbound_stream(stream_id)

    def _drop_inbound_stream(self, stream_id: str) -> None:
        stream = self._inbound_streams.pop(stream_id, None)
        self._stream_tracks.pop(stream_id, None)
        self._stream_mids.pop(stream_id, None)
        if stream is not None:
            self.emit(StreamRemoved(stream))

    def _after_remote_description(self, pc: Any, text: str) -> None:
        """Fire StreamRemoved for streams whose m-sections stopped sending (§14.9)."""
        sending: dict[str, bool] = {}
        for section in sdp_util.parse_sections(text):
            if section.mid is None:
                continue
            sends = section.port != 0 and section.direction in (None, "sendrecv", "sendonly")
            sending[section.mid] = sends and bool(section.msid)
        for stream_id, mids in list(self._stream_mids.items()):
            if mids and all(not sending.get(m, False) for m in mids):
                self._drop_inbound_stream(stream_id)

    # --- lifecycle used by MeteredPeer -----------------------------------------------

    def _signal(self, data: Mapping[str, Any]) -> None:
        if data.get("type") == "rtc-ice":
            cand = data.get("candidate")
            self._feed(neg.RemoteCandidate(cand if isinstance(cand, Mapping) else None))
            return
        desc = data.get("description")
        if not isinstance(desc, Mapping):
            return
        text = desc.get("sdp")
        if not isinstance(text, str):
            return
        if desc.get("type") == "offer":
            self._feed(neg.RemoteOffer(text))
        elif desc.get("type") == "answer":
            self._feed(neg.RemoteAnswer(text))

    def _local_changed(self) -> None:
        self._feed(neg.NegotiationNeeded())

    def _signalling_lost(self) -> None:
        self._feed(neg.SignallingLost())

    def _swap(self, polite: bool) -> None:
        self._feed(neg.Reconcile(polite))

    def _close_now(self) -> None:
        """Removed from the room: state closed at once; ``_close`` releases the rest.

        Synchronous, so ``PeerLeft`` can follow in the order presence said it: a newcomer
        announced after this peer left is never reported before its departure.
        """
        if self._removed:
            return
        self._feed(neg.Close())  # ends the worker once its step in flight is done
        self._removed = True
        if self._timer is not None:
            self._timer.cancel()
        self._neg, actions = neg.decide(self._neg, neg.Close(), self._loop.time())
        for action in actions:
            if isinstance(action, neg.SetPeerState):
                self.emit(StateChange(action.from_, action.to))

    async def _close(self) -> None:
        """Removed from the room: state closed, connection closed, worker stopped."""
        if self._closing:
            return
        self._closing = True
        self._close_now()
        # The worker ends within moments; a stuck one is cancelled below.
        with best_effort(
            self._owner._log,
            "waiting for the negotiation worker",
            {"peer": self.id},
            (asyncio.TimeoutError, asyncio.CancelledError),
        ):
            await asyncio.wait_for(asyncio.shield(self._worker), 2.0)
        if not self._worker.done():
            self._worker.cancel()
        self._sender.cancel()
        self._stop_copies()
        await self._close_pc(self.pc, 0.0)
        self._teardown_emitter()
