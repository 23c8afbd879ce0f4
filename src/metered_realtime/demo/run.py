"""The demo itself: the embedded server, two Python peers, data both ways and a tone.

It joins two :class:`~metered_realtime.peer.MeteredPeer` objects ("alice" and "bob") to one
room, sends data both ways (broadcast, direct, and over a WebRTC data channel), streams a
:class:`~metered_realtime.media.ToneSource` from alice to bob, measures it with an
:class:`~metered_realtime.media.AudioSink`, prints every event as it happens and a summary.
Any failing step ends it with the step's name; the whole run is bounded by ``timeout``.
With ``browser`` it then keeps both peers in the room and serves a page from which a person
joins with the JavaScript SDK, until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import statistics
import sys
import time
from typing import Any, TextIO

from ..errors import MeteredRealtimeError
from .embedded import EmbeddedServer, embedded_server
from .loopback import loopback_requested, restrict_ice_to_loopback
from .page import JS_SDK_INSTALL_HINT, find_js_sdk, serve_page
from .pcm import analyse_pcm, dbfs
from .tasks import BackgroundTasks

log = logging.getLogger("metered_realtime.demo")


class DemoError(Exception):
    """A demo step failed; ``step`` names it."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step


@dataclasses.dataclass
class DemoOptions:
    """Settings of one demo run (the command-line flags)."""

    host: str = "127.0.0.1"
    port: int = 0
    db: str | None = None
    room: str = "demo"
    loopback: bool = False
    browser: bool = False
    http_port: int = 0
    sdk_js: str | None = None
    timeout: float = 60.0
    tone: float = 440.0
    pings: int = 10
    listen_seconds: float = 1.0


@dataclasses.dataclass
class _Results:
    peers: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> peer id
    broadcast: list[str] = dataclasses.field(default_factory=list)
    direct: list[str] = dataclasses.field(default_factory=list)
    channel_rtts: list[float] = dataclasses.field(default_factory=list)
    server_rtts: list[float] = dataclasses.field(default_factory=list)
    level: float = 0.0
    frequency: float | None = None
    connect_seconds: float = 0.0


class _Printer:
    """Timestamped event lines on ``out``."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._t0 = time.monotonic()
        self.names: dict[str, str] = {}

    def name(self, peer_id: str | None) -> str:
        if peer_id is None:
            return "?"
        return self.names.get(peer_id, f"browser:{peer_id[-6:]}")

    def __call__(self, who: str, text: str) -> None:
        elapsed = time.monotonic() - self._t0
        print(f"{elapsed:8.3f}s  {who:<8} {text}", file=self._out, flush=True)

    def line(self, text: str = "") -> None:
        print(text, file=self._out, flush=True)


class _Waiter:
    """Futures resolved by event handlers, awaited with a step timeout."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[Any]] = {}

    def future(self, key: str) -> asyncio.Future[Any]:
        fut = self._futures.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._futures[key] = fut
        return fut

    def resolve(self, key: str, value: Any = None) -> None:
        fut = self.future(key)
        if not fut.done():
            fut.set_result(value)

    async def wait(self, key: str, step: str, what: str, timeout: float) -> Any:
        try:
            return await asyncio.wait_for(asyncio.shield(self.future(key)), timeout)
        except asyncio.TimeoutError:
            raise DemoError(step, f"no {what} within {timeout:g} s") from None


