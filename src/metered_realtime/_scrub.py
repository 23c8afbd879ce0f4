"""Credential scrubbing for log lines, emitted errors and re-raised provider errors."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "scrub", "scrub_exception", "scrub_value"]

MASK = "***"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # ?token=... / &key=... query values (also percent-encoded or in reprs)
    (re.compile(r"(?i)(token|key)=[^&\s\"'#;,)\]}>]+"), r"\1=" + MASK),
    # SDP attributes and similar "name:value" / "name=value" pairs
    (re.compile(r"(?i)\b(ice-pwd|ice-ufrag)([:=]\s*)\S+"), r"\1\2" + MASK),
    # credential values: credential=x, credential: x, "credential": "x", 'credential': 'x'
    (
        re.compile(r"(?i)\b(credential)(['\"]?\s*[:=]\s*['\"]?)[^'\"\s,;&)\]}]+"),
        r"\1\2" + MASK,
    ),
    # bare JWTs, publishable and secret keys
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), MASK),
    (re.compile(r"\b(pk|sk)_live_[A-Za-z0-9]+"), r"\1_live_" + MASK),
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask credentials in ``text``; exact ``secrets`` (e.g. the live key) are masked too."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def scrub_value(value: Any, secrets: Iterable[str] = (), _depth: int = 0) -> Any:
    """Scrub strings inside a (log context) value; containers are copied, depth-bounded."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return scrub(value, secrets)
    if _depth >= 8:
        return scrub(repr(value), secrets)
    if isinstance(value, dict):
        return {
            scrub(str(k), secrets): scrub_value(v, secrets, _depth + 1) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_value(v, secrets, _depth + 1) for v in value)
    if isinstance(value, BaseException):
        return scrub_exception(value, secrets)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub(repr(value), secrets)


def scrub_exception(exc: BaseException, secrets: Iterable[str] = ()) -> Exception:
    """A scrubbed copy of ``exc``: same class when it can be rebuilt from one string.

    The copy never chains the original (no ``__cause__``/``__context__``, no traceback).
    """
    secrets = tuple(secrets)
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not break error reporting
        text = type(exc).__name__
    clean = scrub(text, secrets)
    copy: Exception
    cls = type(exc)
    try:
        if not issubclass(cls, Exception):
            raise TypeError("not an Exception")
        candidate = cls(clean)
        if str(candidate) not in (clean, repr(clean)):
            raise TypeError("class does not round-trip one string")
        copy = candidate
    except Exception:
        copy = Exception(f"{cls.__name__}: {clean}" if clean else cls.__name__)
    copy.__cause__ = None
    copy.__context__ = None
    copy.__suppress_context__ = True
    copy.__traceback__ = None
    return copy
