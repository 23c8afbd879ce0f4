#!/usr/bin/env python3
"""A voice agent: joins a room, listens to every peer, answers out loud.

Pipeline, per remote audio track::

    AudioSink (16 kHz mono PCM) -> EnergyVAD (cuts utterances) -> speech-to-text
        -> respond() -> text-to-speech -> AudioSource (the agent's voice track)

Everything runs offline by default:

* speech-to-text: PocketSphinx (``pip install pocketsphinx``; its wheel carries an English
  model). By default it decodes against a small grammar built from the phrases
  ``respond()`` understands, which is far more reliable than open dictation for a
  command-style agent; ``--stt open`` uses the wheel's general English language model.
* the "brain": :func:`respond`, a few rules. Replace that one function with an LLM call.
* text-to-speech: the ``espeak-ng`` program (``apt-get install espeak-ng``).

The voice-activity detector is energy based: 20 ms frames louder than ``--vad-threshold``
dBFS start an utterance after 60 ms and end it after ``--vad-hangover`` seconds below the
threshold; 300 ms of audio before the start is kept. That suits a quiet line (headset,
synthetic audio); for noisy rooms plug in a model-based VAD (e.g. webrtcvad or Silero)
with the same ``feed()`` interface. The agent is half-duplex: it ignores what it hears
while its own reply is still playing.

Text works too: a data message ``{"text": "..."}`` sent to the agent (broadcast or
direct) is answered with ``{"type": "reply", ...}`` and spoken.

Run it against the embedded server (prints the URL and key for other clients)::

    python examples/ai_voice_agent.py --server --browser

and share your microphone from the printed page, or against any server::

    python examples/ai_voice_agent.py --url ws://localhost:8080 --key pk_...
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import datetime
import io
import math
import random
import re
import shutil
import signal
import sys
import wave
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from metered_realtime import Data, MeteredPeer, PeerJoined, PeerLeft, Track
from metered_realtime.demo import (
    BackgroundTasks,
    add_connection_arguments,
    example_connection,
    loopback_requested,
    restrict_ice_to_loopback,
    serve_page,
)
from metered_realtime.errors import MeteredRealtimeError
from metered_realtime.media import AudioSink, AudioSource

RATE = 16000  # what the speech-to-text wants
FRAME = RATE // 50  # samples per 20 ms


def log(text: str) -> None:
    print(f"agent: {text}", flush=True)


# --- voice-activity detection ---------------------------------------------------------


def frame_dbfs(pcm: bytes) -> float:
    """Level of mono s16 PCM in dBFS (-120 for digital silence)."""
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return -120.0
    rms = math.sqrt(sum(s * s for s in samples) / len(samples)) / 32768.0
    return 20 * math.log10(rms) if rms > 1e-6 else -120.0


class EnergyVAD:
    """Cuts a PCM stream (mono s16 at ``rate``) into utterances by frame energy."""

    def __init__(
        self,
        *,
        rate: int = RATE,
        threshold_db: float = -45.0,
        start_ms: int = 60,
        hangover_s: float = 0.6,
        preroll_s: float = 0.3,
        min_s: float = 0.3,
        max_s: float = 15.0,
    ) -> None:
        self.frame_bytes = 2 * rate // 50
        self.threshold_db = threshold_db
        self.start_frames = max(1, start_ms // 20)
        self.hangover_frames = max(1, round(hangover_s * 50))
        self.min_frames = round(min_s * 50)
        self.max_frames = round(max_s * 50)
        self.preroll: deque[bytes] = deque(maxlen=max(1, round(preroll_s * 50)))
        self.reset()

    def reset(self) -> None:
        self.pending = b""
        self.preroll.clear()
        self.speech: list[bytes] = []
        self.loud_run = 0
        self.quiet_run = 0
        self.active = False

    def feed(self, pcm: bytes) -> list[bytes]:
        """Add audio; returns the utterances that ended within it."""
        done: list[bytes] = []
        self.pending += pcm
        while len(self.pending) >= self.frame_bytes:
            frame, self.pending = self.pending[: self.frame_bytes], self.pending[self.frame_bytes :]
            loud = frame_dbfs(frame) >= self.threshold_db
            if not self.active:
                self.preroll.append(frame)
                self.loud_run = self.loud_run + 1 if loud else 0
                if self.loud_run >= self.start_frames:
                    self.active, self.quiet_run = True, 0
                    self.speech = list(self.preroll)
                    self.preroll.clear()
                continue
            self.speech.append(frame)
            self.quiet_run = 0 if loud else self.quiet_run + 1
            if self.quiet_run >= self.hangover_frames or len(self.speech) >= self.max_frames:
                if len(self.speech) - self.quiet_run >= self.min_frames:
                    done.append(b"".join(self.speech))
                self.active, self.speech, self.loud_run = False, [], 0
        return done


# --- the brain: replace respond() with an LLM call ------------------------------------

GREETINGS = ("hello", "hi", "hey", "good morning", "good afternoon", "good evening")
JOKES = (
    "I would tell you a joke about UDP, but you might not get it.",
    "There are ten kinds of people: those who understand binary and those who do not.",
)


def _time_now() -> str:
    now = datetime.datetime.now()
    return f"It is {now.strftime('%I').lstrip('0')} {now.minute:02d} {now.strftime('%p')}."


def _date_now() -> str:
    return datetime.date.today().strftime("Today is %A, %B %d.")


#: (phrases, answer). The phrases also make up the speech-to-text grammar.
RULES: list[tuple[tuple[str, ...], Callable[[], str]]] = [
    (("what time is it", "what is the time", "tell me the time"), _time_now),
    (("what day is it", "what is the date"), _date_now),
    (("what is your name", "who are you"), lambda: "I am the metered realtime voice agent."),
    (("how are you",), lambda: "I am fine, thank you for asking."),
    (("tell me a joke",), lambda: random.choice(JOKES)),
    (("thank you", "thanks"), lambda: "You are welcome."),
    (("goodbye", "bye"), lambda: "Goodbye, talk to you soon."),
]


async def respond(transcript: str) -> str:
    """The agent's reply to what a peer said (empty string: say nothing).

    This is the one function to replace with a language model, for example::

        async def respond(transcript: str) -> str:
            result = await llm_client.chat(messages=[{"role": "user", "content": transcript}])
            return result.text

    (then run the agent with ``--stt open``: the default grammar only knows the phrases
    of the rules below.)
    """
    text = " ".join(re.findall(r"[a-z']+", transcript.lower()))
    if not text:
        return "Sorry, I did not catch that."
    answers = [answer() for phrases, answer in RULES if any(p in text for p in phrases)]
    greeted = any(re.search(rf"\b{g}\b", text) for g in GREETINGS)
    if greeted:
        answers.insert(0, "Hello!")
    if not answers:
        return f"You said: {text}. Ask me what time it is."
    return " ".join(answers)


def grammar() -> str:
    """A JSGF grammar: an optional greeting, then any of the rules' phrases."""
    phrases = sorted({p for ps, _ in RULES for p in ps})
    return (
        "#JSGF V1.0;\ngrammar agent;\n"
        f"<greeting> = {' | '.join(GREETINGS)};\n"
        f"<request> = {' | '.join(phrases)};\n"
        "public <utterance> = <greeting> [<request>] | <request>;\n"
    )


