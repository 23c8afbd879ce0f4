"""Races the negotiation state machine must absorb, tested without a network."""

from __future__ import annotations

from metered_realtime.peer import negotiation as n


def sdp(ufrag: str) -> str:
    return f"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\na=ice-ufrag:{ufrag}\r\nm=audio 9 UDP 0\r\n"


def kinds(actions: list[n.Action]) -> list[type]:
    return [type(a) for a in actions if not isinstance(a, (n.Ignore, n.ScheduleAt))]


def offered_and_connected(polite: bool = False) -> n.NegotiationState:
    """We offered on generation 0, the remote answered with ufrag r0, and we connected."""
    s = n.initial_state(polite=polite)
    s, _ = n.decide(s, n.NegotiationNeeded(), 0.0)
    s, _ = n.decide(s, n.LocalDescriptionReady(0, "offer", sdp("l0")), 2.0)
    s, acts = n.decide(s, n.RemoteAnswer(sdp("r0")), 2.1)
    assert n.ApplyRemoteAnswer(0, sdp("r0")) in acts
    s, _ = n.decide(s, n.RemoteAnswerApplied(0), 2.1)
    s, _ = n.decide(s, n.ConnectionStateChanged(0, "connected"), 2.5)
    assert s.peer_state == "connected" and s.signaling == "stable"
    return s


def test_answer_to_an_abandoned_offer_is_not_applied_to_the_rebuilt_connection() -> None:
    s = offered_and_connected()
    # A re-offer is in flight on generation 0 when the transport fails.
    s, _ = n.decide(s, n.NegotiationNeeded(), 10.0)
    s, _ = n.decide(s, n.LocalDescriptionReady(0, "offer", sdp("l0")), 10.0)
    assert s.signaling == "have-local-offer"
    s, _ = n.decide(s, n.ConnectionStateChanged(0, "failed"), 10.1)
    s, acts = n.decide(s, n.Tick(), 10.1)
    assert n.Rebuild(1, "recovery") in acts and n.MakeOffer(1) in acts
    s, _ = n.decide(s, n.LocalDescriptionReady(1, "offer", sdp("l1")), 10.2)
    # The remote's answer to the generation-0 re-offer arrives now: same remote ufrag as
    # before, so it belongs to the old connection and must not be applied to the new offer.
    s, acts = n.decide(s, n.RemoteAnswer(sdp("r0")), 10.3)
    assert kinds(acts) == []
    assert s.signaling == "have-local-offer" and not s.applying_answer
    # The real answer (the remote rebuilt or restarted ICE: a new ufrag) is applied.
    s, acts = n.decide(s, n.RemoteAnswer(sdp("r1")), 10.4)
    assert n.ApplyRemoteAnswer(1, sdp("r1")) in acts
    s, _ = n.decide(s, n.RemoteAnswerApplied(1), 10.4)
    s, acts = n.decide(s, n.ConnectionStateChanged(1, "connected"), 11.0)
    assert n.SetPeerState("reconnecting", "connected") in acts


def test_answer_after_reconcile_with_old_remote_ufrag_is_dropped() -> None:
    s = offered_and_connected(polite=False)
    s, _ = n.decide(s, n.NegotiationNeeded(), 10.0)
    s, _ = n.decide(s, n.LocalDescriptionReady(0, "offer", sdp("l0")), 10.0)
    s, _ = n.decide(s, n.SignallingLost(), 10.1)
    s, acts = n.decide(s, n.Reconcile(polite=False), 12.0)
    assert n.Rebuild(1, "reconcile") in acts
    s, _ = n.decide(s, n.NegotiationNeeded(), 12.0)
    s, _ = n.decide(s, n.LocalDescriptionReady(1, "offer", sdp("l1")), 12.0)
    s, acts = n.decide(s, n.RemoteAnswer(sdp("r0")), 12.1)
    assert kinds(acts) == []
    s, acts = n.decide(s, n.RemoteAnswer(sdp("r1")), 12.2)
    assert n.ApplyRemoteAnswer(1, sdp("r1")) in acts


