"""Fuzzing the protocol core against an independent statement of the rules.

``test_codec.py`` checks that the decoders never raise and round-trip what the encoders
write. This file adds what it leaves open: for *any* JSON object the client decoder gives
exactly the answer docs/protocol.md and docs/server-reference.md name (the frame, or a
``Malformed`` whose error code and ``requestId`` are the ones the server must answer with),
for non-finite numbers and runaway nesting anywhere in a frame the answer is still
correlated, for mutated and truncated frames nothing invents a ``requestId``, and the
server-frame decoder (what the SDK reads) follows the SDK parser rules of §2.4 on hostile
values, huge integers included.

The reference functions below restate the spec; they share no code with the codec.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from hypothesis import HealthCheck, example, given, settings
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
    parse_json,
)
from metered_realtime.protocol.codec import _fast_loads, parse_json_stdlib
from metered_realtime.protocol.limits import MAX_NESTING

# --- the rules, restated -------------------------------------------------------------

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
CLIENT_CODES = {"malformed_message", "unknown_type", "invalid_channel", "invalid_peer_id"}
CLIENT_CODES |= {"missing_data"}


def ref_channel(value: object) -> bool:
    """A string of 1..256 characters, no C0/C1 control or DEL."""
    return isinstance(value, str) and 1 <= len(value) <= 256 and not _CONTROL.search(value)


def ref_peer_id(value: object) -> bool:
    """A string of 1..128 characters, no control characters."""
    return isinstance(value, str) and 1 <= len(value) <= 128 and not _CONTROL.search(value)


def ref_request_id(value: object) -> bool:
    """A string of 1..128 characters (anything else is malformed)."""
    return isinstance(value, str) and 1 <= len(value) <= 128


def expected_client(obj: dict[str, Any]) -> Any:
    """What a server must make of one parsed client frame: the frame, or the error to send
    as ``(code, requestId or None)``."""
    has_rid = "requestId" in obj
    rid = obj.get("requestId")
    if has_rid and not ref_request_id(rid):
        return ("malformed_message", None)  # an invalid id cannot be echoed
    kind = obj.get("type")
    if not isinstance(kind, str):
        return ("malformed_message", rid)
    if kind == "ping":
        return PingFrame(rid)
    if kind in ("subscribe", "unsubscribe", "publish"):
        if not ref_channel(obj.get("channel")):
            return ("invalid_channel", rid)
        if kind == "subscribe":
            flag = obj.get("includeSenderMetadata", False)
            if flag is not True and flag is not False:
                return ("malformed_message", rid)
            return SubscribeFrame(obj["channel"], rid, flag)
        if kind == "unsubscribe":
            return UnsubscribeFrame(obj["channel"], rid)
        if "data" not in obj:
            return ("missing_data", rid)
        return PublishFrame(obj["channel"], obj["data"], rid)
    if kind == "send":
        if not ref_peer_id(obj.get("to")):
            return ("invalid_peer_id", rid)
        if "data" not in obj:
            return ("missing_data", rid)
        return SendFrame(obj["to"], obj["data"], rid)
    return ("unknown_type", rid)


def answer(result: Any) -> Any:
    """A decoder result in the shape ``expected_client`` uses."""
    if isinstance(result, Malformed):
        return (result.code, result.request_id)
    return result


def strict_loads(text: str) -> Any:
    """JSON as JSON.parse would take it, minus numbers no double holds (None for those)."""

    def bad(_: str) -> Any:
        raise ValueError("non-finite")

    def flt(text: str) -> float:
        value = float(text)
        if math.isinf(value):
            raise ValueError("non-finite")
        return value

    return json.loads(text, parse_constant=bad, parse_float=flt)


# --- strategies ----------------------------------------------------------------------

finite_numbers = (
    st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -0.0, 1e-400, 2**53 + 1, 10**300, 1.7976931348623157e308])
)
any_text = st.text(max_size=12) | st.text(
    st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=6
)
json_values = st.recursive(
    st.none() | st.booleans() | finite_numbers | any_text,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(any_text, kids, max_size=3),
    max_leaves=10,
)
# Identifier-shaped values near every edge of the rules.
id_like = st.one_of(
    st.sampled_from(["", "c", "room-42", "a" * 128, "a" * 129, "a" * 256, "a" * 257]),
    st.sampled_from(["a\x00", "a\x1f", "a\x7f", "a\x80", "a\x9f", "a\xa0", "é", "\U0001f600"]),
    st.sampled_from(["\ud800", "x\udfff", "_metered/x", "*", " "]),
    st.text(max_size=140),
    st.text(st.characters(min_codepoint=0, max_codepoint=0xA0), max_size=8),
)
field_values = st.one_of(id_like, json_values, st.sampled_from([True, False, None, 0, 1.5]))
types = st.one_of(
    st.sampled_from(["subscribe", "unsubscribe", "publish", "send", "ping"]),
    st.sampled_from(["Subscribe", "PING", "", "pong", "ack", "welcome", "subscribe "]),
    field_values,
)
frame_objects = st.fixed_dictionaries(
    {},
    optional={
        "type": types,
        "channel": field_values,
        "to": field_values,
        "data": json_values,
        "requestId": field_values,
        "includeSenderMetadata": st.one_of(st.booleans(), field_values),
        "extra": json_values,
        "__proto__": json_values,
    },
)


@st.composite
def shuffled_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A frame object with its keys in a random order (the SDKs differ in order)."""
    obj = draw(frame_objects)
    keys = draw(st.permutations(list(obj)))
    return {k: obj[k] for k in keys}


