"""Perfect negotiation adapted to aiortc, as one pure state machine.

``decide(state, event, now)`` returns the next state and the actions the adapter must carry
out, in order. Nothing here touches aiortc, a socket or a clock, so every rule is testable
without a network. The rules:

* polite = local peer id < remote peer id (plain string comparison);
* negotiation is explicit and single-flight; a burst of needs is coalesced into one offer;
* both sides offer as soon as they have something to negotiate. The published SDK's polite
  side waits up to 2 s for the other side's offer, which is a 2 s wait for media whenever the
  polite side adds it first and the impolite side has nothing to offer;
  offering at once costs a rebuild instead, and only when both sides offer at the same moment;
* an offer is colliding when we are making an offer or are not ``stable``; the impolite side
  ignores it (and suppresses candidate errors meanwhile); the polite side rebuilds its
  connection (aiortc has no rollback) and then answers;
* a non-colliding offer whose ``ice-ufrag`` differs from the last remote one on this
  connection (from its last offer or answer) means the remote rebuilt: rebuild, then answer;
* an answer carrying a remote ``ice-ufrag`` seen only on an earlier connection of ours
  answers an offer we abandoned by rebuilding (recovery or reconcile while it was in
  flight): it is dropped. The answer to the rebuilt connection's offer always carries a new
  ufrag, because that offer has a new ufrag, which makes the remote rebuild (this machine) or
  restart ICE (a browser);
* those rebuilds are rate-limited to one per 2 s; an offer inside the cooldown is held and
  handled when the cooldown ends (the latest one wins) rather than lost;
* when our answer leaves local media unsatisfied, one follow-up offer is made;
* non-trickle: every local description is followed by exactly one ``rtc-ice`` null marker;
* inbound trickled candidates: dropped before a remote description, over 1000 characters,
  or beyond 200 per negotiation generation; end-of-candidates never counts; a candidate whose
  ``usernameFragment`` names another ICE generation than the current remote description's
  ufrag is dropped too (as browsers do: a late candidate of a restarted or rebuilt session);
* ICE recovery ladder by rebuild (see ``recovery``), paused while signalling is down;
* a connection the remote closed cleanly (a hang-up, not a failure) starts no recovery at
  once: the remote meant it. Either it is leaving the room, and presence ``left`` follows
  within moments (the peer is then closed with no rebuild and no offer sent to a peer that is
  gone), or it replaced the connection, and its new offer follows (the ufrag rule rebuilds).
  Only if neither happens within ``HANGUP_GRACE`` is the hang-up treated as a failure;
* the RemotePeer state (idle/connecting/connected/reconnecting/closed) lives here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from . import recovery
from .recovery import RecoveryState
from .sdp import extract_ice_ufrag

REBUILD_COOLDOWN = 2.0
MAX_CANDIDATES_PER_GENERATION = 200
MAX_CANDIDATE_LENGTH = 1000
MAX_STALE_UFRAGS = 8
#: How long a remote hang-up waits for presence ``left`` or a new offer before recovery.
HANGUP_GRACE = 5.0

Signaling = Literal["stable", "have-local-offer", "have-remote-offer"]
PeerState = Literal["idle", "connecting", "connected", "reconnecting", "closed"]
DescriptionKind = Literal["offer", "answer"]


def is_polite(local_id: str, remote_id: str) -> bool:
    """The politeness rule: the side whose id sorts first is polite."""
    return local_id < remote_id


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class NegotiationNeeded:
    """Local media or a data channel changed; the connection needs (re)negotiation."""


@dataclass(frozen=True, slots=True)
class RemoteOffer:
    sdp: str


@dataclass(frozen=True, slots=True)
class RemoteAnswer:
    sdp: str


@dataclass(frozen=True, slots=True)
class RemoteCandidate:
    """A trickled candidate: the browser ``RTCIceCandidateInit`` object, or None (end)."""

    init: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class LocalDescriptionReady:
    """The adapter created and applied a local description on ``generation``."""

    generation: int
    kind: DescriptionKind
    sdp: str
    unsatisfied: bool = False
    """For answers: some local media found no m-section in the remote offer."""


@dataclass(frozen=True, slots=True)
class RemoteAnswerApplied:
    generation: int


@dataclass(frozen=True, slots=True)
class DescriptionFailed:
    """Creating or applying a description failed on ``generation``."""

    generation: int
    stage: Literal["local-offer", "remote-offer", "remote-answer"]
    error: Exception


@dataclass(frozen=True, slots=True)
class ConnectionStateChanged:
    generation: int
    state: str
    """aiortc ``connectionState``: new, connecting, connected, disconnected, failed, closed."""
    remote_hangup: bool = False
    """For ``closed``: the remote closed it cleanly (DTLS close_notify), not us or a failure."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed; the adapter sends this at (or after) the deadline it was given."""