def test_remote_ufrag_kept_by_a_collision_rebuild_is_not_stale() -> None:
    # Polite side: we rebuild to answer a colliding offer; the remote keeps its connection,
    # so its later answers carry the same ufrag as before our rebuild and are genuine.
    s = offered_and_connected(polite=True)
    s, _ = n.decide(s, n.NegotiationNeeded(), 10.0)
    s, _ = n.decide(s, n.LocalDescriptionReady(0, "offer", sdp("l0")), 10.0)
    s, acts = n.decide(s, n.RemoteOffer(sdp("r0")), 10.1)
    assert n.Rebuild(1, "collision") in acts
    s, _ = n.decide(s, n.LocalDescriptionReady(1, "answer", sdp("l1")), 10.2)
    s, _ = n.decide(s, n.NegotiationNeeded(), 20.0)
    s, _ = n.decide(s, n.LocalDescriptionReady(1, "offer", sdp("l1")), 20.0)
    s, acts = n.decide(s, n.RemoteAnswer(sdp("r0")), 20.1)
    assert n.ApplyRemoteAnswer(1, sdp("r0")) in acts


def test_offer_with_a_ufrag_other_than_the_last_answer_means_the_remote_rebuilt() -> None:
    # The only remote description so far was its answer (ufrag r0).
    s = offered_and_connected()
    s, acts = n.decide(s, n.RemoteOffer(sdp("r9")), 20.0)
    assert n.Rebuild(1, "ufrag") in acts and n.ApplyRemoteOffer(1, sdp("r9")) in acts


def test_re_offer_with_the_answer_ufrag_stays_on_the_connection() -> None:
    s = offered_and_connected()
    s, acts = n.decide(s, n.RemoteOffer(sdp("r0")), 10.0)
    assert kinds(acts) == [n.ApplyRemoteOffer]


# --------------------------------------------------------------- remote hang-up


def hung_up(at: float = 10.0) -> n.NegotiationState:
    s = offered_and_connected()
    s, acts = n.decide(s, n.ConnectionStateChanged(0, "closed", remote_hangup=True), at)
    assert kinds(acts) == []  # no rebuild, and the peer is not shown reconnecting yet
    assert s.peer_state == "connected"
    assert n.ScheduleAt(at + n.HANGUP_GRACE) in acts
    return s


def test_remote_hang_up_then_leave_closes_without_a_rebuild() -> None:
    s = hung_up()
    s, acts = n.decide(s, n.Tick(), 10.5)  # an early tick does nothing
    assert kinds(acts) == []
    s, acts = n.decide(s, n.Close(), 10.6)
    assert kinds(acts) == [n.SetPeerState] and s.peer_state == "closed"
    assert s.generation == 0


def test_remote_hang_up_then_new_offer_is_a_plain_ufrag_rebuild() -> None:
    s = hung_up()
    s, acts = n.decide(s, n.RemoteOffer(sdp("r1")), 10.2)
    assert n.Rebuild(1, "ufrag") in acts and n.ApplyRemoteOffer(1, sdp("r1")) in acts
    assert s.deadline() is None  # the hang-up is forgotten with the connection
    s, _ = n.decide(s, n.LocalDescriptionReady(1, "answer", sdp("l1")), 10.3)
    s, acts = n.decide(s, n.ConnectionStateChanged(1, "connected"), 11.0)
    assert n.SetPeerState("reconnecting", "connected") in acts


def test_remote_hang_up_with_nothing_after_it_starts_recovery_after_the_grace() -> None:
    s = hung_up()
    s, acts = n.decide(s, n.Tick(), 10.0 + n.HANGUP_GRACE)
    assert n.SetPeerState("connected", "reconnecting") in acts
    assert n.Rebuild(1, "recovery") in acts and n.MakeOffer(1) in acts