def serialise(obj: Any, style: int) -> str:
    if style == 0:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if style == 1:
        return json.dumps(obj)  # \uXXXX escapes, as PY writes
    return json.dumps(obj, indent=2, ensure_ascii=False)


# --- client frames: the exact answer -------------------------------------------------


@settings(max_examples=2000, deadline=None)
@given(shuffled_objects(), st.integers(0, 2))
@example({"type": "ping", "requestId": "r"}, 0)
@example({"type": "subscribe", "channel": "c", "includeSenderMetadata": 1}, 0)
@example({"type": "send", "to": "p", "requestId": "x" * 129}, 0)
@example({"type": None, "requestId": "r"}, 0)
@example({"requestId": "r", "type": "publish", "channel": "c\x85", "data": 1}, 1)
def test_client_decoder_gives_the_specified_answer_for_any_object(obj, style):
    assert answer(decode_client_frame(serialise(obj, style))) == expected_client(obj)


@settings(max_examples=500, deadline=None)
@given(json_values.filter(lambda v: not isinstance(v, dict)), st.integers(0, 2))
def test_any_non_object_is_an_uncorrelated_malformed_message(value, style):
    result = decode_client_frame(serialise(value, style))
    assert isinstance(result, Malformed)
    assert (result.code, result.request_id) == ("malformed_message", None)


# --- non-finite numbers anywhere: refused, still correlated --------------------------

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1E+400", "1.5e309", "123456789e999"]
SENTINEL = "\u0001sentinel\u0001"


@st.composite
def values_with_a_hole(draw: st.DrawFn) -> Any:
    """A JSON value with exactly one leaf replaced by the sentinel string."""
    value = draw(json_values)
    depth = draw(st.integers(0, 3))
    hole: Any = SENTINEL
    for _ in range(depth):
        siblings = draw(st.lists(json_values, max_size=2))
        if draw(st.booleans()):
            hole = [*siblings, hole] if draw(st.booleans()) else [hole, *siblings]
        else:
            hole = {"k": hole, **{f"s{i}": v for i, v in enumerate(siblings)}}
    return [value, hole] if draw(st.booleans()) else hole


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shuffled_objects(),
    values_with_a_hole(),
    st.sampled_from(["data", "channel", "extra", "type", "to"]),
    st.sampled_from(NON_FINITE),
    st.integers(0, 2),
)
def test_non_finite_number_anywhere_is_refused_and_correlated(obj, holed, where, token, style):
    obj[where] = holed
    text = serialise(obj, style)
    assert text.count(json.dumps(SENTINEL)) + text.count(json.dumps(SENTINEL, ensure_ascii=False))
    for quoted in {json.dumps(SENTINEL), json.dumps(SENTINEL, ensure_ascii=False)}:
        text = text.replace(quoted, token)
    result = decode_client_frame(text)
    rid = obj.get("requestId")
    assert isinstance(result, Malformed), result
    assert result.code == "malformed_message"
    assert result.request_id == (rid if ref_request_id(rid) else None)


# --- runaway nesting: refused, still correlated --------------------------------------


@st.composite
def deep_values(draw: st.DrawFn) -> str:
    """JSON text nested far deeper than any parser recursion limit, mixing [ and {."""
    # Hypothesis runs tests with a recursion limit of about 2000: go well beyond it.
    depth = draw(st.integers(4000, 20000))
    opens = draw(st.lists(st.booleans(), min_size=8, max_size=8))
    head, tail = [], []
    for i in range(depth):
        if opens[i % 8]:
            head.append("[")
            tail.append("]")
        else:
            head.append('{"requestId":"inner","k":')
            tail.append("}")
    return "".join(head) + "0" + "".join(reversed(tail))


