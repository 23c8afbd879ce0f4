"""The perfect-negotiation state machine, without a network."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metered_realtime.peer import negotiation as n
from metered_realtime.peer.recovery import ATTEMPT_DELAYS, PROBE_TIMEOUT


def sdp(ufrag: str, kind: str = "offer") -> str:
    return f"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\na=ice-ufrag:{ufrag}\r\nm=audio 9 UDP 0\r\n"


def kinds(actions: list[n.Action]) -> list[type]:
    return [type(a) for a in actions if not isinstance(a, (n.Ignore, n.ScheduleAt))]


def run(state: n.NegotiationState, event: n.Event, now: float = 0.0):
    return n.decide(state, event, now)


def test_politeness_rule() -> None:
    assert n.is_polite("a", "b")
    assert not n.is_polite("b", "a")
    assert n.is_polite("p-19bd", "p-7f3a")


def test_impolite_offers_at_once_and_sends_null_marker_after_description() -> None:
    s = n.initial_state(polite=False)
    s, acts = run(s, n.NegotiationNeeded())
    assert acts[0] == n.SetPeerState("idle", "connecting") or isinstance(acts[0], n.MakeOffer)
    assert n.MakeOffer(0) in acts
    assert s.peer_state == "connecting"
    s, acts = run(s, n.LocalDescriptionReady(0, "offer", "SDP"))
    assert acts == [
        n.SendSignal({"type": "rtc-description", "description": {"type": "offer", "sdp": "SDP"}}),
        n.SendSignal({"type": "rtc-ice", "candidate": None}),
    ]
    assert s.signaling == "have-local-offer"


def test_burst_is_coalesced_into_one_offer() -> None:
    s = n.initial_state(polite=False)
    offers = 0
    for _ in range(5):
        s, acts = run(s, n.NegotiationNeeded())
        offers += sum(isinstance(a, n.MakeOffer) for a in acts)
    assert offers == 1
    s, acts = run(s, n.LocalDescriptionReady(0, "offer", "x"))
    s, acts = run(s, n.RemoteAnswer("answer"))
    assert n.ApplyRemoteAnswer(0, "answer") in acts
    s, acts = run(s, n.RemoteAnswerApplied(0))
    # The needs that arrived while offering make exactly one more offer.
    assert n.MakeOffer(0) in acts
    s, acts = run(s, n.LocalDescriptionReady(0, "offer", "y"))
    s, acts = run(s, n.RemoteAnswer("a2"))
    s, acts = run(s, n.RemoteAnswerApplied(0))
    assert not any(isinstance(a, n.MakeOffer) for a in acts)
    assert s.signaling == "stable" and not s.dirty


@pytest.mark.parametrize("polite", [True, False])
def test_either_side_offers_its_first_need_at_once_with_no_timer(polite: bool) -> None:
    # The published SDK's polite side waits 2 s for an offer the impolite side may never
    # make (it has nothing to send): media would wait with it.
    s = n.initial_state(polite=polite)
    s, acts = run(s, n.NegotiationNeeded(), 10.0)
    assert n.MakeOffer(0) in acts
    assert not any(isinstance(a, n.ScheduleAt) for a in acts)
    assert s.deadline() is None
    s, _ = run(s, n.LocalDescriptionReady(0, "offer", "o"), 10.1)
    s, _ = run(s, n.RemoteAnswer("a"), 10.2)
    s, _ = run(s, n.RemoteAnswerApplied(0), 10.3)
    s, acts = run(s, n.NegotiationNeeded(), 20.0)
    assert n.MakeOffer(0) in acts


def test_polite_first_offers_colliding_costs_one_rebuild_then_its_media_follows() -> None:
    s = n.initial_state(polite=True)
    s, _ = run(s, n.NegotiationNeeded(), 0.0)
    s, _ = run(s, n.LocalDescriptionReady(0, "offer", sdp("p0")), 0.01)
    s, acts = run(s, n.RemoteOffer(sdp("r1")), 0.02)
    assert kinds(acts) == [n.Rebuild, n.ApplyRemoteOffer]
    assert acts[0] == n.Rebuild(1, "collision")
    # Our media found no m-section of theirs: the answer earns one follow-up offer at once.
    s, acts = run(s, n.LocalDescriptionReady(1, "answer", "ans", unsatisfied=True), 0.03)
    assert [type(a) for a in acts] == [n.SendSignal, n.SendSignal, n.MakeOffer]
    assert s.deadline() is None


def test_unsatisfied_answer_gets_exactly_one_follow_up_offer() -> None:
    s = n.initial_state(polite=True)
    s, _ = run(s, n.RemoteOffer(sdp("r1")))
    s, acts = run(s, n.LocalDescriptionReady(0, "answer", "ans", unsatisfied=True))
    assert n.MakeOffer(0) in acts
    s, _ = run(s, n.LocalDescriptionReady(0, "offer", "o"))
    s, _ = run(s, n.RemoteAnswer("a"))
    s, _ = run(s, n.RemoteAnswerApplied(0))
    # The remote offers again; our answer is unsatisfied again: one more follow-up.
    s, _ = run(s, n.RemoteOffer(sdp("r1")))
    s, acts = run(s, n.LocalDescriptionReady(0, "answer", "ans", unsatisfied=True))
    assert n.MakeOffer(0) in acts


def test_follow_up_is_not_repeated_for_the_same_offer_cycle() -> None:
    s = n.initial_state(polite=False)
    s, _ = run(s, n.RemoteOffer(sdp("r1")))
    s = s.__class__(**{**{f: getattr(s, f) for f in s.__dataclass_fields__}, "followup_used": True})
    s, acts = run(s, n.LocalDescriptionReady(0, "answer", "ans", unsatisfied=True))
    assert not any(isinstance(a, n.MakeOffer) for a in acts)


def offering(polite: bool) -> n.NegotiationState:
    s = n.initial_state(polite=polite)
    s, _ = run(s, n.NegotiationNeeded(), 0.0)
    assert s.making_offer
    return s


def test_impolite_ignores_colliding_offer_and_suppresses_candidate_errors() -> None:
    s = offering(polite=False)
    s, _ = run(s, n.LocalDescriptionReady(0, "offer", "mine"))
    s, acts = run(s, n.RemoteOffer(sdp("theirs")), 3.0)
    assert kinds(acts) == []
    assert s.ignoring_offer and s.signaling == "have-local-offer"
    # Its answer to our offer still lands; candidates of the ignored offer stay quiet.
    s, _ = run(s, n.RemoteAnswer("ans"), 3.1)
    s, _ = run(s, n.RemoteAnswerApplied(0), 3.2)
    assert not s.ignoring_offer


def test_impolite_candidates_while_ignoring_are_not_reported() -> None:
    s = offering(polite=False)
    s, _ = run(s, n.LocalDescriptionReady(0, "offer", "mine"))
    s = _with(s, remote_set=True)
    s, _ = run(s, n.RemoteOffer(sdp("theirs")))
    s, acts = run(s, n.RemoteCandidate({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}))
    add = [a for a in acts if isinstance(a, n.AddCandidate)]
    assert add and add[0].report_errors is False


def test_polite_collision_rebuilds_then_answers() -> None:
    s = offering(polite=True)
    s, acts = run(s, n.RemoteOffer(sdp("theirs")), 2.1)
    assert kinds(acts) == [n.Rebuild, n.ApplyRemoteOffer]
    assert acts[0] == n.Rebuild(1, "collision")
    assert n.ApplyRemoteOffer(1, sdp("theirs")) in acts
    # Our stale offer from generation 0 is dropped quietly.
    s, acts = run(s, n.LocalDescriptionReady(0, "offer", "old"), 2.2)
    assert kinds(acts) == []
    s, acts = run(s, n.LocalDescriptionReady(1, "answer", "ans"), 2.3)
    assert kinds(acts) == [n.SendSignal, n.SendSignal]
    assert s.signaling == "stable" and s.generation == 1


def test_changed_ufrag_rebuilds_then_answers() -> None:
    s = n.initial_state(polite=False)
    s, _ = run(s, n.RemoteOffer(sdp("u1")), 0.0)
    s, _ = run(s, n.LocalDescriptionReady(0, "answer", "a"), 0.1)
    s, acts = run(s, n.RemoteOffer(sdp("u1")), 5.0)
    assert kinds(acts) == [n.ApplyRemoteOffer]
    s, _ = run(s, n.LocalDescriptionReady(0, "answer", "a"), 5.1)
    s, acts = run(s, n.RemoteOffer(sdp("u2")), 6.0)
    assert kinds(acts) == [n.Rebuild, n.ApplyRemoteOffer]
    assert acts[0] == n.Rebuild(1, "ufrag")


def test_rebuilds_are_rate_limited_and_held_offer_is_handled_after_cooldown() -> None:
    s = n.initial_state(polite=False)
    s, _ = run(s, n.RemoteOffer(sdp("u1")), 0.0)
    s, _ = run(s, n.LocalDescriptionReady(0, "answer", "a"), 0.1)
    s, acts = run(s, n.RemoteOffer(sdp("u2")), 1.0)
    assert kinds(acts) == [n.Rebuild, n.ApplyRemoteOffer]
    s, _ = run(s, n.LocalDescriptionReady(1, "answer", "a"), 1.1)
    s, acts = run(s, n.RemoteOffer(sdp("u3")), 1.5)
    assert kinds(acts) == []
    assert n.ScheduleAt(3.0) in acts
    s, acts = run(s, n.RemoteOffer(sdp("u4")), 2.0)
    assert kinds(acts) == []
    s, acts = run(s, n.Tick(), 3.0)
    assert kinds(acts) == [n.Rebuild, n.ApplyRemoteOffer]
    assert n.ApplyRemoteOffer(2, sdp("u4")) in acts


def test_stale_answer_dropped_quietly() -> None:
    s = n.initial_state(polite=False)
    s, acts = run(s, n.RemoteAnswer("a"))
    assert kinds(acts) == [] and isinstance(acts[0], n.Ignore)


def _with(s: n.NegotiationState, **kw: Any) -> n.NegotiationState:
    from dataclasses import replace

    return replace(s, **kw)


def test_candidate_caps() -> None:
    s = n.initial_state(polite=False)
    cand = {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host", "sdpMid": "0"}
    s, acts = run(s, n.RemoteCandidate(cand))
    assert kinds(acts) == []  # before any remote description
    s, _ = run(s, n.RemoteOffer(sdp("u1")))
    added = 0
    for _ in range(250):
        s, acts = run(s, n.RemoteCandidate(cand))
        added += sum(isinstance(a, n.AddCandidate) for a in acts)
    assert added == 200
    # End-of-candidates never counts and is never forwarded.
    s, acts = run(s, n.RemoteCandidate(None))
    assert kinds(acts) == []
    s, acts = run(s, n.RemoteCandidate({"candidate": ""}))
    assert kinds(acts) == []
    # A new remote description resets the counter.
    s, _ = run(s, n.LocalDescriptionReady(0, "answer", "a"))
    s, _ = run(s, n.RemoteOffer(sdp("u1")))
    s, acts = run(s, n.RemoteCandidate(cand))
    assert kinds(acts) == [n.AddCandidate]
    s, acts = run(s, n.RemoteCandidate({"candidate": "c" * 1001}))
    assert kinds(acts) == []
    s, acts = run(s, n.RemoteCandidate({"candidate": 5}))
    assert kinds(acts) == []


def test_description_failure_reports_error() -> None:
    s = n.initial_state(polite=False)
    s, _ = run(s, n.RemoteOffer("garbage"))
    err = ValueError("bad sdp")
    s, acts = run(s, n.DescriptionFailed(0, "remote-offer", err))
    assert n.ReportError(err) in acts
    assert s.signaling == "stable"
    s, acts = run(s, n.NegotiationNeeded())
    assert n.MakeOffer(0) in acts


def connected(polite: bool = False) -> n.NegotiationState:
    s = n.initial_state(polite=polite)
    s, _ = run(s, n.RemoteOffer(sdp("u1")), 0.0)
    s, _ = run(s, n.LocalDescriptionReady(0, "answer", "a"), 0.0)
    s, _acts = run(s, n.ConnectionStateChanged(0, "connected"), 0.0)
    assert s.peer_state == "connected"
    return s


def test_recovery_ladder_timings_and_latched_exhaustion() -> None:
    s = connected()
    now = 100.0
    s, acts = run(s, n.ConnectionStateChanged(0, "failed"), now)
    assert n.SetPeerState("connected", "reconnecting") in acts
    rebuild_times: list[float] = []
    exhausted = 0
    for _ in range(200):
        deadline = s.deadline()
        if deadline is None:
            break
        now = deadline
        s, acts = run(s, n.Tick(), now)
        for a in acts:
            if isinstance(a, n.Rebuild):
                assert a.reason == "recovery"
                rebuild_times.append(now)
            if isinstance(a, n.ReportExhausted):
                exhausted += 1
                assert a.attempts == 9
        # The ladder re-offers on each rebuilt connection.
        if any(isinstance(a, n.MakeOffer) for a in acts):
            s, _ = run(s, n.LocalDescriptionReady(s.generation, "offer", "o"), now)
    assert exhausted == 1
    assert len(rebuild_times) == 9
    gaps = [b - a for a, b in itertools.pairwise(rebuild_times)]
    assert gaps == [PROBE_TIMEOUT + d for d in ATTEMPT_DELAYS[1:]]
    assert rebuild_times[0] == 100.0
    # Latched: another failure does nothing until the next connected.
    s, acts = run(s, n.ConnectionStateChanged(s.generation, "failed"), now + 1)
    assert s.deadline() is None
    s, _ = run(s, n.ConnectionStateChanged(s.generation, "connected"), now + 2)
    assert not s.recovery.exhausted
    s, _ = run(s, n.ConnectionStateChanged(s.generation, "failed"), now + 3)
    assert s.deadline() == now + 3


def test_recovery_resets_on_connected_mid_ladder() -> None:
    s = connected()
    s, _ = run(s, n.ConnectionStateChanged(0, "failed"), 0.0)
    s, acts = run(s, n.Tick(), 0.0)
    assert n.Rebuild(1, "recovery") in acts and n.MakeOffer(1) in acts
    s, acts = run(s, n.ConnectionStateChanged(1, "connected"), 3.0)
    assert n.SetPeerState("reconnecting", "connected") in acts
    assert s.recovery.attempts == 0 and s.deadline() is None


def test_stale_generation_states_ignored_and_connecting_hidden_while_reconnecting() -> None:
    s = connected()
    s, _ = run(s, n.ConnectionStateChanged(0, "failed"), 0.0)
    s, _ = run(s, n.Tick(), 0.0)
    s, acts = run(s, n.ConnectionStateChanged(0, "closed"), 0.1)
    assert kinds(acts) == []
    s, acts = run(s, n.ConnectionStateChanged(1, "connecting"), 0.2)
    assert kinds(acts) == [] and s.peer_state == "reconnecting"


def test_signalling_drop_pauses_recovery_and_idle_stays_idle() -> None:
    idle = n.initial_state(polite=True)
    idle, acts = run(idle, n.SignallingLost())
    assert idle.peer_state == "idle" and kinds(acts) == []
    s = connected()
    s, acts = run(s, n.SignallingLost(), 1.0)
    assert n.SetPeerState("connected", "reconnecting") in acts
    s, acts = run(s, n.ConnectionStateChanged(0, "failed"), 2.0)
    assert s.deadline() is None
    s, acts = run(s, n.RemoteOffer(sdp("x")), 2.5)
    assert kinds(acts) == []
    s, acts = run(s, n.Reconcile(polite=True), 3.0)
    assert n.Rebuild(1, "reconcile") in acts
    assert s.polite and not s.started and s.peer_state == "reconnecting"
    # Fresh negotiation on the new connection, offered at once.
    s, acts = run(s, n.NegotiationNeeded(), 3.0)
    assert n.MakeOffer(1) in acts
    s, _ = run(s, n.LocalDescriptionReady(1, "offer", "o"), 5.0)
    s, _ = run(s, n.RemoteAnswer("a"), 5.1)
    s, _ = run(s, n.RemoteAnswerApplied(1), 5.1)
    s, acts = run(s, n.ConnectionStateChanged(1, "connected"), 6.0)
    assert n.SetPeerState("reconnecting", "connected") in acts


def test_closed_is_terminal() -> None:
    s = connected()
    s, acts = run(s, n.Close())
    assert n.SetPeerState("connected", "closed") in acts
    s, acts = run(s, n.NegotiationNeeded())
    assert acts == [n.Ignore("closed")]


# --------------------------------------------------------------- property tests


events_st = st.one_of(
    st.just(n.NegotiationNeeded()),
    st.builds(n.RemoteOffer, st.sampled_from([sdp("u1"), sdp("u2"), "garbage"])),
    st.builds(n.RemoteAnswer, st.just("ans")),
    st.builds(
        n.RemoteCandidate,
        st.one_of(
            st.none(),
            st.fixed_dictionaries({"candidate": st.sampled_from(["", "candidate:x", "c" * 1200])}),
        ),
    ),
    st.builds(
        n.LocalDescriptionReady,
        st.integers(0, 3),
        st.sampled_from(["offer", "answer"]),
        st.just("sdp"),
        st.booleans(),
    ),
    st.builds(n.RemoteAnswerApplied, st.integers(0, 3)),
    st.builds(
        n.DescriptionFailed,
        st.integers(0, 3),
        st.sampled_from(["local-offer", "remote-offer", "remote-answer"]),
        st.just(ValueError("x")),
    ),
    st.builds(
        n.ConnectionStateChanged,
        st.integers(0, 3),
        st.sampled_from(["new", "connecting", "connected", "disconnected", "failed", "closed"]),
    ),
    st.just(n.Tick()),
    st.just(n.SignallingLost()),
    st.builds(n.Reconcile, st.booleans()),
)


@settings(max_examples=400, deadline=None)
@given(
    polite=st.booleans(),
    steps=st.lists(st.tuples(events_st, st.floats(0, 20)), max_size=60),
)
def test_invariants_hold_for_any_input_sequence(
    polite: bool, steps: list[tuple[n.Event, float]]
) -> None:
    s = n.initial_state(polite)
    now = 0.0
    candidates_by_gen: dict[int, int] = {}
    collision_rebuilds: list[float] = []
    exhausted_since_connected = 0
    for event, dt in steps:
        now += dt
        before = s
        s, acts = n.decide(s, event, now)
        assert s.generation >= before.generation
        for i, a in enumerate(acts):
            if isinstance(a, n.MakeOffer):
                assert not before.making_offer or s.generation > before.generation
                assert a.generation == s.generation
            if isinstance(a, n.AddCandidate):
                candidates_by_gen[a.generation] = candidates_by_gen.get(a.generation, 0) + 1
                assert len(a.init["candidate"]) <= n.MAX_CANDIDATE_LENGTH
            if isinstance(a, n.SendSignal) and a.payload["type"] == "rtc-description":
                assert acts[i + 1] == n.SendSignal({"type": "rtc-ice", "candidate": None})
            if isinstance(a, n.Rebuild) and a.reason in ("collision", "ufrag"):
                collision_rebuilds.append(now)
            if isinstance(a, n.ReportExhausted):
                exhausted_since_connected += 1
                assert exhausted_since_connected == 1
            if isinstance(a, n.SetPeerState):
                assert a.from_ != a.to
                if a.to == "connected":
                    exhausted_since_connected = 0
        if isinstance(event, n.ConnectionStateChanged) and event.state == "connected":
            exhausted_since_connected = 0
        sched = [a for a in acts if isinstance(a, n.ScheduleAt)]
        assert len(sched) <= 1
        if s.deadline() is not None and not s.closed:
            assert sched and sched[0].when == s.deadline()
        if s.making_offer:
            assert s.signaling == "stable"
    for gen_count in candidates_by_gen.values():
        # A generation may see several remote descriptions; each resets the counter, so
        # this is only bounded by the number of steps; the per-round cap is checked below.
        assert gen_count <= 60
    for a, b in itertools.pairwise(collision_rebuilds):
        assert b - a >= n.REBUILD_COOLDOWN


# --------------------------------------------------------------- two-sided simulation


@dataclass
class Side:
    name: str
    state: n.NegotiationState
    completions: deque[n.Event] = field(default_factory=deque)
    inbox: deque[dict[str, Any]] = field(default_factory=deque)
    remote_of: str | None = None
    """Which remote generation our current connection is paired with."""
    timer: float | None = None

    def ufrag(self) -> str:
        return f"{self.name}{self.state.generation}"


def _apply(side: Side, other: Side, actions: list[n.Action]) -> None:
    for a in actions:
        if isinstance(a, n.MakeOffer):
            side.completions.append(
                n.LocalDescriptionReady(a.generation, "offer", sdp(f"{side.name}{a.generation}"))
            )
        elif isinstance(a, n.ApplyRemoteOffer):
            from metered_realtime.peer.sdp import extract_ice_ufrag

            side.remote_of = extract_ice_ufrag(a.sdp)
            side.completions.append(
                n.LocalDescriptionReady(a.generation, "answer", sdp(f"{side.name}{a.generation}"))
            )
        elif isinstance(a, n.ApplyRemoteAnswer):
            from metered_realtime.peer.sdp import extract_ice_ufrag

            side.remote_of = extract_ice_ufrag(a.sdp)
            side.completions.append(n.RemoteAnswerApplied(a.generation))
        elif isinstance(a, n.Rebuild):
            side.remote_of = None
            side.completions.clear()
        elif isinstance(a, n.SendSignal):
            other.inbox.append(a.payload)
        elif isinstance(a, n.ScheduleAt):
            side.timer = a.when


def _feed(side: Side, other: Side, event: n.Event, now: float) -> None:
    side.state, acts = n.decide(side.state, event, now)
    if side.state.deadline() is None:
        side.timer = None
    _apply(side, other, acts)


def _signal_event(payload: dict[str, Any]) -> n.Event:
    if payload["type"] == "rtc-ice":
        return n.RemoteCandidate(payload["candidate"])
    d = payload["description"]
    return n.RemoteOffer(d["sdp"]) if d["type"] == "offer" else n.RemoteAnswer(d["sdp"])


@settings(max_examples=300, deadline=None)
@given(
    choices=st.lists(st.integers(0, 7), min_size=1, max_size=80),
    needs=st.lists(st.tuples(st.booleans(), st.integers(0, 79)), min_size=1, max_size=6),
)
def test_two_sides_converge_under_any_interleaving(
    choices: list[int], needs: list[tuple[bool, int]]
) -> None:
    a = Side("A", n.initial_state(polite=True))
    b = Side("B", n.initial_state(polite=False))
    now = 0.0
    pending_needs = sorted(needs, key=lambda x: x[1])

    def progress(choice: int) -> bool:
        nonlocal now
        sides = [(a, b), (b, a)]
        side, other = sides[choice % 2]
        kind = choice // 2
        if kind == 0 and side.completions:
            _feed(side, other, side.completions.popleft(), now)
            return True
        if kind == 1 and side.inbox:
            _feed(side, other, _signal_event(side.inbox.popleft()), now)
            return True
        if kind == 2:
            now += 0.3
            for s, o in sides:
                if s.timer is not None and now >= s.timer:
                    _feed(s, o, n.Tick(), now)
            return True
        return False

    for step, choice in enumerate(choices):
        while pending_needs and pending_needs[0][1] <= step:
            on_a, _ = pending_needs.pop(0)
            side, other = (a, b) if on_a else (b, a)
            _feed(side, other, n.NegotiationNeeded(), now)
        progress(choice)
    for on_a, _ in pending_needs:
        side, other = (a, b) if on_a else (b, a)
        _feed(side, other, n.NegotiationNeeded(), now)
    # Quiesce: drain everything, advancing time only when nothing else can happen.
    for _ in range(2000):
        moved = False
        for c in (0, 1, 2, 3):
            moved = progress(c) or moved
        if not moved:
            timers = [s.timer for s in (a, b) if s.timer is not None]
            if not timers:
                break
            now = max(now, min(timers))
            progress(4)
    for side in (a, b):
        assert not side.completions and not side.inbox
        assert side.state.signaling == "stable"
        assert not side.state.making_offer and not side.state.dirty
    # Each side's current connection is paired with the other's current connection.
    assert a.remote_of == b.ufrag()
    assert b.remote_of == a.ufrag()
