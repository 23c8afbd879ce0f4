"""``ice_transport_policy="relay"``: a call goes through coturn though a direct path exists."""

from __future__ import annotations

import pytest

from metered_realtime.peer import MeteredPeer
from metered_realtime.peer.ice_policy import relay_supported


@pytest.mark.parametrize("bad", ["none", "RELAY", "", None, 1])
def test_policy_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match="ice_transport_policy must be 'all' or 'relay'"):
        MeteredPeer(api_key="pk_test", url="ws://127.0.0.1:1", ice_transport_policy=bad)  # type: ignore[arg-type]


def test_relay_refused_clearly_where_aiortc_cannot_honour_it() -> None:
    pytest.importorskip("aiortc")
    if relay_supported():  # aiortc 1.16+: accepted
        MeteredPeer(api_key="pk_test", url="ws://127.0.0.1:1", ice_transport_policy="relay")
        return
    # aiortc 1.15 (the last for Python 3.10) would gather host candidates anyway.
    with pytest.raises(ValueError, match=r"needs aiortc 1\.16 or later"):
        MeteredPeer(api_key="pk_test", url="ws://127.0.0.1:1", ice_transport_policy="relay")


@pytest.mark.relay_policy
async def test_relay_policy_uses_only_relay_candidates(turn_server, relay_peers) -> None:
    pytest.importorskip("aiortc")
    from aiortc import AudioStreamTrack
    from tests.peer.helpers import join_all, remote_of, wait_state
    from tests.support.icepairs import local_candidate_types, selected_pairs
    from tests.support.waiting import until

    async with turn_server() as srv, relay_peers(srv) as make:
        a, b = make(ice_transport_policy="relay"), make(ice_transport_policy="relay")
        await join_all([a, b], "relay-only")
        await until(lambda: bool(a.remote_peers and b.remote_peers), 10)
        ra, rb = remote_of(a, b), remote_of(b, a)
        a.add_track(AudioStreamTrack())
        await wait_state(ra, "connected", 30)
        await wait_state(rb, "connected", 30)
        for remote in (ra, rb):
            # 127.0.0.1 host candidates would connect directly: the policy kept them out.
            assert local_candidate_types(remote.pc) == {"relay"}
            pairs = selected_pairs(remote.pc)
            assert pairs, "no nominated candidate pair"
            assert {(p.local_type, p.remote_type) for p in pairs} == {("relay", "relay")}


async def test_default_policy_connects_directly_on_loopback(turn_server, relay_peers) -> None:
    """The control: with "all" and a host path, ICE prefers host candidates over the relay."""
    pytest.importorskip("aiortc")
    from aiortc import AudioStreamTrack
    from tests.peer.helpers import join_all, remote_of, wait_state
    from tests.support.icepairs import local_candidate_types, selected_pairs
    from tests.support.waiting import until

    async with turn_server() as srv, relay_peers(srv) as make:
        a, b = make(), make()
        await join_all([a, b], "direct")
        await until(lambda: bool(a.remote_peers and b.remote_peers), 10)
        ra = remote_of(a, b)
        a.add_track(AudioStreamTrack())
        await wait_state(ra, "connected", 30)
        assert local_candidate_types(ra.pc) == {"host", "relay"}
        assert {p.local_type for p in selected_pairs(ra.pc)} == {"host"}
