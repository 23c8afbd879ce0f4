"""``welcome.metadata.iceServers`` keeps the published SDK's shapes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from metered_realtime import IceServerConfig
from metered_realtime.signalling.ice_servers import parse_ice_servers

urls = st.builds(
    lambda scheme, host: f"{scheme}{host}",
    st.sampled_from(["stun:", "STUNS:", "turn:", "turns:"]),
    st.text("abc.:0123456789", min_size=1, max_size=20),
)
shapes = st.one_of(urls, st.lists(urls, min_size=1, max_size=4))


@given(entries=st.lists(shapes, max_size=16))
def test_a_string_stays_a_string_and_a_list_becomes_a_tuple(entries: list[object]) -> None:
    parsed = parse_ice_servers({"iceServers": [{"urls": u} for u in entries]})
    assert parsed is not None
    assert [s.urls for s in parsed] == [u if isinstance(u, str) else tuple(u) for u in entries]


@given(entry=shapes, bad=st.sampled_from(["http://x", "", 5, None]))
def test_one_bad_url_refuses_the_whole_list(entry: object, bad: object) -> None:
    mixed = [bad] if isinstance(entry, str) else [*entry, bad]  # type: ignore[misc]
    assert parse_ice_servers({"iceServers": [{"urls": entry}, {"urls": mixed}]}) is None


def test_credential_stays_out_of_repr() -> None:
    server = IceServerConfig("turn:t:3478", "user", "topsecret")
    assert "topsecret" not in repr(server) and "'turn:t:3478'" in repr(server)