class _Demo:
    def __init__(self, opts: DemoOptions, out: TextIO) -> None:
        self.opts = opts
        self.say = _Printer(out)
        self.step = "start"
        self.results = _Results()
        self.waiter = _Waiter()
        self.peers: dict[str, Any] = {}
        self.server: EmbeddedServer | None = None
        self._pending_pings: dict[str, float] = {}
        self._browser_sinks: list[Any] = []
        self.tasks = BackgroundTasks()
        self.finished = False

    # -- event wiring ----------------------------------------------------------

    def _wire(self, name: str, peer: Any) -> None:
        from ..events import Data, Joined, Left, PeerJoined, PeerLeft

        say = self.say

        def on_joined(ev: Joined) -> None:
            say.names[ev.peer_id] = name
            say(name, f"joined room {ev.channel!r} as {ev.peer_id}")

        def on_left(ev: Left) -> None:
            say(name, f"left room {ev.channel!r}" + (f" ({ev.reason})" if ev.reason else ""))

        def on_peer_joined(ev: PeerJoined) -> None:
            say(name, f"peer joined: {say.name(ev.peer.id)} ({ev.peer.id})")
            self._wire_remote(name, ev.peer)
            self.waiter.resolve(f"{name} sees {ev.peer.id}", ev.peer)

        def on_peer_left(ev: PeerLeft) -> None:
            say(name, f"peer left: {say.name(ev.peer.id)}")

        def on_data(ev: Data) -> None:
            data = ev.data
            sender = say.name(ev.sender_peer_id)
            if isinstance(data, dict) and data.get("type") == "ping":
                self.tasks.spawn(self._answer_ping(peer, ev.sender_peer_id, data))
                return
            if isinstance(data, dict) and data.get("type") == "pong":
                self._got_pong(str(data.get("id")), self.results.server_rtts)
                return
            say(name, f"data ({ev.kind}) from {sender}: {json.dumps(data)}")
            self.waiter.resolve(f"{name} got {ev.kind} from {ev.sender_peer_id}", data)
            if self.opts.browser and sender.startswith("browser:") and name == "bob":
                self.tasks.spawn(self._echo_browser(peer, ev.sender_peer_id, data))

        peer.on(Joined, on_joined)
        peer.on(Left, on_left)
        peer.on(PeerJoined, on_peer_joined)
        peer.on(PeerLeft, on_peer_left)
        peer.on(Data, on_data)

    def _wire_remote(self, name: str, remote: Any) -> None:
        from ..events import DataChannelOpened, StateChange, Track

        say = self.say
        other = say.name(remote.id)

        def on_state(ev: StateChange) -> None:
            if not self.finished:  # teardown transitions are noise after the summary
                say(name, f"connection to {other}: {ev.from_} -> {ev.to}")
            if ev.to == "connected":
                self.waiter.resolve(f"{name} connected to {remote.id}")

        def on_track(ev: Track) -> None:
            meta = f" {json.dumps(ev.metadata)}" if ev.metadata else ""
            say(name, f"track from {other}: {ev.track.kind}{meta}")
            if ev.track.kind == "audio":
                self.waiter.resolve(f"{name} audio from {remote.id}", ev.track)
                if other.startswith("browser:"):
                    self.tasks.spawn(self._meter_browser_audio(name, other, ev.track))

        def on_channel(ev: DataChannelOpened) -> None:
            say(name, f"data channel {ev.channel.label!r} opened by {other}")
            self.waiter.resolve(f"{name} channel from {remote.id}", ev.channel)
            if other.startswith("browser:"):
                self._wire_browser_channel(name, other, ev.channel)

        remote.on(StateChange, on_state)
        remote.on(Track, on_track)
        remote.on(DataChannelOpened, on_channel)

    async def _answer_ping(self, peer: Any, sender: str, data: dict[str, Any]) -> None:
        await _send_to(peer, sender, {"type": "pong", "id": data.get("id")})

    def _got_pong(self, ping_id: str, rtts: list[float]) -> None:
        sent = self._pending_pings.pop(ping_id, None)
        if sent is not None:
            rtts.append(time.monotonic() - sent)
            self.waiter.resolve(f"pong {ping_id}")

    # -- steps -------------------------------------------------------------------

    async def run(self) -> None:
        from ..events import DCOpen
        from ..media import AudioSink, ToneSource
        from ..peer import DataChannel, MeteredPeer

        opts, say, res, waiter = self.opts, self.say, self.results, self.waiter
        self.step = "server"
        self.server = await self._stack.enter_async_context(
            embedded_server(host=opts.host, port=opts.port, db=opts.db)
        )
        srv = self.server
        say("server", f"listening on {srv.url}/v1 (app {srv.app_id})")

        self.step = "join"
        for name in ("alice", "bob"):
            peer = MeteredPeer(api_key=srv.api_key, url=srv.url)
            self.peers[name] = peer
            self._stack.push_async_callback(self._close_peer, peer)
            self._wire(name, peer)
        alice, bob = self.peers["alice"], self.peers["bob"]
        for name, peer in self.peers.items():
            await asyncio.wait_for(peer.join(opts.room), 10)
            res.peers[name] = peer.peer_id
        rb = await waiter.wait(f"alice sees {bob.peer_id}", "join", "PeerJoined for bob", 10)
        ra = await waiter.wait(f"bob sees {alice.peer_id}", "join", "PeerJoined for alice", 10)

        self.step = "broadcast"
        await alice.send({"text": "hello room, this is alice"})
        await waiter.wait(f"bob got broadcast from {alice.peer_id}", self.step, "broadcast", 5)
        await bob.send({"text": "hi everyone, bob here"})
        await waiter.wait(f"alice got broadcast from {bob.peer_id}", self.step, "broadcast", 5)
        res.broadcast = ["alice -> bob", "bob -> alice"]

        self.step = "direct"
        await alice.send_to(bob.peer_id, {"text": "psst bob, a direct message"})
        await waiter.wait(f"bob got direct from {alice.peer_id}", self.step, "direct message", 5)
        await ra.send({"text": "got it alice"})
        await waiter.wait(f"alice got direct from {bob.peer_id}", self.step, "direct message", 5)
        res.direct = ["alice -> bob", "bob -> alice"]

        self.step = "ping (server)"
        for i in range(opts.pings):
            ping_id = f"s{i}"
            self._pending_pings[ping_id] = time.monotonic()
            await alice.send_to(bob.peer_id, {"type": "ping", "id": ping_id})
            await waiter.wait(f"pong {ping_id}", self.step, "pong", 5)
        say("alice", f"{opts.pings} pings over the server: {_ms(res.server_rtts)}")

        self.step = "media"
        started = time.monotonic()
        tone = ToneSource(opts.tone, amplitude=0.3)
        self._stack.callback(tone.stop)
        alice.add_track(tone, metadata={"role": "tone", "label": f"{opts.tone:g} Hz"})
        track = await waiter.wait(f"bob audio from {alice.peer_id}", self.step, "audio track", 20)
        await waiter.wait(f"alice connected to {bob.peer_id}", self.step, "connection", 20)
        await waiter.wait(f"bob connected to {alice.peer_id}", self.step, "connection", 20)
        res.connect_seconds = time.monotonic() - started

        self.step = "data channel"
        raw = rb.create_data_channel("demo")
        dc_alice = DataChannel(raw)
        self._stack.callback(dc_alice.close)
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if dc_alice.ready_state == "open":
            opened.set_result(None)
        else:
            dc_alice.once(DCOpen, lambda _ev: None if opened.done() else opened.set_result(None))
        remote_raw = await waiter.wait(
            f"bob channel from {alice.peer_id}", self.step, "channel", 15
        )
        dc_bob = DataChannel(remote_raw)
        self._stack.callback(dc_bob.close)
        try:
            await asyncio.wait_for(asyncio.shield(opened), 10)
        except asyncio.TimeoutError:
            raise DemoError(self.step, "the data channel did not open within 10 s") from None
        await self._channel_ping_pong(dc_alice, dc_bob)

        self.step = "audio"
        async with AudioSink(track, rate=16000) as sink:
            pcm = await self._listen(sink, opts.listen_seconds)
        res.level, res.frequency = analyse_pcm(pcm, 16000)
        freq = "none" if res.frequency is None else f"{res.frequency:.1f} Hz"
        say("bob", f"heard {len(pcm) / 32000:.2f} s of audio: {dbfs(res.level):.1f} dBFS, {freq}")
        if res.level < 0.01:
            raise DemoError(self.step, f"the audio received is silent (rms {res.level:.4f})")
        if res.frequency is None or abs(res.frequency - opts.tone) > 10:
            raise DemoError(self.step, f"expected a {opts.tone:g} Hz tone, measured {freq}")

    async def _listen(self, sink: Any, seconds: float) -> bytes:
        # Skip the first 0.3 s (jitter buffer fill, codec warm-up), then keep `seconds`.
        skip, keep = int(0.3 * 32000), int(seconds * 32000)
        buf = bytearray()
        async for chunk in sink:
            buf += chunk
            if len(buf) >= skip + keep:
                break
        else:
            raise DemoError(self.step, "the audio track ended early")
        return bytes(buf[skip : skip + keep])

    async def _channel_ping_pong(self, dc_alice: Any, dc_bob: Any) -> None:
        from ..events import DCMessage

        say, res, waiter = self.say, self.results, self.waiter

        def bob_echo(ev: DCMessage) -> None:
            if isinstance(ev.data, str) and ev.data.startswith("ping "):
                self.tasks.spawn(dc_bob.send("pong " + ev.data[5:]))
            else:
                say("bob", f"data channel message: {ev.data!r}")
                waiter.resolve("bob dc text", ev.data)

        def alice_hears(ev: DCMessage) -> None:
            if isinstance(ev.data, str) and ev.data.startswith("pong "):
                self._got_pong(ev.data[5:], res.channel_rtts)
            else:
                say("alice", f"data channel message: {ev.data!r}")
                waiter.resolve("alice dc text", ev.data)

        dc_bob.on(DCMessage, bob_echo)
        dc_alice.on(DCMessage, alice_hears)
        await dc_alice.send("hello bob, over the data channel")
        await waiter.wait("bob dc text", self.step, "data channel message", 5)
        await dc_bob.send(b"binary hello from bob")
        await waiter.wait("alice dc text", self.step, "data channel message", 5)
        for i in range(self.opts.pings):
            ping_id = f"c{i}"
            self._pending_pings[ping_id] = time.monotonic()
            await dc_alice.send(f"ping {ping_id}")
            await waiter.wait(f"pong {ping_id}", self.step, "data channel pong", 5)
        say("alice", f"{self.opts.pings} pings over the data channel: {_ms(res.channel_rtts)}")

    def summary(self) -> None:
        res, say, opts = self.results, self.say, self.opts
        freq = "none" if res.frequency is None else f"{res.frequency:.1f} Hz"
        say.line()
        say.line("summary")
        peers = ", ".join(f"{name} {pid}" for name, pid in res.peers.items())
        say.line(f"  peers:       {len(res.peers)} in room {opts.room!r} ({peers})")
        say.line(f"  broadcast:   {', '.join(res.broadcast)}")
        say.line(f"  direct:      {', '.join(res.direct)}")
        say.line(f"  webrtc:      connected in {res.connect_seconds:.2f} s")
        say.line(f"  rtt:         data channel {_ms(res.channel_rtts)}")
        say.line(f"               server relay {_ms(res.server_rtts)}")
        say.line(
            f"  audio:       {opts.tone:g} Hz tone sent, received level {dbfs(res.level):.1f} dBFS"
            f" (rms {res.level:.3f}), dominant frequency {freq}"
        )
        say.line("result: ok")

    async def _close_peer(self, peer: Any) -> None:
        try:
            await asyncio.wait_for(peer.close(), 5)
        except (asyncio.TimeoutError, MeteredRealtimeError, OSError) as err:
            log.debug("closing peer %s: %r", peer.peer_id, err)

    # -- browser mode ----------------------------------------------------------

    async def _echo_browser(self, peer: Any, sender: str, data: Any) -> None:
        await _send_to(peer, sender, {"echo": data, "from": "bob"})

    def _wire_browser_channel(self, name: str, other: str, raw: Any) -> None:
        from ..events import DCMessage
        from ..peer import DataChannel

        dc = DataChannel(raw)

        def on_message(ev: DCMessage) -> None:
            self.say(name, f"data channel message from {other}: {ev.data!r}")
            self.tasks.spawn(dc.send(ev.data if isinstance(ev.data, bytes) else f"echo: {ev.data}"))

        dc.on(DCMessage, on_message)

    async def _meter_browser_audio(self, name: str, other: str, track: Any) -> None:
        from ..media import AudioSink

        async with AudioSink(track, rate=16000) as sink:
            buf = bytearray()
            async for chunk in sink:
                buf += chunk
                if len(buf) >= 2 * 32000:
                    level, freq = analyse_pcm(bytes(buf), 16000)
                    shown = "" if freq is None else f", dominant {freq:.0f} Hz"
                    self.say(name, f"audio from {other}: {dbfs(level):.1f} dBFS{shown}")
                    buf.clear()

    async def serve_browser(self, stop: asyncio.Event) -> None:
        assert self.server is not None
        srv, opts = self.server, self.opts
        async with serve_page(
            srv.url, srv.api_key, opts.room, port=opts.http_port, sdk_js=opts.sdk_js
        ) as page:
            self.say.line()
            self.say.line(f"browser: open {page} to join room {opts.room!r}")
            if find_js_sdk(opts.sdk_js) is None:
                self.say.line(f"browser: {JS_SDK_INSTALL_HINT}")
            if loopback_requested(opts.loopback):
                self.say.line(
                    "browser: --loopback is on; a browser tab can only connect over 127.0.0.1"
                )
            self.say.line("browser: alice keeps playing the tone and bob echoes; Ctrl-C to stop")
            await stop.wait()

    async def main(self) -> int:
        opts = self.opts
        undo = restrict_ice_to_loopback() if loopback_requested(opts.loopback) else None
        self._stack = contextlib.AsyncExitStack()
        try:
            async with self._stack:
                try:
                    await asyncio.wait_for(self.run(), opts.timeout)
                except asyncio.TimeoutError:
                    limit = f"the demo passed its {opts.timeout:g} s limit"
                    raise DemoError(self.step, limit) from None
                except DemoError:
                    raise
                except Exception as err:
                    raise DemoError(self.step, f"{type(err).__name__}: {err}") from err
                self.summary()
                self.finished = not opts.browser
                if opts.browser:
                    stop = asyncio.Event()
                    loop = asyncio.get_running_loop()
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        with contextlib.suppress(NotImplementedError, RuntimeError):
                            loop.add_signal_handler(sig, stop.set)
                    await self.serve_browser(stop)
                    self.say.line("stopping")
                    self.finished = True
                await self.tasks.aclose()
        except DemoError as err:
            detail = str(err).removeprefix(f"{err.step}: ")
            self.say.line(f"demo failed during step {err.step!r}: {detail}")
            self.say.line("result: failed")
            return 1
        finally:
            if undo is not None:
                undo()
        return 0


async def _send_to(peer: Any, target: str, data: Any) -> None:
    """A direct message that may find the target gone: a refusal is only logged."""
    try:
        await peer.send_to(target, data)
    except MeteredRealtimeError as err:
        log.debug("peer %s: direct message to %s failed: %r", peer.peer_id, target, err)


def _ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    ms = [v * 1000 for v in values]
    return (
        f"median {statistics.median(ms):.2f} ms, min {min(ms):.2f} ms, max {max(ms):.2f} ms "
        f"({len(ms)} pings)"
    )


async def run_demo(opts: DemoOptions, out: TextIO | None = None) -> int:
    """Run the demo; returns the process exit status (0 when every step passed)."""
    try:
        import aiortc  # noqa: F401
        import av  # noqa: F401
    except ImportError as err:
        print(
            f"the demo needs the webrtc extra (pip install 'metered-realtime[webrtc,server]'): "
            f"{err}",
            file=sys.stderr,
        )
        return 2
    return await _Demo(opts, out if out is not None else sys.stdout).main()
