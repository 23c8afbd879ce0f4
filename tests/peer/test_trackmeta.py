"""The per-peer track metadata cache and the order in which a received track finds its metadata."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from metered_realtime.peer.trackmeta import TrackMetaCache

CAM = {"role": "camera"}
SCREEN = {"role": "screen"}


def test_msid_track_id_then_own_id_then_stream_and_kind() -> None:
    cache = TrackMetaCache()
    cache.store("t1", CAM, "video", "s1")
    cache.store("t2", SCREEN, "video", "s2")
    assert cache.lookup("t1", "t2", "video", None) == CAM
    assert cache.lookup("gone", "t2", "video", None) == SCREEN
    assert cache.lookup(None, "x", "video", "s2", frozenset({"t1", "t2"})) == SCREEN
    assert cache.lookup(None, "x", "audio", "s2", frozenset({"t1", "t2"})) is None


def test_stream_and_kind_candidates_must_agree() -> None:
    cache = TrackMetaCache()
    cache.store("a", CAM, "audio", "s")
    cache.store("b", CAM, "audio", "s")
    assert cache.lookup(None, None, "audio", "s", frozenset({"a", "b"})) == CAM
    cache.store("c", SCREEN, "audio", "s")
    assert cache.lookup(None, None, "audio", "s", frozenset({"a", "b", "c"})) is None


def test_orphans_are_unclaimed_messages_without_stream_of_no_other_kind() -> None:
    cache = TrackMetaCache()
    cache.store("js-cam", CAM, None, None)  # a JS message: no kind, no stream id
    cache.store("claimed", SCREEN, None, None)
    cache.store("py-video", SCREEN, "video", None)  # another kind: not a candidate for audio
    cache.store("py-stream", SCREEN, "audio", "s")  # has a stream id: matched by stream only
    assert cache.lookup("sender-id", "x", "audio", "b", frozenset({"claimed"})) == CAM
    # For a video track the unclaimed video message is a candidate too, and disagrees.
    assert cache.lookup("sender-id", "x", "video", "b", frozenset({"claimed"})) is None
    # A message of the same kind without a stream id counts.
    cache.store("js-cam", None, None, None)
    cache.store("py-audio", CAM, "audio", None)
    assert cache.lookup("sender-id", "x", "audio", "b", frozenset({"claimed"})) == CAM


def test_clear_and_oldest_first_eviction_updates_do_not_evict() -> None:
    cache = TrackMetaCache(cap=3)
    for name in ("a", "b", "c"):
        cache.store(name, {"n": name}, None, None)
    cache.store("a", {"n": "a2"}, None, None)  # update in place: nothing evicted
    assert len(cache) == 3 and cache.get("a") == {"n": "a2"}
    cache.store("d", {"n": "d"}, None, None)
    assert cache.get("a") is None and cache.get("b") == {"n": "b"} and len(cache) == 3
    cache.store("b", None, None, None)
    assert cache.get("b") is None and len(cache) == 2


@given(ops=st.lists(st.tuples(st.sampled_from("abcdefgh"), st.booleans()), max_size=60))
def test_never_more_than_the_cap(ops: list[tuple[str, bool]]) -> None:
    cache = TrackMetaCache(cap=4)
    for name, clear in ops:
        cache.store(name, None if clear else {"n": name}, None, None)
        assert len(cache) <= 4
        assert cache.get(name) == (None if clear else {"n": name})
