"""Base-URL rules and the connect URL."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from .._scrub import MASK

__all__ = ["LOOPBACK_HOSTS", "build_connect_url", "masked_connect_url", "validate_base_url"]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def validate_base_url(url: object) -> str:
    """Validate a base URL and reduce it to ``scheme://host[:port]``; ``ValueError`` if bad."""
    if not isinstance(url, str) or not url:
        raise ValueError("url must be a non-empty absolute ws(s):// URL")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("url must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"url is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("ws", "wss") or not host or not parts.netloc:
        raise ValueError("url must be an absolute wss:// URL (ws:// only for localhost)")
    if scheme == "ws" and host not in LOOPBACK_HOSTS:
        raise ValueError("ws:// is allowed only for localhost, 127.0.0.1 and ::1; use wss://")
    if parts.username is not None or parts.password is not None:
        raise ValueError("url must not carry user info")
    if parts.path not in ("", "/"):
        raise ValueError("url must be an origin only (no path); the SDK appends /v1")
    if parts.query or "?" in url:
        raise ValueError("url must not have a query")
    if parts.fragment or "#" in url:
        raise ValueError("url must not have a fragment")
    if port is not None and port == 0:
        raise ValueError("url port must be within 1..65535")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{scheme}://{netloc}"


def build_connect_url(origin: str, kind: str, value: str) -> str:
    """``<origin>/v1?key=<value>`` or ``?token=<value>``, the value fully percent-encoded."""
    if kind not in ("key", "token"):
        raise ValueError("credential kind must be 'key' or 'token'")
    return f"{origin}/v1?{kind}={quote(value, safe='')}"


def masked_connect_url(origin: str, kind: str) -> str:
    """The connect URL with the credential replaced by ``***`` (for logs)."""
    return f"{origin}/v1?{kind}={MASK}"
