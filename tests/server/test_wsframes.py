"""The server's client-frame parser (server/wsframes.py), against websockets' own encoder.

Whatever way a client's byte stream is cut into reads, the parser reports the same
messages and control frames in the same order, and every violation of RFC 6455 ends the
stream with the close code the RFC names, before anything after it.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Frame

from metered_realtime.server.wsframes import (
    NO_STATUS,
    SPLIT_AT,
    ClientFrames,
    close_frame,
    text_frame,
)

MAX = 4096


class Seen:
    """A FrameHandler that records what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_message(self, message: str | bytes) -> None:
        self.events.append(("message", message))

    def on_ping(self, payload: bytes) -> None:
        self.events.append(("ping", payload))

    def on_pong(self, payload: bytes) -> None:
        self.events.append(("pong", payload))

    def on_close(self, code: int, reason: str) -> None:
        self.events.append(("close", (code, reason)))

    def on_fail(self, code: int, reason: str) -> None:
        self.events.append(("fail", (code, reason)))


def masked(opcode: Any, data: bytes, fin: bool = True) -> bytes:
    """A client frame as websockets' client would send it."""
    return Frame(opcode, data, fin).serialize(mask=True)


def unchecked(first: int, data: bytes) -> bytes:
    """A masked frame with any first byte (FIN, RSV and opcode), as no encoder would send."""
    return bytes((first,)) + masked(OP_BINARY, data)[1:]


def parse(stream: bytes, cuts: list[int] | None = None, max_size: int = MAX) -> list[Any]:
    frames, seen = ClientFrames(max_size), Seen()
    start = 0
    for cut in sorted(cuts or []):
        frames.feed(stream[start:cut], seen)
        start = cut
    frames.feed(stream[start:], seen)
    return seen.events


messages = st.one_of(
    st.text(max_size=300).map(lambda t: ("text", t)),
    st.binary(max_size=300).map(lambda b: ("binary", b)),
    st.binary(max_size=125).map(lambda b: ("ping", b)),
    st.binary(max_size=125).map(lambda b: ("pong", b)),
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.tuples(messages, st.integers(1, 4)), max_size=12),
    data=st.data(),
)
def test_any_cut_of_any_stream_gives_the_same_messages(items, data):
    stream = b""
    expected: list[tuple[str, Any]] = []
    for (kind, value), pieces in items:
        if kind in ("ping", "pong"):
            stream += masked(OP_PING if kind == "ping" else OP_PONG, value)
            expected.append((kind, value))
            continue
        raw = value.encode() if kind == "text" else value
        step = max(1, len(raw) // pieces + 1)
        chunks = [raw[i : i + step] for i in range(0, len(raw), step)] or [b""]
        for i, chunk in enumerate(chunks):
            opcode = (OP_TEXT if kind == "text" else OP_BINARY) if i == 0 else OP_CONT
            stream += masked(opcode, chunk, fin=i == len(chunks) - 1)
            if i == 0 and len(chunks) > 1:
                stream += masked(OP_PING, b"between")  # control frames may interleave
                expected.append(("ping", b"between"))
        expected.append(("message", value))
    stream += masked(OP_CLOSE, (1000).to_bytes(2, "big") + b"bye")
    expected.append(("close", (1000, "bye")))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    assert parse(stream + masked(OP_TEXT, b"after the close"), cuts) == expected


@pytest.mark.parametrize(
    ("stream", "code", "reason"),
    [
        (Frame(OP_TEXT, b"x").serialize(mask=False), 1002, "incorrect masking"),
        (unchecked(0x80 | 0x40 | OP_TEXT, b"x"), 1002, "reserved bits must be 0"),
        (masked(OP_TEXT, b"x", fin=False) + masked(OP_TEXT, b"y"), 1002, "expected a continuation"),
        (masked(OP_CONT, b"x"), 1002, "unexpected continuation frame"),
        (unchecked(OP_PING, b"x"), 1002, "fragmented control frame"),
        (unchecked(0x80 | OP_PING, b"x" * 126), 1002, "control frame too long"),
        (b"\x83\x80abcd", 1002, "invalid opcode: 3"),
        (b"\x8b\x80abcd", 1002, "invalid opcode: 11"),
        (masked(OP_TEXT, b"\xff"), 1007, "invalid start byte at position 0"),
        (masked(OP_BINARY, b"x" * (MAX + 1)), 1009, f"over size limit ({MAX + 1} > {MAX} bytes)"),
        (masked(OP_CLOSE, b"\x03"), 1002, "close frame too short"),
        (masked(OP_CLOSE, (1005).to_bytes(2, "big")), 1002, "invalid status code 1005"),
        (masked(OP_CLOSE, (999).to_bytes(2, "big")), 1002, "invalid status code 999"),
        (masked(OP_CLOSE, (5000).to_bytes(2, "big")), 1002, "invalid status code 5000"),
        (masked(OP_CLOSE, b"\x03\xe8\xff"), 1007, "invalid start byte at position 0"),
    ],
)
def test_each_violation_fails_with_its_code_and_nothing_after(stream, code, reason):
    events = parse(masked(OP_TEXT, b"before") + stream + masked(OP_TEXT, b"after"))
    assert events[0] == ("message", "before")
    assert events[1][0] == "fail" and events[1][1][0] == code
    assert reason in events[1][1][1]
    assert len(events) == 2


def test_a_fragmented_message_over_the_limit_fails_before_it_is_whole():
    half = MAX // 2 + 1
    stream = masked(OP_BINARY, b"x" * half, fin=False) + masked(OP_CONT, b"y" * half)
    assert parse(stream) == [("fail", (1009, f"over size limit ({2 * half} > {MAX} bytes)"))]


def test_a_frame_too_big_fails_on_its_header_without_waiting_for_its_payload():
    head = masked(OP_BINARY, b"z" * (MAX + 1))[:8]  # 2 + 2 length bytes + the mask
    assert parse(head) == [("fail", (1009, f"over size limit ({MAX + 1} > {MAX} bytes)"))]


def test_a_close_frame_without_payload_stands_for_no_status():
    assert parse(masked(OP_CLOSE, b"")) == [("close", (NO_STATUS, ""))]
    assert parse(masked(OP_CLOSE, (3000).to_bytes(2, "big"))) == [("close", (3000, ""))]


def test_a_big_frame_fed_byte_by_byte_is_kept_only_until_whole():
    payload = bytes(range(256)) * 12  # 64-bit-free, 16-bit length
    stream = masked(OP_BINARY, payload)
    assert parse(stream, list(range(len(stream)))) == [("message", payload)]


@pytest.mark.parametrize("size", [0, 125, 126, SPLIT_AT - 1, SPLIT_AT, 65535, 65536])
def test_text_frames_have_the_length_encoding_rfc_6455_asks(size):
    payload = b"a" * size
    frame = b"".join(text_frame(payload))
    assert frame[0] == 0x81
    if size < 126:
        assert frame[1] == size and frame[2:] == payload
    elif size < 65536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == size
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == size
    assert frame.endswith(payload) and len(text_frame(payload)) == (2 if size >= SPLIT_AT else 1)


def test_a_close_frame_reason_is_cut_to_fit_without_splitting_a_character():
    frame = close_frame(4001, "é" * 100)  # 200 bytes of UTF-8
    assert frame[0] == 0x88 and frame[1] == len(frame) - 2 <= 125
    assert int.from_bytes(frame[2:4], "big") == 4001
    assert frame[4:].decode() == "é" * 61
    assert close_frame(NO_STATUS) == b"\x88\x00"
