"""`metered-realtime demo` as a user runs it: a subprocess, WebRTC kept on loopback."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("aiortc")

from metered_realtime.demo import analyse_pcm, find_js_sdk

ROOT = Path(__file__).resolve().parents[1]


def demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "metered_realtime.cli", "demo", *args]


def test_analyse_pcm_measures_a_tone_and_silence() -> None:
    import math
    import struct

    rate = 16000
    tone = struct.pack(
        f"<{rate}h", *(round(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate))
    )
    level, freq = analyse_pcm(tone, rate)
    assert level == pytest.approx(8000 / 32768 / math.sqrt(2), rel=0.01)
    assert freq == pytest.approx(440, abs=1)
    assert analyse_pcm(bytes(3200), rate) == (0.0, None)
    assert analyse_pcm(b"", rate) == (0.0, None)


@pytest.mark.timeout(60)
def test_demo_runs_every_step_and_prints_the_summary() -> None:
    proc = subprocess.run(
        demo_command("--loopback", "--timeout", "45"),
        capture_output=True,
        text=True,
        timeout=55,
        cwd=ROOT,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    # events as they happen
    for pattern in (
        r"server\s+listening on ws://127\.0\.0\.1:\d+/v1",
        r"alice\s+joined room 'demo' as \S+",
        r"bob\s+joined room 'demo' as \S+",
        r"bob\s+data \(broadcast\) from alice",
        r"alice\s+data \(broadcast\) from bob",
        r"bob\s+data \(direct\) from alice",
        r"alice\s+data \(direct\) from bob",
        r"bob\s+track from alice: audio",
        r"bob\s+data channel 'demo' opened by alice",
        r"bob\s+data channel message: 'hello bob",
        r"alice\s+data channel message: b'binary hello from bob'",
    ):
        assert re.search(pattern, out), (pattern, out)
    # the summary
    assert "\nsummary\n" in out
    assert re.search(r"peers:\s+2 in room 'demo' \(alice \S+, bob \S+\)", out)
    assert re.search(r"broadcast:\s+alice -> bob, bob -> alice", out)
    assert re.search(r"direct:\s+alice -> bob, bob -> alice", out)
    rtt = re.search(r"rtt:\s+data channel median ([\d.]+) ms.*\(10 pings\)", out)
    assert rtt and float(rtt.group(1)) < 1000
    assert re.search(r"server relay median [\d.]+ ms", out)
    audio = re.search(
        r"audio:\s+440 Hz tone sent, received level (-?[\d.]+) dBFS .* dominant frequency ([\d.]+) Hz",
        out,
    )
    assert audio, out
    assert -30 < float(audio.group(1)) < 0  # a 0.3 amplitude tone is about -13.5 dBFS
    assert abs(float(audio.group(2)) - 440) <= 5
    assert out.rstrip().splitlines()[-1] != "result: failed"
    assert "result: ok" in out


@pytest.mark.timeout(30)
def test_demo_fails_with_a_clear_message_when_out_of_time() -> None:
    proc = subprocess.run(
        demo_command("--loopback", "--timeout", "0.5"),
        capture_output=True,
        text=True,
        timeout=25,
        cwd=ROOT,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(
        r"demo failed during step '[^']+': the demo passed its 0.5 s limit", proc.stdout
    )
    assert "result: failed" in proc.stdout


@pytest.mark.timeout(60)
def test_demo_browser_mode_serves_the_page_until_interrupted() -> None:
    proc = subprocess.Popen(
        demo_command("--loopback", "--browser", "--timeout", "45"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = None
        lines = []
        for _ in range(500):  # bounded: the scripted run prints well under 100 lines
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.match(r"browser: open (http://127\.0\.0\.1:\d+/)", line)
            if match:
                url = match.group(1)
                break
        assert url, "".join(lines)
        assert "result: ok" in "".join(lines)
        with urllib.request.urlopen(url, timeout=5) as resp:
            page = resp.read().decode()
        assert "metered-realtime demo" in page and '"room": "demo"' in page
        assert '"url": "ws://127.0.0.1:' in page
        sdk = find_js_sdk()
        if sdk is not None:
            with urllib.request.urlopen(url + "sdk.js", timeout=5) as resp:
                assert resp.read() == sdk.read_bytes()
        else:
            assert "npm install" in page
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, rest + err
        assert "stopping" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def test_background_tasks_log_failures_and_cancel_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio
    import logging

    from metered_realtime.demo import BackgroundTasks

    async def fail() -> None:
        raise ValueError("boom")

    tasks = BackgroundTasks()
    never = asyncio.Event()
    with caplog.at_level(logging.DEBUG, logger="metered_realtime.demo"):
        failed = tasks.spawn(fail())
        waiting = tasks.spawn(never.wait())
        await asyncio.wait([failed], timeout=5)
        await asyncio.wait_for(tasks.aclose(), 5)
    assert waiting.cancelled()
    assert any(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in caplog.records)


def test_static_site_serves_its_routes_only(tmp_path: Path) -> None:
    from metered_realtime.demo.site import HTML, StaticSite

    script = tmp_path / "app.js"
    script.write_text("one")
    site = StaticSite({"/": (b"<p>hi</p>", HTML), "/app.js": (script, "text/javascript")})
    try:
        with urllib.request.urlopen(site.url, timeout=5) as resp:
            assert resp.read() == b"<p>hi</p>"
            assert resp.headers["Content-Type"] == HTML
        script.write_text("two")  # a file route is read at each request
        with urllib.request.urlopen(site.url + "app.js?x=1", timeout=5) as resp:
            assert resp.read() == b"two"
        port = int(site.url.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            answer = b"".join(iter(lambda: sock.recv(4096), b""))
        assert b"Content-Length: 9\r\n" in answer and answer.endswith(b"\r\n\r\n")
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(site.url + "secret", timeout=5)
        assert missing.value.code == 404
        post = urllib.request.Request(site.url, data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post, timeout=5)
        assert refused.value.code == 501
    finally:
        site.close()


def test_the_page_is_package_data_with_the_settings_filled_in() -> None:
    from metered_realtime.demo.page import browser_page

    page = browser_page("ws://127.0.0.1:1", "pk_x", "a</script>", False, "<b>hi</b>")
    text = page.decode()
    assert "%%" not in text
    assert '"apiKey": "pk_x"' in text and "a<\\/script>" in text
    assert "room <code>a&lt;/script&gt;</code>" in text and "<b>hi</b>" in text
    assert "npm install" in text


def test_provision_app_reuses_the_app_and_grants_every_permission(tmp_path: Path) -> None:
    from metered_realtime.demo import provision_app
    from metered_realtime.server import store as store_module
    from metered_realtime.tokens import PERMISSIONS

    assert store_module.ALL_PERMISSIONS is PERMISSIONS  # one permission set
    store = store_module.Store(str(tmp_path / "s.db"))
    try:
        first, second = provision_app(store, "x"), provision_app(store, "x")
        assert first.app_id == second.app_id and first.api_key != second.api_key
        key = store.get_publishable_key(first.api_key)
        assert key is not None and key.permissions == PERMISSIONS
        assert first.secret not in repr(first)
    finally:
        store.close()
