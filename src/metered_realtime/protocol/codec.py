"""Decoding that never raises on hostile input, and the compact encoder."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, TypeGuard

from .frames import (
    AckFrame,
    ClientFrame,
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
    ServerFrame,
    SubscribeFrame,
    UnsubscribeFrame,
    WelcomeFrame,
)
from .ids import is_valid_channel, is_valid_peer_id, is_valid_request_id
from .limits import GOING_AWAY_DEFAULT_MS, GOING_AWAY_MAX_MS, MAX_NESTING

_SEPARATORS = (",", ":")


_INFINITY = float("inf")
_MAX_DOUBLE = 1.7976931348623157e308


class NonFiniteNumber(ValueError):
    """A number JSON can write but IEEE doubles cannot hold (``1e400``), or NaN/Infinity."""


def _reject_constant(name: str) -> Any:
    raise NonFiniteNumber(f"non-finite number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if value == _INFINITY or value == -_INFINITY:
        raise NonFiniteNumber("non-finite number (beyond the double range)")
    return value


# One decoder for every call: ``json.loads`` with hooks would build a new one each time.
_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_reject_constant)
_fast_loads: Callable[[bytes], Any] | None
try:
    import orjson

    _fast_loads = orjson.loads
except ImportError:  # the SDK alone: the standard library parses everything
    _fast_loads = None
# orjson reads an integer beyond 64 bits as a float; the standard library keeps it exact.
# A run of 19 digits is found by mapping every digit to 0 (a C loop, unlike a regex).
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19
# Made once: json.dumps with any option builds a new encoder per call (a third of its time).
_ENCODER = json.JSONEncoder(separators=_SEPARATORS, ensure_ascii=False, allow_nan=False)


def parse_json(text: str | bytes) -> Any | Malformed:
    """Parse one JSON document; non-finite numbers, bad UTF-8 and runaway nesting are malformed.

    A number beyond the double range (``1e400``) is valid JSON text, but it would parse to
    infinity, which no JSON encoder (ours, or ``JSON.stringify``, which writes ``null``)
    can pass on faithfully, so it is refused like ``NaN`` and ``Infinity``.

    With orjson installed (the server extra) a text is parsed by it first, three times
    faster; whatever it refuses, and any text with an integer orjson would read as a float
    (19 digits or more), is parsed by the standard library, so results and reasons are the
    same either way.
    """
    if _fast_loads is not None and isinstance(text, str):
        try:
            raw = text.encode()
        except UnicodeEncodeError:  # a lone surrogate: only the standard library takes it
            return parse_json_stdlib(text)
        if _LONG_RUN not in raw.translate(_ZERO_DIGITS):
            try:
                return _fast_loads(raw)
            except ValueError:
                pass  # the standard library names what is wrong
    return parse_json_stdlib(text)


def parse_json_stdlib(text: str | bytes) -> Any | Malformed:
    """``parse_json`` with the standard library only."""
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode(json.detect_encoding(text), "surrogatepass")
        return _DECODER.decode(text)
    except NonFiniteNumber as exc:
        return Malformed(f"invalid JSON: {exc}")
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            # Python parses at most 4300 digits; such an integer is beyond any double anyway.
            return Malformed("invalid JSON: non-finite number (an integer of over 4300 digits)")
        return Malformed(f"invalid JSON: {type(exc).__name__}")
    except (RecursionError, TypeError) as exc:
        return Malformed(f"invalid JSON: {type(exc).__name__}")


def dumps(value: Any) -> str:
    """Compact JSON as the SDKs write it: raw UTF-8, no NaN/Infinity.

    Raises ``ValueError`` for non-finite numbers and ``TypeError`` for values JSON
    cannot hold.
    """
    return _ENCODER.encode(value)


def to_wire_bytes(text: str) -> bytes:
    """UTF-8 bytes of a frame; lone surrogates (legal in JSON escapes) are re-escaped."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(
            json.loads(text), separators=_SEPARATORS, ensure_ascii=True, allow_nan=False
        ).encode("ascii")


def payload_size(data: Any) -> int:
    """Bytes of the compact UTF-8 JSON of ``data``: the measure ``maxMessageSize`` caps."""
    return len(to_wire_bytes(dumps(data)))


def _string_end(text: str, start: int) -> int:
    """Index of the quote closing the JSON string that opens at ``start``."""
    end = start + 1
    while end < len(text) and text[end] != '"':
        end += 2 if text[end] == "\\" else 1
    return end


def top_level_string(text: str, key: str) -> str | None:
    """The string value of ``key`` in a JSON object's outermost level, found without parsing.

    Used only for frames too deeply nested to parse, so their error can still be correlated.
    """
    depth, i, want = 0, 0, json.dumps(key)
    while i < len(text):
        ch = text[i]
        if ch == '"':
            end = _string_end(text, i)
            if depth == 1 and text[i : end + 1] == want:
                colon = end + 1
                while colon < len(text) and text[colon] in " \t\r\n":
                    colon += 1
                start = colon + 1
                while start < len(text) and text[start] in " \t\r\n":
                    start += 1
                if colon < len(text) and text[colon] == ":" and text[start : start + 1] == '"':
                    found = parse_json(text[start : _string_end(text, start) + 1])
                    return found if isinstance(found, str) else None
            i = end + 1
            continue
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return None