@dataclass(frozen=True, slots=True)
class SignallingLost:
    """The signalling socket dropped and will reconnect."""


@dataclass(frozen=True, slots=True)
class Reconcile:
    """Signalling is back and this peer survived: swap to a fresh connection."""

    polite: bool


@dataclass(frozen=True, slots=True)
class Close:
    pass


Event = (
    NegotiationNeeded
    | RemoteOffer
    | RemoteAnswer
    | RemoteCandidate
    | LocalDescriptionReady
    | RemoteAnswerApplied
    | DescriptionFailed
    | ConnectionStateChanged
    | Tick
    | SignallingLost
    | Reconcile
    | Close
)

# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class MakeOffer:
    """createOffer + setLocalDescription on ``generation``; report LocalDescriptionReady."""

    generation: int


@dataclass(frozen=True, slots=True)
class ApplyRemoteOffer:
    """setRemoteDescription(offer), createAnswer, setLocalDescription; report the answer."""

    generation: int
    sdp: str


@dataclass(frozen=True, slots=True)
class ApplyRemoteAnswer:
    """setRemoteDescription(answer); report RemoteAnswerApplied."""

    generation: int
    sdp: str


@dataclass(frozen=True, slots=True)
class AddCandidate:
    generation: int
    init: Mapping[str, Any]
    report_errors: bool
    """False while ignoring a colliding offer: rejected candidates stay silent."""


@dataclass(frozen=True, slots=True)
class Rebuild:
    """Close the connection and build ``generation`` with the local media re-attached."""

    generation: int
    reason: Literal["collision", "ufrag", "recovery", "reconcile"]


@dataclass(frozen=True, slots=True)
class SendSignal:
    """Send this payload to the remote peer as a direct message."""

    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReportError:
    """Emit ``NegotiationError(err)``."""

    error: Exception


@dataclass(frozen=True, slots=True)
class ReportExhausted:
    """Emit ``NegotiationError(IceRestartExhaustedError(attempts))`` (once per latch)."""

    attempts: int


@dataclass(frozen=True, slots=True)
class SetPeerState:
    """The RemotePeer state changed: emit StateChange(from_, to)."""

    from_: PeerState
    to: PeerState


@dataclass(frozen=True, slots=True)
class Ignore:
    """Nothing to do; the reason is for logs and tests."""

    reason: str


@dataclass(frozen=True, slots=True)
class ScheduleAt:
    """Send ``Tick`` at ``when`` (replaces any earlier schedule)."""

    when: float


Action = (
    MakeOffer
    | ApplyRemoteOffer
    | ApplyRemoteAnswer
    | AddCandidate
    | Rebuild
    | SendSignal
    | ReportError
    | ReportExhausted
    | SetPeerState
    | Ignore
    | ScheduleAt
)