# Strings that look like structure to a scanner that does not honour JSON strings.
tricky_strings = st.sampled_from(
    ["[[{{", "}}]]", '"requestId":"fake"', '\\"requestId\\":\\"fake\\"', "\\", "\\\\", "{\\"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shuffled_objects(),
    deep_values(),
    st.sampled_from(["data", "extra", "channel"]),
    tricky_strings,
    st.booleans(),
)
def test_runaway_nesting_anywhere_is_refused_and_correlated(obj, deep, where, tricky, spaced):
    obj[where] = SENTINEL
    obj["note"] = tricky
    text = json.dumps(obj, indent=1 if spaced else None)
    text = text.replace(json.dumps(SENTINEL), deep)
    result = decode_client_frame(text)
    rid = obj.get("requestId")
    assert result == Malformed("nesting too deep", request_id=rid if ref_request_id(rid) else None)


@st.composite
def nested_near_the_limit(draw: st.DrawFn) -> tuple[Any, int]:
    """A value nested ``depth`` levels (a mix of arrays and objects) whose strings are full of
    brackets and escaped quotes, which must not count as nesting."""
    depth = draw(st.integers(MAX_NESTING - 8, MAX_NESTING + 8))
    kinds = draw(st.lists(st.booleans(), min_size=1, max_size=16))
    noises = draw(st.lists(st.sampled_from(["", "[{", '"}]', '\\"[']), min_size=1, max_size=4))
    value: Any = draw(st.sampled_from(["[[[{{{", '"]]]}}}', "\\[", 0]))
    for i in range(depth):
        noise = noises[i % len(noises)]
        value = [noise, value] if kinds[i % len(kinds)] else {"s": noise, "k": value}
    return value, depth


@settings(max_examples=150, deadline=None)
@given(nested_near_the_limit(), st.sampled_from(["r", None]), st.booleans())
def test_nesting_limit_counts_structure_not_strings(nested, rid, spaced):
    """Frames nest at most MAX_NESTING levels (the frame object is level 1); brackets inside
    strings are text. Refused frames are still answered against their requestId."""
    data, depth = nested
    obj: dict[str, Any] = {"type": "publish", "channel": "c", "data": data}
    if rid is not None:
        obj["requestId"] = rid
    result = decode_client_frame(json.dumps(obj, indent=1 if spaced else None))
    if 1 + depth <= MAX_NESTING:
        assert result == PublishFrame("c", data, rid)
    else:
        assert result == Malformed("nesting too deep", request_id=rid)


# --- mutated and truncated frames: never an invented requestId ------------------------

safe_ids = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)
client_frames = st.one_of(
    st.builds(SubscribeFrame, safe_ids, safe_ids, st.booleans()),
    st.builds(UnsubscribeFrame, safe_ids, safe_ids),
    st.builds(PublishFrame, safe_ids, json_values, safe_ids),
    st.builds(SendFrame, safe_ids, json_values, safe_ids),
    st.builds(PingFrame, st.none() | safe_ids),
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str]:
    """A valid SDK frame and a mutation of it: truncation, deletion, insertion, a flip."""
    text = encode_client_frame(draw(client_frames))
    kind = draw(st.sampled_from(["truncate", "delete", "insert", "replace", "splice"]))
    i = draw(st.integers(0, len(text)))
    j = draw(st.integers(i, min(len(text), i + 8)))
    noise = draw(st.text(st.sampled_from('{}[]",:\\0123456789.eE+-tfn ul\x00\u00e9'), max_size=4))
    if kind == "truncate":
        out = text[:i]
    elif kind == "delete":
        out = text[:i] + text[j:]
    elif kind == "insert":
        out = text[:i] + noise + text[i:]
    elif kind == "replace":
        out = text[:i] + noise + text[j:]
    else:
        out = text[:i] + text[i:j] * 2 + text[j:]
    return text, out


@settings(max_examples=2000, deadline=None)
@given(mutated())
def test_mutated_frames_get_the_specified_answer_or_an_honest_malformed(pair):
    _original, text = pair
    result = decode_client_frame(text)
    try:
        obj = strict_loads(text)
    except (ValueError, RecursionError):
        obj = ValueError
    if isinstance(obj, dict):
        assert answer(result) == expected_client(obj)
    elif obj is ValueError:
        # Not JSON at all: malformed, and any id it is answered with was really in it.
        assert isinstance(result, Malformed) and result.code == "malformed_message"
        assert (
            result.request_id is None
            or json.dumps(result.request_id, ensure_ascii=False)[1:-1] in text
        )
    else:
        assert (answer(result)) == ("malformed_message", None)


