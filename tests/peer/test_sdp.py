"""Pure SDP helpers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from metered_realtime.peer import sdp

OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=ice-ufrag:abcd",
        "a=sendrecv",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=msid:stream-1 track-a",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "a=mid:1",
        "a=ice-ufrag:abcd",
        "a=recvonly",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:3/sendrecv http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "m=application 9 DTLS/SCTP 5000",
        "a=mid:2",
        "",
    ]
)


def test_extract_ufrag() -> None:
    assert sdp.extract_ice_ufrag(OFFER) == "abcd"
    assert sdp.extract_ice_ufrag("v=0\r\n") is None
    assert sdp.extract_ice_ufrag(None) is None
    assert sdp.extract_ice_ufrag("a=ice-ufrag:" + "x" * 300) is None


def test_sections_and_msid() -> None:
    sections = sdp.parse_sections(OFFER)
    assert [(s.kind, s.mid, s.direction) for s in sections] == [
        ("audio", "0", "sendrecv"),
        ("video", "1", "recvonly"),
        ("application", "2", None),
    ]
    assert sections[0].msid == (("stream-1", "track-a"),)
    assert sdp.msid_by_mid(OFFER) == {"0": ("stream-1", "track-a")}


def test_msid_caps() -> None:
    many = "v=0\r\nm=audio 9 X 0\r\n" + "".join(f"a=msid:s{i} t{i}\r\n" for i in range(400))
    assert len(sdp.parse_sections(many)[0].msid) == sdp.MAX_MSID_ENTRIES
    long_id = "v=0\r\nm=audio 9 X 0\r\na=msid:" + "s" * 257 + " t\r\na=msid:ok " + "t" * 257
    assert sdp.parse_sections(long_id)[0].msid == ()


def test_extmap_ids_and_pinning() -> None:
    assert sdp.extmap_ids(OFFER) == {
        "urn:ietf:params:rtp-hdrext:sdes:mid": 1,
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level": 2,
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time": 3,
    }
    negotiated = {
        "urn:ietf:params:rtp-hdrext:sdes:mid": 4,
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time": 2,
    }
    pinned = sdp.pin_extmap_ids(OFFER, negotiated)
    ids = sdp.extmap_ids(pinned)
    assert ids["urn:ietf:params:rtp-hdrext:sdes:mid"] == 4
    assert ids["http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"] == 2
    # audio-level had id 2, now taken by a pinned URI: it moves to a free id.
    assert ids["urn:ietf:params:rtp-hdrext:ssrc-audio-level"] not in (2, 4)
    assert "a=extmap:2/sendrecv http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time" in (
        pinned
    )
    assert pinned.count("\r\n") == OFFER.count("\r\n")
    assert sdp.pin_extmap_ids(OFFER, {}) == OFFER


@given(st.text(max_size=400))
def test_helpers_never_raise(text: str) -> None:
    ufrag = sdp.extract_ice_ufrag(text)
    assert ufrag is None or (isinstance(ufrag, str) and ufrag in text)
    assert isinstance(sdp.parse_sections(text), list)
    assert all(isinstance(v, int) for v in sdp.extmap_ids(text).values())
    assert isinstance(sdp.pin_extmap_ids(text, {"urn:x": 1}), str)
    assert isinstance(sdp.looks_like_sdp(text), bool)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "urn:ietf:params:rtp-hdrext:sdes:mid",
                "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
                "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
                "urn:other",
            ]
        ),
        st.integers(1, 14),
        max_size=4,
    ).filter(lambda d: len(set(d.values())) == len(d))
)
def test_pinning_keeps_ids_unique_per_section(negotiated: dict[str, int]) -> None:
    pinned = sdp.pin_extmap_ids(OFFER, negotiated)
    for block in pinned.split("m=")[1:]:
        ids = [
            line.split()[0].split(":")[1].split("/")[0]
            for line in block.split("\r\n")
            if line.startswith("a=extmap:")
        ]
        assert len(ids) == len(set(ids))
    for uri, ext_id in negotiated.items():
        if uri in sdp.extmap_ids(OFFER):
            assert sdp.extmap_ids(pinned)[uri] == ext_id


def test_bundle_mids_reads_the_first_group_line() -> None:
    text = "v=0\r\na=group:BUNDLE 0 1 2\r\na=group:BUNDLE 9\r\nm=audio 9 X 0\r\na=mid:0\r\n"
    assert sdp.bundle_mids(text) == ("0", "1", "2")
    assert sdp.bundle_mids("v=0\r\nm=audio 9 X 0\r\n") == ()
    assert sdp.bundle_mids(None) == ()
    assert sdp.bundle_mids("a=group:BUNDLE " + "x" * 300 + " 1") == ("1",)