# --------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class NegotiationState:
    polite: bool
    generation: int = 0
    signaling: Signaling = "stable"
    making_offer: bool = False
    applying_answer: bool = False
    dirty: bool = False
    started: bool = False
    """Something was offered or answered on this peer since the last fresh start."""
    remote_set: bool = False
    """The current generation has a remote description (candidates are accepted)."""
    remote_ufrag: str | None = None
    """The remote ufrag of the last remote description on this connection."""
    gen_ufrags: tuple[str, ...] = ()
    """Remote ufrags seen in descriptions on the current connection."""
    stale_ufrags: tuple[str, ...] = ()
    """Remote ufrags seen on our earlier connections (the last ``MAX_STALE_UFRAGS``)."""
    last_rebuild_at: float | None = None
    held_offer: str | None = None
    """A remote offer that arrived inside the rebuild cooldown."""
    candidates: int = 0
    followup_used: bool = False
    ignoring_offer: bool = False
    signalling_down: bool = False
    hangup_until: float | None = None
    """The remote hung up the current connection; recovery starts at this time."""
    hangup_grace: float = HANGUP_GRACE
    peer_state: PeerState = "idle"
    recovery: RecoveryState = field(default_factory=RecoveryState)

    @property
    def closed(self) -> bool:
        return self.peer_state == "closed"

    def deadline(self) -> float | None:
        """The earliest time a ``Tick`` has work to do, or None."""
        times: list[float] = []
        if self.held_offer is not None and self.last_rebuild_at is not None:
            times.append(self.last_rebuild_at + REBUILD_COOLDOWN)
        if self.recovery.deadline is not None:
            times.append(self.recovery.deadline)
        if self.hangup_until is not None:
            times.append(self.hangup_until)
        return min(times) if times else None


def initial_state(
    polite: bool,
    hangup_grace: float = HANGUP_GRACE,
    ladder: RecoveryState | None = None,
) -> NegotiationState:
    """A fresh machine; ``hangup_grace`` and the ladder's timings are seams for tests."""
    rec = recovery.reset(ladder) if ladder is not None else RecoveryState()
    return NegotiationState(polite=polite, hangup_grace=hangup_grace, recovery=rec)


# --------------------------------------------------------------------------- helpers


def _ice_null() -> SendSignal:
    return SendSignal({"type": "rtc-ice", "candidate": None})


def _description(kind: DescriptionKind, sdp: str) -> SendSignal:
    return SendSignal({"type": "rtc-description", "description": {"type": kind, "sdp": sdp}})


def _set_peer(s: NegotiationState, to: PeerState, out: list[Action]) -> NegotiationState:
    if s.peer_state == to:
        return s
    out.append(SetPeerState(s.peer_state, to))
    return replace(s, peer_state=to)


def _mark_started(s: NegotiationState, out: list[Action]) -> NegotiationState:
    s = replace(s, started=True)
    if s.peer_state == "idle":
        s = _set_peer(s, "connecting", out)
    return s


def _rebuild(
    s: NegotiationState,
    reason: Literal["collision", "ufrag", "recovery", "reconcile"],
    now: float,
    out: list[Action],
) -> NegotiationState:
    generation = s.generation + 1
    out.append(Rebuild(generation, reason))
    s = replace(
        s,
        generation=generation,
        signaling="stable",
        making_offer=False,
        applying_answer=False,
        remote_set=False,
        remote_ufrag=None,
        gen_ufrags=(),
        stale_ufrags=_remember(s.stale_ufrags, s.gen_ufrags),
        candidates=0,
        ignoring_offer=False,
        hangup_until=None,
        last_rebuild_at=now if reason in ("collision", "ufrag") else s.last_rebuild_at,
    )
    if s.peer_state == "connected":
        s = _set_peer(s, "reconnecting", out)
    return s


