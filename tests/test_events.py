"""Event dataclasses: frozen, slotted, fields in the declared order."""

from __future__ import annotations

import dataclasses

import pytest

import metered_realtime as mr
from metered_realtime import events

CATALOGUE = {
    "StateChange": ["from_", "to"],
    "Connected": [
        "peer_id",
        "server_time",
        "expires_at",
        "is_reconnect",
        "max_message_size",
        "ice_servers",
    ],
    "Disconnected": ["code", "reason", "will_reconnect"],
    "Message": ["channel", "sender_peer_id", "data", "sender_metadata"],
    "Direct": ["sender_peer_id", "data", "sender_metadata"],
    "Presence": ["channel", "joined", "left"],
    "ServerError": ["code", "message", "request_id"],
    "GoingAway": ["retry_after_ms"],
    "TokenProviderError": ["consecutive_failures", "err"],
    "Joined": ["peer_id", "channel"],
    "Left": ["peer_id", "channel", "reason"],
    "PeerJoined": ["peer"],
    "PeerLeft": ["peer"],
    "Data": ["sender_peer_id", "data", "kind", "sender_metadata"],
    "FatalError": ["err"],
    "Track": ["track", "streams", "metadata"],
    "StreamAdded": ["stream", "metadata"],
    "StreamRemoved": ["stream"],
    "DataChannelOpened": ["channel"],
    "NegotiationError": ["err"],
    "IceCandidateError": ["err"],
    "DCOpen": [],
    "DCClose": [],
    "DCError": ["err"],
    "DCMessage": ["data"],
    "ConnectionReset": ["peer"],
}


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_fields_frozen_slotted(name: str) -> None:
    cls = getattr(events, name)
    assert getattr(mr, name) is cls
    assert issubclass(cls, events.Event)
    assert [f.name for f in dataclasses.fields(cls)] == CATALOGUE[name]
    assert "__slots__" in cls.__dict__
    params = cls.__dataclass_params__
    assert params.frozen


def test_defaults_and_immutability() -> None:
    c = events.Connected("p", 1, None, False, 65536)
    assert c.ice_servers is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.peer_id = "q"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        c.extra = 1  # type: ignore[attr-defined]
    assert events.Message("c", "s", None).sender_metadata is None
    assert events.ServerError("x") == events.ServerError("x", None, None)
    assert events.Left(None, None).reason is None
    assert events.Track("t").streams == ()
    assert events.StateChange(from_="a", to="b").from_ == "a"
    assert events.DCOpen() == events.DCOpen()


def test_there_are_26_published_event_names() -> None:
    published = [n for n in CATALOGUE if n != "ConnectionReset"] + ["Event"]
    assert len(published) == 26
    assert all(n in mr.__all__ for n in published)


def test_ice_server_config_hides_credential() -> None:
    ice = mr.IceServerConfig(("turn:t:3478",), "user", "topsecret")
    assert "topsecret" not in repr(ice)
    assert ice.credential == "topsecret"
