"""First media, whichever side adds it and whichever side is polite.

The published SDK's polite side waits 2 s for an offer before making its own; ours offers at
once. No timing is asserted: the tests check *who* offered and that no deferral timer was ever
armed, and that both sides adding media at the same moment still converge on one connection.
"""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc")

import asyncio
from typing import Any

from aiortc import AudioStreamTrack
from tests.peer.helpers import latest_delivers, remote_of, wait_state
from tests.support.waiting import until

from metered_realtime.events import Direct, PeerJoined, Track
from metered_realtime.media import MediaStream
from metered_realtime.peer import MeteredPeer
from metered_realtime.peer.sdp import extract_ice_ufrag

TRIES = 12


def inbound_tracks(peer: MeteredPeer) -> list[Any]:
    """Collect every track ``peer`` receives, from the moment a remote peer appears."""
    tracks: list[Any] = []
    peer.on(PeerJoined, lambda ev: ev.peer.on(Track, lambda t: tracks.append(t.track)))
    return tracks


def offers_from(peer: MeteredPeer) -> list[str]:
    """Record the sender id of every SDP offer ``peer`` receives."""
    senders: list[str] = []

    def on_direct(ev: Direct) -> None:
        desc = ev.data.get("description") if isinstance(ev.data, dict) else None
        if isinstance(desc, dict) and desc.get("type") == "offer":
            senders.append(ev.sender_peer_id)

    peer._client.on(Direct, on_direct)
    return senders


async def first_frame(track: Any) -> None:
    await asyncio.wait_for(track.recv(), 3)


class Pair:
    """Two joined peers, what ``first`` and ``second`` received, and who offered to ``first``."""

    def __init__(self, first: MeteredPeer, second: MeteredPeer) -> None:
        self.first, self.second = first, second
        self.at_first, self.at_second = inbound_tracks(first), inbound_tracks(second)
        self.offers_to_first = offers_from(first)


async def pair_with_politeness(
    make_peer: Any, channel: str, polite: bool, first_track: Any, second_track: Any
) -> Pair:
    """Both joined (``first`` first), ``second`` polite towards ``first`` or not.

    Peer ids are random, so each try is a fair coin for the politeness wanted.
    """
    for attempt in range(TRIES):
        first: MeteredPeer = make_peer()
        second: MeteredPeer = make_peer()
        if first_track is not None:
            first.add_track(first_track)
        if second_track is not None:
            second.add_track(second_track)
        pair = Pair(first, second)
        room = f"{channel}-{attempt}"
        await first.join(room)
        await second.join(room)
        await until(lambda a=first, b=second: bool(a.remote_peers and b.remote_peers), 10)
        if remote_of(second, first).polite == polite:
            return pair
        await asyncio.gather(first.close(), second.close())
    pytest.skip(f"no {'polite' if polite else 'impolite'} pairing in {TRIES} tries")


@pytest.mark.parametrize("sender_polite", [True, False], ids=["polite-sender", "impolite-sender"])
@pytest.mark.parametrize("added", ["before-join", "after-join"])
async def test_the_side_that_adds_media_offers_it_without_a_deferral(
    make_peer: Any, sender_polite: bool, added: str
) -> None:
    track = AudioStreamTrack()
    pair = await pair_with_politeness(
        make_peer,
        f"first-{added}-{sender_polite}",
        sender_polite,
        None,
        track if added == "before-join" else None,
    )
    receiver, sender = pair.first, pair.second
    towards_receiver = remote_of(sender, receiver)
    if added == "after-join":
        sender.add_track(track)
    await latest_delivers(pair.at_first, first_frame)
    await wait_state(remote_of(receiver, sender), "connected")
    # The sender made the first offer, and never armed a timer to wait for one instead.
    assert pair.offers_to_first and pair.offers_to_first[0] == sender.peer_id
    assert towards_receiver._timer is None
    assert towards_receiver._neg.generation == 0


@pytest.mark.parametrize("joiner_polite", [True, False], ids=["polite-joiner", "impolite-joiner"])
async def test_both_sides_with_media_at_join_converge_on_one_connection(
    make_peer: Any, joiner_polite: bool
) -> None:
    pair = await pair_with_politeness(
        make_peer,
        f"first-glare-{joiner_polite}",
        joiner_polite,
        AudioStreamTrack(),
        AudioStreamTrack(),
    )
    await latest_delivers(pair.at_first, first_frame)
    await latest_delivers(pair.at_second, first_frame)
    a, b = remote_of(pair.first, pair.second), remote_of(pair.second, pair.first)
    await wait_state(a, "connected")
    await wait_state(b, "connected")
    assert a._neg.signaling == "stable" and b._neg.signaling == "stable"
    # One connection: each side's remote description is the other side's current local one.
    assert extract_ice_ufrag(a.pc.remoteDescription.sdp) == extract_ice_ufrag(
        b.pc.localDescription.sdp
    )
    assert extract_ice_ufrag(b.pc.remoteDescription.sdp) == extract_ice_ufrag(
        a.pc.localDescription.sdp
    )


async def test_two_tracks_of_one_kind_in_a_first_offer_both_deliver(make_peer: Any) -> None:
    pair = await pair_with_politeness(make_peer, "first-two-of-a-kind", False, None, None)
    stream = MediaStream([AudioStreamTrack(), AudioStreamTrack()])
    pair.second.add_stream(stream)
    await until(lambda: len(pair.at_first) >= 2, 20)
    for track in pair.at_first[:2]:
        await asyncio.wait_for(track.recv(), 10)