def _remember(known: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    merged = [u for u in known if u not in more] + list(more)
    return tuple(merged[-MAX_STALE_UFRAGS:])


def _seen(s: NegotiationState, ufrag: str | None) -> NegotiationState:
    """Record the remote ufrag of a description applied on the current connection."""
    if ufrag is None:
        return s
    return replace(s, remote_ufrag=ufrag, gen_ufrags=_remember(s.gen_ufrags, (ufrag,)))


def _try_offer(s: NegotiationState, out: list[Action]) -> NegotiationState:
    """Offer now if something is pending and the machine may offer."""
    if not s.dirty or s.making_offer or s.signaling != "stable" or s.signalling_down:
        return s
    out.append(MakeOffer(s.generation))
    s = replace(s, making_offer=True, dirty=False)
    return _mark_started(s, out)


def _cooling_down(s: NegotiationState, now: float) -> bool:
    return s.last_rebuild_at is not None and now - s.last_rebuild_at < REBUILD_COOLDOWN


def _on_remote_offer(
    s: NegotiationState, sdp: str, now: float, out: list[Action]
) -> NegotiationState:
    collision = s.making_offer or s.signaling != "stable"
    ufrag = extract_ice_ufrag(sdp)
    if collision and not s.polite:
        out.append(Ignore("impolite: colliding offer ignored"))
        return replace(s, ignoring_offer=True)
    need_rebuild = collision or (
        s.remote_set and s.remote_ufrag is not None and ufrag != s.remote_ufrag
    )
    if need_rebuild:
        if _cooling_down(s, now):
            out.append(Ignore("rebuild cooldown: offer held"))
            return replace(s, held_offer=sdp)
        s = _rebuild(s, "collision" if collision else "ufrag", now, out)
    out.append(ApplyRemoteOffer(s.generation, sdp))
    # Whatever we had pending rides on the answer; what does not fit makes the answer
    # "unsatisfied", which earns one follow-up offer.
    s = replace(
        s,
        dirty=False,
        signaling="have-remote-offer",
        remote_set=True,
        remote_ufrag=ufrag,
        candidates=0,
        followup_used=False,
        ignoring_offer=False,
        held_offer=None,
    )
    return _mark_started(_seen(s, ufrag), out)


def _on_candidate(
    s: NegotiationState, init: Mapping[str, Any] | None, out: list[Action]
) -> NegotiationState:
    text = None if init is None else init.get("candidate")
    if init is None or text is None or text == "":
        out.append(Ignore("end-of-candidates"))
        return s
    if not isinstance(text, str):
        out.append(Ignore("malformed candidate"))
        return s
    if not s.remote_set:
        out.append(Ignore("candidate before remote description"))
        return s
    if len(text) > MAX_CANDIDATE_LENGTH:
        out.append(Ignore("candidate too long"))
        return s
    if s.candidates >= MAX_CANDIDATES_PER_GENERATION:
        out.append(Ignore("candidate cap reached"))
        return s
    ufrag = init.get("usernameFragment")
    if isinstance(ufrag, str) and ufrag and s.remote_ufrag is not None and ufrag != s.remote_ufrag:
        out.append(Ignore("candidate of another ICE generation"))
        return s
    out.append(AddCandidate(s.generation, init, report_errors=not s.ignoring_offer))
    return replace(s, candidates=s.candidates + 1)


def _on_connection_state(
    s: NegotiationState, state: str, remote_hangup: bool, now: float, out: list[Action]
) -> NegotiationState:
    if state == "connected":
        s = replace(s, recovery=recovery.on_connected(s.recovery))
        return _set_peer(s, "connected", out)
    if state in ("new", "connecting"):
        if s.peer_state == "idle" and s.started:
            s = _set_peer(s, "connecting", out)
        return s
    if state == "disconnected":
        if s.peer_state == "connected":
            s = _set_peer(s, "reconnecting", out)
        return s
    if remote_hangup and not s.recovery.active and not s.signalling_down and s.started:
        if s.hangup_until is None:
            s = replace(s, hangup_until=now + s.hangup_grace)
        return s
    return _transport_died(s, now, out)


def _transport_died(s: NegotiationState, now: float, out: list[Action]) -> NegotiationState:
    # failed, or closed underneath us: we close connections only by rebuilding them,
    # so either one means the transport died.
    s = replace(s, hangup_until=None)
    if s.peer_state in ("connected", "connecting"):
        s = _set_peer(s, "reconnecting", out)
    if s.signalling_down or not s.started:
        return s
    return replace(s, recovery=recovery.on_failed(s.recovery, now))


def _on_tick(s: NegotiationState, now: float, out: list[Action]) -> NegotiationState:
    if s.hangup_until is not None and now >= s.hangup_until:
        s = _transport_died(s, now, out)
    if s.held_offer is not None and not _cooling_down(s, now):
        held = s.held_offer
        s = replace(s, held_offer=None)
        s = _on_remote_offer(s, held, now, out)
    if not s.signalling_down:
        rec, step = recovery.on_tick(s.recovery, now)
        s = replace(s, recovery=rec)
        if step == "attempt":
            s = _rebuild(s, "recovery", now, out)
            s = replace(s, dirty=True, started=True)
            s = _try_offer(s, out)
        elif step == "exhausted":
            out.append(ReportExhausted(rec.attempts))
    return s


def _step(s: NegotiationState, event: Event, now: float, out: list[Action]) -> NegotiationState:
    if isinstance(event, NegotiationNeeded):
        return _try_offer(replace(s, dirty=True), out)

    if isinstance(event, RemoteOffer):
        if s.signalling_down:
            out.append(Ignore("signalling down"))
            return s
        return _on_remote_offer(s, event.sdp, now, out)

    if isinstance(event, RemoteAnswer):
        if s.signaling != "have-local-offer" or s.applying_answer:
            out.append(Ignore("stale answer"))
            return s
        ufrag = extract_ice_ufrag(event.sdp)
        if ufrag is not None and ufrag in s.stale_ufrags and ufrag not in s.gen_ufrags:
            out.append(Ignore("answer to an offer of an earlier connection"))
            return s
        out.append(ApplyRemoteAnswer(s.generation, event.sdp))
        return _seen(replace(s, applying_answer=True), ufrag)

    if isinstance(event, RemoteCandidate):
        return _on_candidate(s, event.init, out)

    if isinstance(event, LocalDescriptionReady):
        if event.generation != s.generation:
            out.append(Ignore("stale local description"))
            return s
        if event.kind == "offer":
            if not s.making_offer:
                out.append(Ignore("unexpected local offer"))
                return s
            out.extend((_description("offer", event.sdp), _ice_null()))
            return replace(s, making_offer=False, signaling="have-local-offer")
        if s.signaling != "have-remote-offer":
            out.append(Ignore("unexpected local answer"))
            return s
        out.extend((_description("answer", event.sdp), _ice_null()))
        s = replace(s, signaling="stable")
        if event.unsatisfied and not s.followup_used:
            s = replace(s, dirty=True, followup_used=True)
        return _try_offer(s, out)

    if isinstance(event, RemoteAnswerApplied):
        if event.generation != s.generation or not s.applying_answer:
            out.append(Ignore("stale answer applied"))
            return s
        s = replace(
            s,
            signaling="stable",
            applying_answer=False,
            remote_set=True,
            candidates=0,
            ignoring_offer=False,
        )
        return _try_offer(s, out)

    if isinstance(event, DescriptionFailed):
        if event.generation != s.generation:
            out.append(Ignore("stale failure"))
            return s
        out.append(ReportError(event.error))
        if event.stage == "local-offer":
            return replace(s, making_offer=False)
        if event.stage == "remote-answer":
            # The offer is dead: back to stable, and offer again later if needed.
            return replace(s, signaling="stable", applying_answer=False)
        # A remote offer that aiortc refused leaves no usable description behind.
        return replace(s, signaling="stable", remote_set=False, remote_ufrag=None)

    if isinstance(event, ConnectionStateChanged):
        if event.generation != s.generation:
            out.append(Ignore("stale connection state"))
            return s
        return _on_connection_state(
            s, event.state, event.state == "closed" and event.remote_hangup, now, out
        )

    if isinstance(event, Tick):
        return _on_tick(s, now, out)

    if isinstance(event, SignallingLost):
        s = replace(
            s, signalling_down=True, recovery=recovery.cancel(s.recovery), hangup_until=None
        )
        if s.peer_state not in ("idle", "closed"):
            s = _set_peer(s, "reconnecting", out)
        return s

    if isinstance(event, Reconcile):
        # The adapter re-attaches local media to the new connection and reports
        # NegotiationNeeded when there is anything to negotiate.
        s = replace(
            s,
            polite=event.polite,
            signalling_down=False,
            started=False,
            held_offer=None,
            followup_used=False,
            recovery=recovery.reset(s.recovery),
            dirty=False,
        )
        return _rebuild(s, "reconcile", now, out)

    # Close
    return _set_peer(s, "closed", out)


def decide(
    state: NegotiationState, event: Event, now: float
) -> tuple[NegotiationState, list[Action]]:
    """Apply one event at time ``now``; returns the new state and the actions, in order.

    A ``ScheduleAt`` with the next deadline closes the list whenever one is pending.
    """
    if state.closed:
        return state, [Ignore("closed")]
    out: list[Action] = []
    new = _step(state, event, now, out)
    if not new.closed:
        deadline = new.deadline()
        if deadline is not None:
            out.append(ScheduleAt(deadline))
    return new, out
