"""examples/ai_voice_agent.py end to end: a peer asks out loud, the agent answers out loud.

The question is spoken by espeak-ng (a Klatt voice, which PocketSphinx decodes reliably
against the agent's grammar), pushed into the room through an AudioSource; the agent's
transcript must hold the key words and its spoken reply must reach the asking peer as
audio with speech energy in it.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
from typing import Any

import pytest

from metered_realtime import Data, MeteredPeer, PeerJoined, Track
from metered_realtime.demo import analyse_pcm
from metered_realtime.media import AudioSink, AudioSource

pytest.importorskip("pocketsphinx")
if shutil.which("espeak-ng") is None:
    pytest.skip("espeak-ng is not installed", allow_module_level=True)

QUESTION = "hello what time is it"
QUESTION_VOICE = "en-us+klatt2"


def espeak_pcm(text: str, voice: str, speed: int = 150) -> tuple[bytes, int]:
    import io
    import wave

    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=20,
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        return w.readframes(w.getnframes()), w.getframerate()


async def read_seconds(sink: AudioSink, seconds: float, timeout: float) -> bytes:
    async def run() -> bytes:
        buf = bytearray()
        async for chunk in sink:
            buf += chunk
            if len(buf) >= seconds * 32000:
                return bytes(buf)
        raise AssertionError("the agent's track ended")

    return await asyncio.wait_for(run(), timeout)


@pytest.mark.timeout(90)
async def test_agent_answers_a_spoken_question_out_loud(server: Any, run_example: Any) -> None:
    pcm, rate = espeak_pcm(QUESTION, QUESTION_VOICE)
    async with run_example(
        "ai_voice_agent.py", "--url", server.url, "--key", server.api_key, "--room", "voice"
    ) as agent:
        agent_id = (await agent.expect(r"joined room 'voice' as (\S+); listening", 30)).group(1)

        peer = MeteredPeer(api_key=server.api_key, url=server.url)
        mouth = AudioSource(input_rate=rate, input_layout="mono")
        peer.add_track(mouth, metadata={"role": "microphone"})
        loop = asyncio.get_running_loop()
        agent_track: asyncio.Future[Any] = loop.create_future()
        reply: asyncio.Future[Any] = loop.create_future()

        def on_peer(ev: PeerJoined) -> None:
            if ev.peer.id == agent_id:
                ev.peer.on(
                    Track,
                    lambda t: (
                        t.track.kind == "audio"
                        and not agent_track.done()
                        and agent_track.set_result(t.track)
                    ),
                )

        def on_data(ev: Data) -> None:
            if isinstance(ev.data, dict) and ev.data.get("type") == "reply" and not reply.done():
                reply.set_result(ev.data)

        peer.on(PeerJoined, on_peer)
        peer.on(Data, on_data)
        try:
            await asyncio.wait_for(peer.join("voice"), 10)
            track = await asyncio.wait_for(agent_track, 20)
            assert track.kind == "audio"
            await agent.expect(r"listening to ", 20)  # the agent got our track too
            async with AudioSink(track, rate=16000) as ears:
                # Before the question: the agent's track carries silence.
                before, _ = analyse_pcm(await read_seconds(ears, 0.5, 10), 16000)
                assert before < 0.001

                await mouth.push(pcm)
                heard = (await agent.expect(r"transcript from \S+: '([^']*)'", 30)).group(1)
                assert "hello" in heard and "time" in heard, agent.output
                answer = await asyncio.wait_for(reply, 10)
                assert answer["source"] == "speech"
                assert "time" in answer["heard"]
                assert answer["reply"].startswith("Hello! It is ")
                await agent.expect(r"speaking \d", 20)

                # The spoken reply arrives as audio with speech energy.
                loudest = 0.0
                for _ in range(40):  # up to 4 s of 100 ms windows
                    level, _ = analyse_pcm(await read_seconds(ears, 0.1, 10), 16000)
                    loudest = max(loudest, level)
                    if loudest > 0.02:
                        break
                assert 20 * math.log10(max(loudest, 1e-9)) > -34, loudest
        finally:
            mouth.end()
            await asyncio.wait_for(peer.close(), 10)
        assert await agent.interrupt() == 0
        assert "agent: stopped" in agent.output