# A JSON string (skipped whole, brackets inside it included) or one structural bracket.
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def too_deep(text: str) -> bool:
    """True when the JSON ``text`` nests deeper than ``MAX_NESTING`` levels.

    Counting brackets first keeps the common case at C speed; only a text with more
    openers than the limit is scanned token by token.
    """
    if len(text) <= MAX_NESTING or text.count("[") + text.count("{") <= MAX_NESTING:
        return False
    depth = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
            if depth > MAX_NESTING:
                return True
        elif token == "]" or token == "}":
            depth -= 1
    return False


def _correlate(text: str) -> str | None:
    """The frame's valid top-level ``requestId``, for a frame that parsing refused."""
    rid = top_level_string(text, "requestId")
    return rid if is_valid_request_id(rid) else None


def _parse_object(text: str | bytes) -> dict[str, Any] | Malformed:
    if isinstance(text, bytes):
        return Malformed("binary frames are not part of the protocol")
    if too_deep(text):
        return Malformed("nesting too deep", request_id=_correlate(text))
    obj = parse_json(text)
    if type(obj) is dict:  # every frame but a broken one
        return obj
    if isinstance(obj, Malformed) and obj.reason == "invalid JSON: RecursionError":
        return Malformed("nesting too deep", request_id=_correlate(text))
    if isinstance(obj, Malformed) and obj.reason.startswith("invalid JSON: non-finite"):
        return Malformed(obj.reason, request_id=_correlate(text))
    if isinstance(obj, Malformed):
        return obj
    return Malformed("frame is not a JSON object")


# --- client frames (what a server decodes) ----------------------------------


def decode_client_frame(text: str | bytes) -> ClientFrame | Malformed:
    """Decode one client frame; every failure is a ``Malformed`` with the code to answer."""
    obj = _parse_object(text)
    if isinstance(obj, Malformed):
        return obj
    kind = obj.get("type")
    request_id = obj.get("requestId")
    if "requestId" in obj and not is_valid_request_id(request_id):
        return Malformed("requestId must be a string of 1..128 characters")
    rid: str | None = request_id
    if not isinstance(kind, str):
        return Malformed("missing or non-string type", request_id=rid)
    if kind == "ping":
        return PingFrame(rid)
    if kind in ("subscribe", "unsubscribe", "publish"):
        channel = obj.get("channel")
        if not is_valid_channel(channel):
            return Malformed("invalid channel", "invalid_channel", rid)
        if kind == "subscribe":
            flag = obj.get("includeSenderMetadata", False)
            if not isinstance(flag, bool):
                return Malformed("includeSenderMetadata must be a boolean", request_id=rid)
            return SubscribeFrame(channel, rid, flag)
        if kind == "unsubscribe":
            return UnsubscribeFrame(channel, rid)
        if "data" not in obj:
            return Malformed("publish needs data", "missing_data", rid)
        return PublishFrame(channel, obj["data"], rid)
    if kind == "send":
        to = obj.get("to")
        if not is_valid_peer_id(to):
            return Malformed("invalid peer id", "invalid_peer_id", rid)
        if "data" not in obj:
            return Malformed("send needs data", "missing_data", rid)
        return SendFrame(to, obj["data"], rid)
    return Malformed("unknown frame type", "unknown_type", rid)


def encode_client_frame(frame: ClientFrame) -> str:
    """Compact JSON of a client frame, keys in the order the SDKs send them."""
    out: dict[str, Any]
    if isinstance(frame, SubscribeFrame):
        out = {"type": "subscribe", "channel": frame.channel}
        if frame.request_id is not None:
            out["requestId"] = frame.request_id
        if frame.include_sender_metadata:
            out["includeSenderMetadata"] = True
        return dumps(out)
    if isinstance(frame, UnsubscribeFrame):
        out = {"type": "unsubscribe", "channel": frame.channel}
    elif isinstance(frame, PublishFrame):
        out = {"type": "publish", "channel": frame.channel, "data": frame.data}
    elif isinstance(frame, SendFrame):
        out = {"type": "send", "to": frame.to, "data": frame.data}
    else:
        out = {"type": "ping"}
    if frame.request_id is not None:
        out["requestId"] = frame.request_id
    return dumps(out)


# --- server frames (what a client decodes) ----------------------------------


def _is_number(value: object) -> TypeGuard[int | float]:
    # An integer beyond the double range is Infinity to JavaScript: not a finite number.
    if isinstance(value, int) and not isinstance(value, bool):
        return -_MAX_DOUBLE <= value <= _MAX_DOUBLE
    return isinstance(value, float) and math.isfinite(value)


def _opt_dict(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _presence_entries(value: object) -> tuple[PresencePeer, ...] | None:
    if not isinstance(value, list):
        return None
    entries: list[PresencePeer] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("peerId"), str):
            return None
        # Metadata that is not an object is dropped, not the entry (the published SDK's shape).
        entries.append(PresencePeer(item["peerId"], _opt_dict(item.get("metadata"))))
    return tuple(entries)