# --- speech-to-text and text-to-speech (pluggable) ------------------------------------


class SpeechToText(Protocol):
    async def transcribe(self, pcm: bytes, rate: int) -> str: ...


class TextToSpeech(Protocol):
    rate: int  # sample rate of the mono s16 PCM that synthesize() returns

    async def synthesize(self, text: str) -> bytes: ...


class PocketSphinxSTT:
    """PocketSphinx, offline. ``jsgf``: decode against that grammar (None: open dictation)."""

    def __init__(self, jsgf: str | None = None) -> None:
        from pocketsphinx import Decoder  # type: ignore[import-untyped]

        self._decoder = Decoder(samprate=RATE, loglevel="FATAL")
        if jsgf is not None:
            self._decoder.add_jsgf_string("agent", jsgf)
            self._decoder.activate_search("agent")
        self._lock = asyncio.Lock()

    def _decode(self, pcm: bytes) -> str:
        silence = bytes(2 * RATE // 4)  # the decoder wants some silence around speech
        self._decoder.start_utt()
        self._decoder.process_raw(silence + pcm + silence, full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return str(hyp.hypstr) if hyp is not None else ""

    async def transcribe(self, pcm: bytes, rate: int) -> str:
        if rate != RATE:
            raise ValueError(f"PocketSphinxSTT wants {RATE} Hz audio")
        async with self._lock:  # one decoder, one utterance at a time
            return await asyncio.to_thread(self._decode, pcm)


class EspeakTTS:
    """The ``espeak-ng`` program: text in, 22050 Hz mono PCM out."""

    rate = 22050

    def __init__(self, voice: str = "en-us", speed: int = 160) -> None:
        self.program = shutil.which("espeak-ng") or shutil.which("espeak")
        if self.program is None:
            raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
        self.voice, self.speed = voice, speed

    async def synthesize(self, text: str) -> bytes:
        assert self.program is not None
        proc = await asyncio.create_subprocess_exec(
            self.program,
            "-v",
            self.voice,
            "-s",
            str(self.speed),
            "--stdout",
            "--",
            text,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        if proc.returncode != 0:
            raise RuntimeError(f"espeak-ng failed: {err.decode(errors='replace').strip()}")
        with wave.open(io.BytesIO(out)) as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise RuntimeError("espeak-ng produced an unexpected WAV format")
            self.rate = wav.getframerate()
            return bytes(wav.readframes(wav.getnframes()))


# --- the agent ------------------------------------------------------------------------


class VoiceAgent:
    """Listens to every remote audio track of ``peer`` and answers through ``voice``."""

    def __init__(
        self,
        peer: MeteredPeer,
        stt: SpeechToText,
        tts: TextToSpeech,
        *,
        vad: Callable[[], EnergyVAD] = EnergyVAD,
    ) -> None:
        self.peer, self.stt, self.tts, self.make_vad = peer, stt, tts, vad
        self.voice = AudioSource(input_rate=tts.rate, input_layout="mono")
        self.tasks = BackgroundTasks()
        self.speak_lock = asyncio.Lock()
        peer.add_track(self.voice, metadata={"role": "agent", "label": "voice agent"})
        peer.on(PeerJoined, self._on_peer)
        peer.on(PeerLeft, lambda ev: log(f"peer left: {ev.peer.id}"))
        peer.on(Data, self._on_data)

    def _on_peer(self, ev: PeerJoined) -> None:
        remote = ev.peer
        log(f"peer joined: {remote.id}")

        def on_track(t: Track) -> None:
            if t.track.kind == "audio":
                log(f"listening to {remote.id}")
                self.tasks.spawn(self.listen(remote.id, t.track))

        remote.on(Track, on_track)

    def _on_data(self, ev: Data) -> None:
        if isinstance(ev.data, dict) and isinstance(ev.data.get("text"), str):
            self.tasks.spawn(self.answer(ev.sender_peer_id, ev.data["text"], source="text"))

    async def listen(self, peer_id: str, track: Any) -> None:
        vad = self.make_vad()
        async with AudioSink(track, rate=RATE, layout="mono") as sink:
            async for chunk in sink:  # ends when the track ends
                if self.voice.buffered_seconds > 0 or self.speak_lock.locked():
                    vad.reset()  # half-duplex: do not listen to ourselves
                    continue
                for utterance in vad.feed(chunk):
                    log(f"utterance from {peer_id}: {len(utterance) / (2 * RATE):.2f} s")
                    self.tasks.spawn(self.hear(peer_id, utterance))

    async def hear(self, peer_id: str, pcm: bytes) -> None:
        transcript = await self.stt.transcribe(pcm, RATE)
        log(f"transcript from {peer_id}: {transcript!r}")
        await self.answer(peer_id, transcript, source="speech")

    async def answer(self, peer_id: str, text: str, *, source: str) -> None:
        reply = await respond(text)
        log(f"reply to {peer_id}: {reply!r}")
        try:
            await self.peer.send_to(
                peer_id, {"type": "reply", "source": source, "heard": text, "reply": reply}
            )
        except MeteredRealtimeError as err:  # the peer may have left
            log(f"reply to {peer_id} not delivered: {err}")
        if reply:
            await self.say(reply)

    async def say(self, text: str) -> None:
        async with self.speak_lock:
            pcm = await self.tts.synthesize(text)
            await self.voice.push(pcm)
            log(f"speaking {len(pcm) / (2 * self.tts.rate):.2f} s")

    async def close(self) -> None:
        await self.tasks.aclose()
        self.voice.end()


# --- command line ---------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    stt: SpeechToText = PocketSphinxSTT(grammar() if args.stt == "grammar" else None)
    tts = EspeakTTS(voice=args.voice, speed=args.speed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with example_connection(args, log) as (url, key):
        peer = MeteredPeer(api_key=key, url=url)
        agent = VoiceAgent(
            peer,
            stt,
            tts,
            vad=lambda: EnergyVAD(threshold_db=args.vad_threshold, hangover_s=args.vad_hangover),
        )
        try:
            await peer.join(args.room)
            log(f"joined room {args.room!r} as {peer.peer_id}; listening")
            async with contextlib.AsyncExitStack() as stack:
                if args.browser:
                    page = await stack.enter_async_context(
                        serve_page(url, key, args.room, intro=BROWSER_INTRO)
                    )
                    log(f"talk to the agent from {page}")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.duration or None)
        finally:
            await agent.close()
            await peer.close()
    log("stopped")
    return 0


BROWSER_INTRO = (
    "Join, press <i>share microphone</i> and <i>unmute</i>, then ask the agent "
    "<q>what time is it</q> or <q>tell me a joke</q>."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_connection_arguments(parser)
    parser.add_argument("--browser", action="store_true", help="serve a page to talk from")
    parser.add_argument("--loopback", action="store_true", help="keep WebRTC on 127.0.0.1")
    parser.add_argument("--room", default="agent")
    parser.add_argument("--stt", choices=("grammar", "open"), default="grammar")
    parser.add_argument("--voice", default="en-us", help="espeak-ng voice")
    parser.add_argument("--speed", type=int, default=160, help="espeak-ng words per minute")
    parser.add_argument("--vad-threshold", type=float, default=-45.0, help="dBFS")
    parser.add_argument("--vad-hangover", type=float, default=0.6, help="seconds")
    parser.add_argument("--duration", type=float, default=0, help="stop after N s (0: Ctrl-C)")
    args = parser.parse_args(argv)
    if loopback_requested(args.loopback):
        restrict_ice_to_loopback()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