# --- parse_json ----------------------------------------------------------------------


@settings(max_examples=1000, deadline=None)
@given(json_values, st.sampled_from(["str", "utf-8", "utf-16", "utf-16-le", "utf-32"]))
def test_parse_json_round_trips_text_and_every_json_encoding(value, encoding):
    text = json.dumps(value, ensure_ascii=False)
    raw: str | bytes = text
    if encoding != "str":
        try:
            raw = text.encode(encoding)
        except UnicodeEncodeError:  # a lone surrogate has no UTF encoding
            raw = json.dumps(value).encode(encoding)
    parsed = parse_json(raw)
    assert not isinstance(parsed, Malformed)
    assert json.dumps(parsed, sort_keys=True) == json.dumps(value, sort_keys=True)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_parse_json_never_raises(raw):
    result = parse_json(raw)
    if isinstance(result, Malformed):
        assert result.code == "malformed_message"


@settings(max_examples=2000, deadline=None)
@given(
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False))
    | json_values.map(json.dumps)  # \u escapes, lone surrogates among them
    | st.text(max_size=64)
    | st.from_regex(r"\[?-?[0-9]{15,25}(\.[0-9]+)?([eE][+-]?[0-9]{1,3})?\]?", fullmatch=True)
)
def test_the_fast_parser_answers_exactly_as_the_standard_library(text):
    # parse_json hands what orjson can read exactly to orjson; the answer may not differ.
    assert _fast_loads is not None  # the dev install has the server extra
    assert repr(parse_json(text)) == repr(parse_json_stdlib(text))


number_literals = st.builds(
    lambda sign, whole, frac, exp: sign + whole + frac + exp,
    st.sampled_from(["", "-"]),
    st.sampled_from(["0"]) | st.from_regex(r"[1-9][0-9]{0,30}", fullmatch=True),
    st.sampled_from([""]) | st.from_regex(r"\.[0-9]{1,20}", fullmatch=True),
    st.sampled_from([""]) | st.from_regex(r"[eE][+-]?[0-9]{1,4}", fullmatch=True),
)


@settings(max_examples=1000, deadline=None)
@given(number_literals)
@example("1e400")
@example("-1e309")
@example("1e-400")
@example("1" + "0" * 400)
def test_number_literals_parse_to_what_a_double_holds_or_are_refused(literal):
    result = parse_json(literal)
    if "." in literal or "e" in literal.lower():
        if math.isinf(float(literal)):
            assert isinstance(result, Malformed) and "non-finite" in result.reason
        else:
            assert result == float(literal)
    else:
        assert result == int(literal)  # integers of any size are exact


def test_a_long_integer_with_a_request_id_is_answered_against_it():
    """An integer of 5000 digits is valid JSON: it must be relayed (the docs say integers of
    any size are) or refused with an error the SDK can match to its request. Python refuses
    to parse integers past 4300 digits, and the refusal was answered uncorrelated."""
    raw = '{"type":"publish","channel":"c","data":' + "9" * 5000 + ',"requestId":"r"}'
    result = decode_client_frame(raw)
    if isinstance(result, Malformed):
        assert (result.code, result.request_id) == ("malformed_message", "r")
    else:
        assert result == PublishFrame("c", int("9" * 5000), "r")


# --- server frames: the SDK parser rules of docs/protocol.md -------------------------

UNDECIDED = object()  # numbers a double cannot hold: JS sees Infinity, Python an exact int