def test_hang_up_grace_is_a_seam_and_local_close_recovers_at_once() -> None:
    s = n.initial_state(polite=False, hangup_grace=0.25)
    assert s.hangup_grace == 0.25
    s = offered_and_connected()
    # A close this side did not ask for and the remote did not send: the transport died.
    s, acts = n.decide(s, n.ConnectionStateChanged(0, "closed"), 10.0)
    assert n.SetPeerState("connected", "reconnecting") in acts
    s, acts = n.decide(s, n.Tick(), 10.0)
    assert n.Rebuild(1, "recovery") in acts


def test_signalling_loss_forgets_a_hang_up() -> None:
    s = hung_up()
    s, _ = n.decide(s, n.SignallingLost(), 11.0)
    assert s.deadline() is None


# --------------------------------------------------------------- ladder timing seam


def test_ladder_timings_travel_in_the_state_and_survive_resets() -> None:
    from metered_realtime.peer.recovery import RecoveryState

    ladder = RecoveryState(delays=(0.0, 0.5), probe_timeout=1.0)
    s = n.initial_state(polite=False, ladder=ladder)
    s, _ = n.decide(s, n.RemoteOffer(sdp("r0")), 0.0)
    s, _ = n.decide(s, n.LocalDescriptionReady(0, "answer", sdp("l0")), 0.0)
    for cycle in range(2):  # the second cycle runs after a connected reset the budget
        t = 10.0 * (cycle + 1)
        s, _ = n.decide(s, n.ConnectionStateChanged(s.generation, "failed"), t)
        times, exhausted = [], []
        for _ in range(10):
            deadline = s.deadline()
            if deadline is None:
                break
            s, acts = n.decide(s, n.Tick(), deadline)
            times += [deadline for a in acts if isinstance(a, n.Rebuild)]
            exhausted += [a for a in acts if isinstance(a, n.ReportExhausted)]
            if any(isinstance(a, n.MakeOffer) for a in acts):
                s, _ = n.decide(s, n.LocalDescriptionReady(s.generation, "offer", "o"), deadline)
        assert times == [t, t + 1.0 + 0.5]
        assert exhausted == [n.ReportExhausted(2)]
        s, _ = n.decide(s, n.ConnectionStateChanged(s.generation, "connected"), t + 5)
        assert s.recovery == RecoveryState(delays=(0.0, 0.5), probe_timeout=1.0)


# --------------------------------------------------------------- trickled candidates


def _cand(ufrag: str | None, mid: str = "0") -> dict[str, object]:
    return {
        "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host",
        "sdpMid": mid,
        "sdpMLineIndex": 0,
        "usernameFragment": ufrag,
    }


def test_browser_candidates_of_the_current_ice_generation_are_added() -> None:
    s = n.initial_state(polite=False)
    s, _ = n.decide(s, n.RemoteOffer(sdp("r0")), 0.0)
    for init in (_cand("r0"), _cand(None), _cand("")):
        s, acts = n.decide(s, n.RemoteCandidate(init), 0.1)
        assert n.AddCandidate(0, init, report_errors=True) in acts


def test_late_candidate_of_an_earlier_ice_generation_is_dropped() -> None:
    s = offered_and_connected()  # the remote answered with ufrag r0
    s, acts = n.decide(s, n.RemoteCandidate(_cand("r0")), 3.0)
    assert kinds(acts) == [n.AddCandidate]
    # The remote rebuilt / restarted ICE: its new offer carries r1.
    s, _ = n.decide(s, n.RemoteOffer(sdp("r1")), 10.0)
    s, acts = n.decide(s, n.RemoteCandidate(_cand("r0")), 10.1)
    assert kinds(acts) == []
    s, acts = n.decide(s, n.RemoteCandidate(_cand("r1")), 10.2)
    assert kinds(acts) == [n.AddCandidate]