def _decode_welcome(obj: dict[str, Any]) -> WelcomeFrame | Malformed:
    peer_id = obj.get("peerId")
    expires_at = obj.get("expiresAt")
    server_time = obj.get("serverTime")
    max_size = obj.get("maxMessageSize")
    if not isinstance(peer_id, str) or not peer_id:
        return Malformed("welcome without peerId")
    if expires_at is not None and not _is_number(expires_at):
        return Malformed("welcome expiresAt must be a number or null")
    if not _is_number(server_time):
        return Malformed("welcome serverTime must be a finite number")
    if not _is_number(max_size) or max_size <= 0:
        return Malformed("welcome maxMessageSize must be a positive number")
    meta = _opt_dict(obj.get("metadata"))
    return WelcomeFrame(peer_id, expires_at, server_time, max_size, meta)


def decode_server_frame(text: str | bytes) -> ServerFrame | Malformed:
    """Decode one server frame by the SDK parser rules; never raises."""
    obj = _parse_object(text)
    if isinstance(obj, Malformed):
        return obj
    kind = obj.get("type")
    if kind == "welcome":
        return _decode_welcome(obj)
    if kind == "ack":
        rid = obj.get("requestId")
        return AckFrame(rid) if isinstance(rid, str) else Malformed("ack without requestId")
    if kind == "error":
        code = obj.get("code")
        if not isinstance(code, str) or not code:
            return Malformed("error without code")
        rid = obj.get("requestId")
        msg = obj.get("message")
        return ErrorFrame(
            code, rid if isinstance(rid, str) else None, msg if isinstance(msg, str) else None
        )
    if kind == "message":
        channel, sender = obj.get("channel"), obj.get("from")
        if not isinstance(channel, str) or not isinstance(sender, str) or "data" not in obj:
            return Malformed("message needs channel, from and data")
        return MessageFrame(channel, sender, obj["data"], _opt_dict(obj.get("fromMetadata")))
    if kind == "direct":
        sender = obj.get("from")
        if not isinstance(sender, str) or "data" not in obj:
            return Malformed("direct needs from and data")
        return DirectFrame(sender, obj["data"], _opt_dict(obj.get("fromMetadata")))
    if kind == "presence":
        channel = obj.get("channel")
        joined = _presence_entries(obj.get("joined"))
        left = _presence_entries(obj.get("left"))
        if not isinstance(channel, str) or joined is None or left is None:
            return Malformed("presence needs channel, joined[] and left[]")
        return PresenceFrame(channel, joined, left)
    if kind == "going_away":
        retry = obj.get("retryAfterMs")
        ms = int(retry) if _is_number(retry) and retry > 0 else GOING_AWAY_DEFAULT_MS
        return GoingAwayFrame(max(1, min(ms, GOING_AWAY_MAX_MS)))
    if kind == "pong":
        rid = obj.get("requestId")
        return PongFrame(rid if isinstance(rid, str) else None)
    return Malformed("unknown frame type")


def _presence_json(entries: tuple[PresencePeer, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entry in entries:
        item: dict[str, Any] = {"peerId": entry.peer_id}
        if entry.metadata is not None:
            item["metadata"] = entry.metadata
        out.append(item)
    return out


def encode_server_frame(frame: ServerFrame) -> str:
    """Compact JSON of a server frame, optional fields omitted rather than null."""
    out: dict[str, Any]
    if isinstance(frame, WelcomeFrame):
        out = {
            "type": "welcome",
            "peerId": frame.peer_id,
            "expiresAt": frame.expires_at,
            "serverTime": frame.server_time,
            "maxMessageSize": frame.max_message_size,
        }
        if frame.metadata is not None:
            out["metadata"] = frame.metadata
    elif isinstance(frame, AckFrame):
        out = {"type": "ack", "requestId": frame.request_id}
    elif isinstance(frame, ErrorFrame):
        out = {"type": "error", "code": frame.code}
        if frame.request_id is not None:
            out["requestId"] = frame.request_id
        if frame.message is not None:
            out["message"] = frame.message
    elif isinstance(frame, MessageFrame):
        out = {"type": "message", "channel": frame.channel, "from": frame.sender}
        out["data"] = frame.data
        if frame.from_metadata is not None:
            out["fromMetadata"] = frame.from_metadata
    elif isinstance(frame, DirectFrame):
        out = {"type": "direct", "from": frame.sender, "data": frame.data}
        if frame.from_metadata is not None:
            out["fromMetadata"] = frame.from_metadata
    elif isinstance(frame, PresenceFrame):
        out = {
            "type": "presence",
            "channel": frame.channel,
            "joined": _presence_json(frame.joined),
            "left": _presence_json(frame.left),
        }
    elif isinstance(frame, GoingAwayFrame):
        out = {"type": "going_away", "retryAfterMs": frame.retry_after_ms}
    else:
        out = {"type": "pong"}
        if frame.request_id is not None:
            out["requestId"] = frame.request_id
    return dumps(out)
