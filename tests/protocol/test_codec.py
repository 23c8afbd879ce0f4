"""The protocol core: decoding never raises, encoding round-trips, identifiers follow the rules."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from metered_realtime.protocol import (
    AckFrame,
    DirectFrame,
    ErrorFrame,
    GoingAwayFrame,
    Malformed,
    MessageFrame,
    PingFrame,
    PongFrame,
    PresenceFrame,
    PresencePeer,
    PublishFrame,
    SendFrame,
    SubscribeFrame,
    UnsubscribeFrame,
    WelcomeFrame,
    decode_client_frame,
    decode_server_frame,
    encode_client_frame,
    encode_server_frame,
    is_reserved_channel,
    is_valid_channel,
    is_valid_peer_id,
    payload_size,
)
from metered_realtime.protocol.ids import has_control_chars

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
safe_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
channels = safe_text.filter(lambda s: is_valid_channel(s))
peer_ids = safe_text.filter(lambda s: is_valid_peer_id(s))
request_ids = st.none() | st.text(min_size=1, max_size=128)


CLIENT_RESULTS = (Malformed, SubscribeFrame, UnsubscribeFrame, PublishFrame, SendFrame, PingFrame)
SERVER_RESULTS = (
    Malformed,
    WelcomeFrame,
    AckFrame,
    ErrorFrame,
    MessageFrame,
    DirectFrame,
    PresenceFrame,
    GoingAwayFrame,
    PongFrame,
)


@given(st.text() | st.binary())
def test_client_decoder_never_raises_on_text(raw):
    result = decode_client_frame(raw)
    assert isinstance(result, CLIENT_RESULTS)
    if isinstance(raw, bytes):
        assert isinstance(result, Malformed)


@given(json_values)
def test_client_decoder_never_raises_on_json(value):
    result = decode_client_frame(json.dumps(value))
    assert isinstance(result, CLIENT_RESULTS)
    if not isinstance(value, dict):
        assert result == Malformed("frame is not a JSON object")


@given(
    st.dictionaries(
        st.sampled_from(["type", "channel", "to", "data", "requestId", "includeSenderMetadata"]),
        json_values,
    ),
    st.sampled_from(["subscribe", "unsubscribe", "publish", "send", "ping", "x"]),
)
def test_client_decoder_hostile_shapes(obj, kind):
    obj["type"] = kind
    result = decode_client_frame(json.dumps(obj))
    if isinstance(result, Malformed):
        assert result.code in {
            "malformed_message",
            "unknown_type",
            "invalid_channel",
            "invalid_peer_id",
            "missing_data",
        }
        if result.request_id is not None:
            assert result.request_id == obj.get("requestId")


@given(st.text() | st.binary())
def test_server_decoder_never_raises(raw):
    result = decode_server_frame(raw)
    assert isinstance(result, SERVER_RESULTS)
    if isinstance(raw, bytes):
        assert isinstance(result, Malformed)


def test_deep_nesting_is_malformed_not_a_crash():
    assert isinstance(decode_client_frame("[" * 50000), Malformed)
    assert isinstance(decode_server_frame('{"a":' * 50000), Malformed)


def test_non_finite_numbers_are_malformed():
    for constant in ("NaN", "Infinity", "-Infinity"):
        raw = '{"type":"publish","channel":"c","data":' + constant + "}"
        assert isinstance(decode_client_frame(raw), Malformed)


client_frames = st.one_of(
    st.builds(SubscribeFrame, channels, request_ids, st.booleans()),
    st.builds(UnsubscribeFrame, channels, request_ids),
    st.builds(PublishFrame, channels, json_values, request_ids),
    st.builds(SendFrame, peer_ids, json_values, request_ids),
    st.builds(PingFrame, request_ids),
)


@given(client_frames)
def test_client_frames_round_trip(frame):
    text = encode_client_frame(frame)
    assert decode_client_frame(text) == frame


def test_client_frame_exact_sdk_bytes():
    assert (
        encode_client_frame(SubscribeFrame("room-42", "u", True))
        == '{"type":"subscribe","channel":"room-42","requestId":"u","includeSenderMetadata":true}'
    )
    assert encode_client_frame(SubscribeFrame("r", "u")) == (
        '{"type":"subscribe","channel":"r","requestId":"u"}'
    )
    assert encode_client_frame(PublishFrame("room-42", {"hello": True}, "u")) == (
        '{"type":"publish","channel":"room-42","data":{"hello":true},"requestId":"u"}'
    )
    assert encode_client_frame(SendFrame("p", None, "u")) == (
        '{"type":"send","to":"p","data":null,"requestId":"u"}'
    )
    assert encode_client_frame(PingFrame()) == '{"type":"ping"}'


metadata = st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=3)
presence_peers = st.builds(PresencePeer, st.text(max_size=10), metadata)
numbers = st.integers(-(2**53), 2**53)
server_frames = st.one_of(
    st.builds(
        WelcomeFrame,
        st.text(min_size=1, max_size=20),
        st.none() | numbers,
        numbers,
        st.integers(1, 2**31),
        metadata,
    ),
    st.builds(AckFrame, st.text(max_size=10)),
    st.builds(
        ErrorFrame,
        st.text(min_size=1, max_size=10),
        st.none() | st.text(max_size=5),
        st.none() | st.text(max_size=5),
    ),
    st.builds(MessageFrame, st.text(max_size=10), st.text(max_size=10), json_values, metadata),
    st.builds(DirectFrame, st.text(max_size=10), json_values, metadata),
    st.builds(
        PresenceFrame,
        st.text(max_size=10),
        st.tuples(presence_peers),
        st.lists(presence_peers, max_size=3).map(tuple),
    ),
    st.builds(GoingAwayFrame, st.integers(1, 300_000)),
    st.builds(PongFrame, st.none() | st.text(max_size=5)),
)


@given(server_frames)
def test_server_frames_round_trip(frame):
    assert decode_server_frame(encode_server_frame(frame)) == frame


def test_server_decoder_sdk_rules():
    # expiresAt tolerated when absent; booleans are not numbers.
    ok = decode_server_frame('{"type":"welcome","peerId":"p","serverTime":1,"maxMessageSize":9}')
    assert isinstance(ok, WelcomeFrame) and ok.expires_at is None
    bad = '{"type":"welcome","peerId":"p","expiresAt":null,"serverTime":true,"maxMessageSize":9}'
    assert isinstance(decode_server_frame(bad), Malformed)
    zero = '{"type":"welcome","peerId":"p","expiresAt":null,"serverTime":1,"maxMessageSize":0}'
    assert isinstance(decode_server_frame(zero), Malformed)
    # Presence needs both arrays; one bad entry spoils the frame.
    assert isinstance(
        decode_server_frame('{"type":"presence","channel":"c","joined":[]}'), Malformed
    )
    bad_entry = '{"type":"presence","channel":"c","joined":[{"peerId":1}],"left":[]}'
    assert isinstance(decode_server_frame(bad_entry), Malformed)
    # going_away defaults and clamps.
    assert decode_server_frame('{"type":"going_away"}') == GoingAwayFrame(1000)
    assert decode_server_frame('{"type":"going_away","retryAfterMs":-5}') == GoingAwayFrame(1000)
    assert decode_server_frame('{"type":"going_away","retryAfterMs":9e9}') == GoingAwayFrame(300000)
    # Non-object fromMetadata is ignored, data must exist.
    msg = decode_server_frame(
        '{"type":"message","channel":"c","from":"p","data":0,"fromMetadata":3}'
    )
    assert msg == MessageFrame("c", "p", 0, None)
    assert isinstance(decode_server_frame('{"type":"direct","from":"p"}'), Malformed)


@given(st.text(max_size=300))
def test_channel_rule(value):
    control = any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)
    assert is_valid_channel(value) == (0 < len(value) <= 256 and not control)


def test_identifier_edges():
    assert is_valid_channel("c" * 256) and not is_valid_channel("c" * 257)
    assert is_valid_peer_id("p" * 128) and not is_valid_peer_id("p" * 129)
    assert not is_valid_channel(5) and not is_valid_peer_id(None)
    assert is_reserved_channel("_METERED/x") and is_reserved_channel("_internal/")
    assert not is_reserved_channel("_metered") and not is_reserved_channel("x_system/")


def test_payload_size_is_utf8_of_compact_json():
    assert payload_size({"a": 1}) == len('{"a":1}')
    assert payload_size("é") == 4  # two quotes + two UTF-8 bytes
    assert payload_size(None) == 4


@given(
    st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    st.text(max_size=20),
    st.booleans(),
)
def test_top_level_string_finds_only_the_outer_key(obj, rid, spaced):
    from metered_realtime.protocol.codec import top_level_string

    obj.pop("requestId", None)
    obj["nested"] = {"requestId": "inner"}
    obj["requestId"] = rid
    text = json.dumps(obj, indent=1 if spaced else None, ensure_ascii=not spaced)
    assert top_level_string(text, "requestId") == rid


def test_too_deep_frame_is_answered_with_its_request_id():
    deep = "[" * 5000 + "]" * 5000
    raw = '{"type":"publish","channel":"c","data":' + deep + ',"requestId":"r-1"}'
    assert decode_client_frame(raw) == Malformed("nesting too deep", request_id="r-1")


@given(meta=json_values, peer=st.text(min_size=1, max_size=8))
def test_presence_entry_keeps_its_peer_whatever_its_metadata(meta: object, peer: str) -> None:
    entry = {"peerId": peer, "metadata": meta}
    text = json.dumps({"type": "presence", "channel": "c", "joined": [entry], "left": [entry]})
    frame = decode_server_frame(text)
    expected = PresencePeer(peer, meta if isinstance(meta, dict) else None)
    assert isinstance(frame, PresenceFrame)
    assert frame.joined == (expected,) and frame.left == (expected,)


@given(st.text(st.characters(max_codepoint=0x2FF), max_size=20) | st.text(max_size=20))
def test_control_characters_are_found_whatever_the_shortcut(value):
    # has_control_chars skips its regex for letters and digits; the answer may not change.
    expected = any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)
    assert has_control_chars(value) is expected