def ref_finite(value: object) -> object:
    """True/False for whether ``value`` is a finite number; UNDECIDED for huge integers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int) and abs(value) > 1.7976931348623157e308:
        return UNDECIDED
    return math.isfinite(value)


def ref_entries(value: object) -> tuple[PresencePeer, ...] | None:
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("peerId"), str):
            return None
        meta = item.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            return None
        out.append(PresencePeer(item["peerId"], meta))
    return tuple(out)


def expected_server(obj: dict[str, Any]) -> Any:
    """The frame an SDK takes from ``obj``, None for "dropped as malformed", or UNDECIDED."""
    kind = obj.get("type")
    opt_str = lambda v: v if isinstance(v, str) else None  # noqa: E731
    opt_dict = lambda v: v if isinstance(v, dict) else None  # noqa: E731
    if kind == "welcome":
        pid, exp, st_, mx = (
            obj.get(k) for k in ("peerId", "expiresAt", "serverTime", "maxMessageSize")
        )
        checks = [ref_finite(st_), ref_finite(mx)]
        if exp is not None:
            checks.append(ref_finite(exp))
        if not isinstance(pid, str) or not pid or False in checks:
            return None
        if UNDECIDED in checks:
            return UNDECIDED
        if mx <= 0:
            return None
        return WelcomeFrame(pid, exp, st_, mx, opt_dict(obj.get("metadata")))
    if kind == "ack":
        return AckFrame(obj["requestId"]) if isinstance(obj.get("requestId"), str) else None
    if kind == "error":
        code = obj.get("code")
        if not isinstance(code, str) or not code:
            return None
        return ErrorFrame(code, opt_str(obj.get("requestId")), opt_str(obj.get("message")))
    if kind == "message":
        ok = isinstance(obj.get("channel"), str) and isinstance(obj.get("from"), str)
        if not ok or "data" not in obj:
            return None
        return MessageFrame(
            obj["channel"], obj["from"], obj["data"], opt_dict(obj.get("fromMetadata"))
        )
    if kind == "direct":
        if not isinstance(obj.get("from"), str) or "data" not in obj:
            return None
        return DirectFrame(obj["from"], obj["data"], opt_dict(obj.get("fromMetadata")))
    if kind == "presence":
        joined, left = ref_entries(obj.get("joined")), ref_entries(obj.get("left"))
        if not isinstance(obj.get("channel"), str) or joined is None or left is None:
            return None
        return PresenceFrame(obj["channel"], joined, left)
    if kind == "going_away":
        retry = obj.get("retryAfterMs")
        finite = ref_finite(retry)
        if finite is UNDECIDED:
            return UNDECIDED
        if finite is True and retry > 0:
            return GoingAwayFrame(max(1, min(int(retry), 300_000)))
        return GoingAwayFrame(1000)
    if kind == "pong":
        return PongFrame(opt_str(obj.get("requestId")))
    return None


huge = st.sampled_from([10**400, -(10**400), 10**309, 2**1100])
server_values = st.one_of(
    field_values,
    huge,
    st.lists(
        st.fixed_dictionaries({"peerId": field_values}, optional={"metadata": field_values}),
        max_size=3,
    ),
)
server_objects = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["welcome", "ack", "error", "message", "direct", "presence", "going_away", "pong"]
        )
        | types
    },
    optional={
        k: server_values
        for k in (
            "peerId",
            "expiresAt",
            "serverTime",
            "maxMessageSize",
            "metadata",
            "requestId",
            "code",
            "message",
            "channel",
            "from",
            "data",
            "fromMetadata",
            "joined",
            "left",
            "retryAfterMs",
        )
    },
)


@settings(max_examples=2000, deadline=None)
@given(server_objects, st.integers(0, 2))
@example({"type": "going_away", "retryAfterMs": 10**400}, 0)
@example({"type": "welcome", "peerId": "p", "serverTime": 10**400, "maxMessageSize": 1}, 0)
@example({"type": "welcome", "peerId": "p", "serverTime": 1, "maxMessageSize": 2**1100}, 0)
def test_server_decoder_follows_the_sdk_rules_for_any_object(obj, style):
    result = decode_server_frame(serialise(obj, style))
    want = expected_server(obj)
    if want is UNDECIDED:
        assert isinstance(result, (Malformed, WelcomeFrame, GoingAwayFrame))
        if isinstance(result, GoingAwayFrame):
            assert 1 <= result.retry_after_ms <= 300_000
    elif want is None:
        assert isinstance(result, Malformed)
    else:
        assert result == want


def test_huge_integers_in_server_frames_do_not_raise():
    """A shape violation is logged and dropped, the connection stays up.
    ``math.isfinite`` raises OverflowError on an int beyond the double range, so these
    frames made ``decode_server_frame`` raise (the SDK reader then closed with 1011)."""
    big = "1" + "0" * 400
    for raw in (
        '{"type":"going_away","retryAfterMs":' + big + "}",
        '{"type":"welcome","peerId":"p","expiresAt":null,"serverTime":'
        + big
        + ',"maxMessageSize":65536}',
        '{"type":"welcome","peerId":"p","expiresAt":'
        + big
        + ',"serverTime":1,"maxMessageSize":65536}',
        '{"type":"welcome","peerId":"p","expiresAt":null,"serverTime":1,"maxMessageSize":'
        + big
        + "}",
    ):
        result = decode_server_frame(raw)
        assert isinstance(result, (Malformed, WelcomeFrame, GoingAwayFrame)), raw
