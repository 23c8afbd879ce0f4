"""Server logs: probes are not errors, and no credential reaches a log line or traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import pytest
from tests.server.wire import Wire

from metered_realtime.cli import _JsonFormatter
from metered_realtime.server.logs import ScrubFilter, endpoint_logger

ENDPOINT = "metered_realtime.server.endpoint"


async def probe(port: int, data: bytes = b"", read: bool = False) -> bytes:
    """Connect, send ``data`` (maybe nothing), optionally read the answer, close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if data:
        writer.write(data)
        await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5) if read else b""
    writer.close()
    await writer.wait_closed()
    return answer


async def settle(server) -> None:
    """Wait until the server has finished every connection (and logged about it)."""
    endpoints = server.server.listener.endpoints
    for _ in range(500):
        if not endpoints:
            return
        await asyncio.sleep(0.01)


def texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the server logged (the test's own clients log as ``websockets.client``)."""
    return [
        r.getMessage() + "\n" + (r.exc_text or "")
        for r in caplog.records
        if r.name != "websockets.client"
    ]


async def test_probes_are_logged_at_debug_not_error(server, caplog):
    caplog.set_level(logging.DEBUG, logger=ENDPOINT)
    port = server.server.port
    await probe(port)  # a load balancer's TCP check: connect, close
    await probe(port, b"\x16\x03\x01\x02\x00garbage")  # TLS to a plain port, no line end
    answer = await probe(port, b"GET /v1 HTTP/1.1\r\nHost: x\r\n\r\n", read=True)
    assert answer.startswith(b"HTTP/1.1 426")  # plain HTTP to the WebSocket path
    await probe(port, b"GET /v1 what\r\n\r\n", read=True)  # not HTTP at all
    await settle(server)
    errors = [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name != "websockets.client"
    ]
    assert errors == [], [r.getMessage() for r in errors]
    assert any("opening handshake failed" in r.getMessage() for r in caplog.records)
    # The server is unharmed.
    wire = await Wire.open(server.key_url())
    await wire.close()


async def test_debug_logs_never_show_a_key_or_token(server, caplog):
    caplog.set_level(logging.DEBUG, logger=ENDPOINT)
    token = server.mint()
    for url in (server.key_url(), server.token_url(token)):
        wire = await Wire.open(url)
        await wire.close()
    # A request line h11 cannot parse ends up in the failure's text.
    await probe(server.server.port, f"GET /v1?key={server.api_key} x\r\n\r\n".encode(), read=True)
    await settle(server)
    logged = "\n".join(texts(caplog))
    assert "GET /v1?key=***" in logged  # the request line was logged, masked
    assert server.api_key not in logged and token not in logged
    assert "pk_live_" not in logged.replace("pk_live_***", "")


def test_scrub_filter_masks_message_arguments_and_traceback():
    try:
        raise ValueError("bad request line: GET /v1?token=eyJa.eyJb.sig HTTP/1.0")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "websockets.server", logging.ERROR, __file__, 1, "< GET %s", ("/v1?key=pk_live_abc",), None
    )
    record.exc_info = exc_info
    assert ScrubFilter().filter(record)
    assert record.getMessage() == "< GET /v1?key=***"
    assert record.exc_info is None  # nobody can format the original again
    assert record.exc_text and "ValueError" in record.exc_text and "eyJa" not in record.exc_text


def test_endpoint_logger_follows_the_server_levels():
    logger = endpoint_logger()
    assert logger.name == ENDPOINT
    parent = logging.getLogger("metered_realtime.server")
    old = parent.level
    try:
        parent.setLevel(logging.WARNING)
        assert not logger.isEnabledFor(logging.DEBUG)
        parent.setLevel(logging.DEBUG)
        assert logger.isEnabledFor(logging.DEBUG)  # not a stale cached answer
    finally:
        parent.setLevel(old)


def test_json_log_lines_carry_the_scrubbed_exception():
    try:
        raise RuntimeError("handler failed for ws://h/v1?key=pk_live_0123456789abcdef")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "websockets.server", logging.ERROR, __file__, 1, "connection handler failed", (), exc_info
    )
    line = json.loads(_JsonFormatter().format(record))
    assert line["msg"] == "connection handler failed" and line["level"] == "error"
    assert "Traceback" in line["exc"] and "RuntimeError: handler failed" in line["exc"]
    assert "0123456789abcdef" not in line["exc"]
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "token=%s", ("eyJhbGc",), None)
    line = json.loads(_JsonFormatter().format(plain))
    assert line["msg"] == "token=***" and "exc" not in line
