"""The Python snippets of the guides under docs/ run, as written, against a real server.

Every ```python block is a whole program unless its first line is ``# fragment``. It runs
in a subprocess with METERED_REALTIME_URL / METERED_REALTIME_KEY (and, for the
authentication guide, a secret key) pointing at the test server, WebRTC kept on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDES = ("getting-started.md", "authentication.md", "iot-telemetry.md", "ai-agent.md")
LOOPBACK = (
    "from metered_realtime.demo import restrict_ice_to_loopback\nrestrict_ice_to_loopback()\n"
)


def snippets() -> list[Any]:
    found = []
    for guide in GUIDES:
        path = DOCS / guide
        if not path.exists():
            continue
        blocks = re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)
        for i, code in enumerate(blocks):
            if not code.startswith("# fragment"):
                found.append(pytest.param(code, id=f"{guide}-{i}"))
    return found


# What each runnable snippet prints (checked in order), by guide and block position.
EXPECTED: dict[str, list[str]] = {
    "getting-started.md-0": [r"#lobby \S+: hello, lobby"],
    "getting-started.md-1": [
        r"bob got broadcast data: \{'text': 'hi bob'\}",
        r"bob receives audio from \S+, metadata \{'role': 'tone'\}",
        r"bob heard 1\.0 s of audio",
    ],
    "authentication.md-0": [r"connected with a publishable key as \S+"],
    "authentication.md-2": [r"joined room-42: Ada"],
    "iot-telemetry.md-0": [rf"^boiler #{i}: 2\d\.\d+ C$" for i in range(5)],
    "ai-agent.md-2": [r"bot heard \S+ at rms 0\.[1-9]\d"],
}


def test_the_guides_have_runnable_snippets() -> None:
    ids = [p.id for p in snippets()]
    assert set(EXPECTED) <= set(ids), ids


@pytest.mark.timeout(60)
@pytest.mark.parametrize("code", snippets())
async def test_snippet_runs(code: str, server: Any, request: pytest.FixtureRequest) -> None:
    env = {
        **os.environ,
        "METERED_REALTIME_URL": server.url,
        "METERED_REALTIME_KEY": server.api_key,
        "METERED_REALTIME_SECRET_KEY_ID": server.secret_key_id,
        "METERED_REALTIME_SECRET": server.secret,
        "PYTHONUNBUFFERED": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOOPBACK + code,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 50)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode()
    assert proc.returncode == 0, text + err.decode()
    position = 0
    for pattern in EXPECTED.get(request.node.callspec.id, []):
        match = re.compile(pattern, re.M).search(text, position)
        assert match, (pattern, text)
        position = match.end()
