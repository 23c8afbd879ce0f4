"""``metered-realtime demo``: the embedded server, two Python peers, data and a tone.

The demo starts the server in this process (a temporary SQLite store unless ``--db``),
joins two :class:`~metered_realtime.peer.MeteredPeer` objects ("alice" and "bob") to one
room, sends data both ways (broadcast, direct, and over a WebRTC data channel), streams a
:class:`~metered_realtime.media.ToneSource` from alice to bob, measures it with an
:class:`~metered_realtime.media.AudioSink`, prints every event as it happens and a summary,
and exits 0. Any failing step ends it with a non-zero status and the step's name; the whole
run is bounded by ``--timeout``.

``--browser`` then keeps both peers in the room and serves a page on
``http://127.0.0.1:<port>/`` from which a person can join the same room with the
JavaScript SDK, until Ctrl-C.

This module also holds two helpers the examples under ``examples/`` share:
:func:`embedded_server` (a server plus an app and a key, for a self-contained run) and
:func:`restrict_ice_to_loopback` (keep WebRTC traffic on 127.0.0.1, for tests and CI).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import dataclasses
import html
import itertools
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TextIO

#: Setting this environment variable to 1 has the effect of ``--loopback``.
LOOPBACK_ENV = "METERED_REALTIME_LOOPBACK"
#: Where the JavaScript SDK's UMD build sits once ``npm install`` ran in tests/interop.
UMD_RELATIVE = Path("tests/interop/node_modules/@metered-ca/realtime/dist/index.umd.js")
JS_SDK_INSTALL_HINT = (
    "the JavaScript SDK is not installed: run `npm install` in tests/interop "
    "(or `npm install @metered-ca/realtime` anywhere and pass --sdk-js "
    "node_modules/@metered-ca/realtime/dist/index.umd.js)"
)

__all__ = [
    "LOOPBACK_ENV",
    "DemoError",
    "DemoOptions",
    "EmbeddedServer",
    "add_connection_arguments",
    "analyse_pcm",
    "embedded_server",
    "example_connection",
    "find_js_sdk",
    "loopback_requested",
    "main",
    "restrict_ice_to_loopback",
    "run_demo",
    "serve_page",
]


# --- shared helpers ---------------------------------------------------------------


def loopback_requested(flag: bool = False) -> bool:
    """True when ``flag`` is set or the ``METERED_REALTIME_LOOPBACK`` variable is 1/true/yes."""
    return flag or os.environ.get(LOOPBACK_ENV, "").strip().lower() in ("1", "true", "yes")


def restrict_ice_to_loopback() -> Callable[[], None]:
    """Make aiortc gather ICE host candidates on 127.0.0.1 only; returns an undo function.

    aioice normally offers every interface address *except* loopback, so two peers on one
    machine talk over its real network interfaces. Tests and CI must keep traffic on
    127.0.0.1, so this points aioice's host-address discovery at 127.0.0.1 (the same
    technique as the test suite's fixtures). No STUN/TURN server is involved: the SDK
    always passes the server's ICE list, empty for the embedded server. Connections to
    peers elsewhere (a browser on another machine) cannot work while this is active.
    """
    import aioice.ice

    original = aioice.ice.get_host_addresses

    def loopback_only(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
        return ["127.0.0.1"]

    aioice.ice.get_host_addresses = loopback_only

    def undo() -> None:
        if aioice.ice.get_host_addresses is loopback_only:
            aioice.ice.get_host_addresses = original

    return undo


@dataclasses.dataclass
class EmbeddedServer:
    """A running in-process server and an app with an all-permission publishable key."""

    server: Any
    store: Any
    app_id: str
    api_key: str
    secret_key_id: str
    secret: str = dataclasses.field(repr=False)
    host: str = "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.server.port)

    @property
    def url(self) -> str:
        """The origin to pass to the SDKs as ``url=``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"


@contextlib.asynccontextmanager
async def embedded_server(
    *, host: str = "127.0.0.1", port: int = 0, db: str | None = None, app_name: str = "demo"
) -> AsyncIterator[EmbeddedServer]:
    """Start the server in this process; stop it (and delete a temporary store) on exit.

    ``port=0`` picks a free port. Without ``db`` the store is a SQLite file in a temporary
    directory. The app and its keys are created fresh each time (the app is reused by
    name when ``db`` already holds one).
    """
    from .server.app import Server
    from .server.config import ServerConfig
    from .server.store import ALL_PERMISSIONS, Store

    with contextlib.ExitStack() as stack:
        if db is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="metered-realtime-"))
            db = os.path.join(tmp, "store.db")
        store = Store(db)
        stack.callback(store.close)
        app = store.find_app(app_name) or store.create_app(app_name)
        key = store.create_publishable_key(app.id, permissions=ALL_PERMISSIONS, label=app_name)
        secret = store.create_secret_key(app.id)
        server = Server(ServerConfig(host=host, port=port, db=db), store)
        await server.start()
        try:
            yield EmbeddedServer(server, store, app.id, key.key, secret.id, secret.secret, host)
        finally:
            await server.stop()


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection flags every example shares: ``--url``, ``--key`` and ``--server``."""
    parser.add_argument("--url", help="server origin (env METERED_REALTIME_URL)")
    parser.add_argument("--key", help="publishable key (env METERED_REALTIME_KEY)")
    parser.add_argument("--server", action="store_true", help="start an embedded server")


@contextlib.asynccontextmanager
async def example_connection(
    args: argparse.Namespace, log: Callable[[str], None] | None = None
) -> AsyncIterator[tuple[str, str]]:
    """``(url, key)``: an embedded server's with ``--server``, else ``--url``/``--key`` or the
    ``METERED_REALTIME_URL``/``METERED_REALTIME_KEY`` environment (the hosted service by
    default)."""
    if args.server:
        async with embedded_server() as srv:
            line = f"embedded server: url {srv.url} key {srv.api_key}"
            if log is None:
                print(line, flush=True)
            else:
                log(line)
            yield srv.url, srv.api_key
        return
    url = args.url or os.environ.get("METERED_REALTIME_URL") or "wss://rms.metered.ca"
    key = args.key or os.environ.get("METERED_REALTIME_KEY")
    if not key:
        raise SystemExit("pass --key (or set METERED_REALTIME_KEY), or use --server")
    yield url, key


def analyse_pcm(pcm: bytes, rate: int) -> tuple[float, float | None]:
    """(RMS level as a fraction of full scale, dominant frequency in Hz or None).

    ``pcm`` is mono signed 16-bit little-endian. The frequency is the strongest bin of a
    Hann-windowed FFT, refined by parabolic interpolation (numpy), or estimated from zero
    crossings when numpy is not installed (exact enough for a pure tone).
    """
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    n = len(samples)
    if n == 0:
        return 0.0, None
    rms = math.sqrt(sum(s * s for s in samples) / n) / 32768.0
    if rms < 1e-4:
        return rms, None
    try:
        import numpy as np
    except ImportError:
        crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
        return rms, crossings * rate / (2.0 * n)
    x = np.asarray(samples, dtype=np.float64) * np.hanning(n)
    spectrum = np.abs(np.fft.rfft(x))
    spectrum[0] = 0.0
    k = int(np.argmax(spectrum))
    shift = 0.0
    if 0 < k < len(spectrum) - 1:
        a, b, c = spectrum[k - 1], spectrum[k], spectrum[k + 1]
        denom = a - 2 * b + c
        if denom != 0:
            shift = float(0.5 * (a - c) / denom)
    return rms, (k + shift) * rate / n


def dbfs(level: float) -> float:
    """A level (fraction of full scale) in dBFS; -inf for silence."""
    return 20 * math.log10(level) if level > 0 else float("-inf")


def find_js_sdk(explicit: str | None = None) -> Path | None:
    """The JavaScript SDK's UMD build: ``explicit``, else tests/interop's copy, else None.

    The copy is looked up under the current directory and under the source checkout this
    package runs from (an editable install).
    """
    if explicit:
        path = Path(explicit)
        return path if path.is_file() else None
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = root / UMD_RELATIVE
        if candidate.is_file():
            return candidate
    return None


# --- the demo ---------------------------------------------------------------------


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
        self._tasks: set[asyncio.Task[Any]] = set()
        self.finished = False

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- event wiring ----------------------------------------------------------

    def _wire(self, name: str, peer: Any) -> None:
        from .events import Data, Joined, Left, PeerJoined, PeerLeft

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
                self._spawn(self._answer_ping(peer, ev.sender_peer_id, data))
                return
            if isinstance(data, dict) and data.get("type") == "pong":
                self._got_pong(str(data.get("id")), self.results.server_rtts)
                return
            say(name, f"data ({ev.kind}) from {sender}: {json.dumps(data)}")
            self.waiter.resolve(f"{name} got {ev.kind} from {ev.sender_peer_id}", data)
            if self.opts.browser and sender.startswith("browser:") and name == "bob":
                self._spawn(self._echo_browser(peer, ev.sender_peer_id, data))

        peer.on(Joined, on_joined)
        peer.on(Left, on_left)
        peer.on(PeerJoined, on_peer_joined)
        peer.on(PeerLeft, on_peer_left)
        peer.on(Data, on_data)

    def _wire_remote(self, name: str, remote: Any) -> None:
        from .events import DataChannelOpened, StateChange, Track

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
                    self._spawn(self._meter_browser_audio(name, other, ev.track))

        def on_channel(ev: DataChannelOpened) -> None:
            say(name, f"data channel {ev.channel.label!r} opened by {other}")
            self.waiter.resolve(f"{name} channel from {remote.id}", ev.channel)
            if other.startswith("browser:"):
                self._wire_browser_channel(name, other, ev.channel)

        remote.on(StateChange, on_state)
        remote.on(Track, on_track)
        remote.on(DataChannelOpened, on_channel)

    async def _answer_ping(self, peer: Any, sender: str, data: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await peer.send_to(sender, {"type": "pong", "id": data.get("id")})

    def _got_pong(self, ping_id: str, rtts: list[float]) -> None:
        sent = self._pending_pings.pop(ping_id, None)
        if sent is not None:
            rtts.append(time.monotonic() - sent)
            self.waiter.resolve(f"pong {ping_id}")

    # -- steps -------------------------------------------------------------------

    async def run(self) -> None:
        from .events import DCOpen
        from .media import AudioSink, ToneSource
        from .peer import DataChannel, MeteredPeer

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
        from .events import DCMessage

        say, res, waiter = self.say, self.results, self.waiter

        def bob_echo(ev: DCMessage) -> None:
            if isinstance(ev.data, str) and ev.data.startswith("ping "):
                self._spawn(dc_bob.send("pong " + ev.data[5:]))
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
        with contextlib.suppress(Exception):
            await asyncio.wait_for(peer.close(), 5)

    # -- browser mode ----------------------------------------------------------

    async def _echo_browser(self, peer: Any, sender: str, data: Any) -> None:
        with contextlib.suppress(Exception):
            await peer.send_to(sender, {"echo": data, "from": "bob"})

    def _wire_browser_channel(self, name: str, other: str, raw: Any) -> None:
        from .events import DCMessage
        from .peer import DataChannel

        dc = DataChannel(raw)

        def on_message(ev: DCMessage) -> None:
            self.say(name, f"data channel message from {other}: {ev.data!r}")
            self._spawn(dc.send(ev.data if isinstance(ev.data, bytes) else f"echo: {ev.data}"))

        dc.on(DCMessage, on_message)

    async def _meter_browser_audio(self, name: str, other: str, track: Any) -> None:
        from .media import AudioSink

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
                for task in list(self._tasks):
                    task.cancel()
        except DemoError as err:
            detail = str(err).removeprefix(f"{err.step}: ")
            self.say.line(f"demo failed during step {err.step!r}: {detail}")
            self.say.line("result: failed")
            return 1
        finally:
            if undo is not None:
                undo()
        return 0


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


# --- the browser page -----------------------------------------------------------------

_MAX_REQUEST = 8192
DEMO_INTRO = (
    "<b>alice</b> streams a tone to you (press <i>unmute</i> to hear it) and <b>bob</b> "
    "echoes what you send. The terminal running <code>metered-realtime demo --browser</code> "
    "prints what the Python peers see."
)


@contextlib.asynccontextmanager
async def serve_page(
    url: str,
    api_key: str,
    room: str,
    *,
    port: int = 0,
    sdk_js: str | None = None,
    intro: str = DEMO_INTRO,
) -> AsyncIterator[str]:
    """Serve, on 127.0.0.1, a page that joins ``room`` with the JavaScript SDK.

    Yields the page's address. The page loads the SDK's UMD build from ``/sdk.js``
    (:func:`find_js_sdk` locates it; without it the page says how to install it) and
    offers join, unmute, microphone sharing, broadcast, direct and data channel
    messages. ``intro`` is an HTML fragment shown above the buttons. The publishable
    ``api_key`` is embedded in the page, which is what publishable keys are for.
    """
    sdk = find_js_sdk(sdk_js)
    page = _browser_page(url, api_key, room, sdk is not None, intro)
    http = await asyncio.start_server(lambda r, w: _serve_http(r, w, page, sdk), "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{http.sockets[0].getsockname()[1]}/"
    finally:
        http.close()
        await http.wait_closed()


async def _serve_http(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, page: bytes, sdk: Path | None
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        if len(head) > _MAX_REQUEST:
            raise ValueError("request too large")
        method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
        elif path in ("/", "/index.html"):
            status, ctype, body = "200 OK", "text/html; charset=utf-8", page
        elif path == "/sdk.js" and sdk is not None:
            status, ctype, body = "200 OK", "text/javascript; charset=utf-8", sdk.read_bytes()
        else:
            status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
        headers = (
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
        )
        writer.write(headers.encode("latin-1") + (b"" if method == "HEAD" else body))
        await writer.drain()
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    except (ValueError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _browser_page(url: str, key: str, room: str, sdk_available: bool, intro: str) -> bytes:
    config = json.dumps({"url": url, "apiKey": key, "room": room, "sdk": sdk_available})
    missing = "" if sdk_available else f"<p class='err'>{html.escape(JS_SDK_INSTALL_HINT)}</p>"
    return (
        _PAGE.replace("%%CONFIG%%", config.replace("</", "<\\/"))
        .replace("%%MISSING%%", missing)
        .replace("%%ROOM%%", html.escape(room))
        .replace("%%INTRO%%", intro)
        .encode()
    )


_PAGE = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>metered-realtime demo</title>
<style>
body { font: 15px system-ui, sans-serif; margin: 2em; max-width: 60em; }
#log { background: #111; color: #ddd; padding: 1em; height: 24em; overflow: auto;
       font: 13px ui-monospace, monospace; white-space: pre-wrap; }
.err { color: #b00; font-weight: bold; }
button, input { font-size: 15px; margin: 0.2em; }
</style>
</head>
<body>
<h1>metered-realtime demo: room <code>%%ROOM%%</code></h1>
%%MISSING%%
<p>This tab joins the room with the JavaScript SDK. %%INTRO%%</p>
<p>
<button id="join">join</button>
<button id="unmute" disabled>unmute</button>
<button id="mic" disabled>share microphone</button>
<input id="text" placeholder="a message" value="hello from the browser">
<button id="send" disabled>broadcast</button>
<button id="direct" disabled>direct message</button>
<button id="dc" disabled>data channel message</button>
</p>
<div id="media"></div>
<div id="log"></div>
<script id="config" type="application/json">%%CONFIG%%</script>
<script src="/sdk.js"></script>
<script>
"use strict";
(() => {
  const cfg = JSON.parse(document.getElementById("config").textContent);
  const $ = (id) => document.getElementById(id);
  const log = (text) => {
    const line = `${new Date().toLocaleTimeString()}  ${text}\\n`;
    $("log").textContent += line;
    $("log").scrollTop = $("log").scrollHeight;
  };
  if (!window.MeteredPeer || !window.MeteredPeer.MeteredPeer) {
    log("The JavaScript SDK did not load (see the message above).");
    $("join").disabled = true;
    return;
  }
  const SDK = window.MeteredPeer;
  const names = new Map();
  const remotes = new Map();
  const channels = new Map();
  let peer = null;
  const who = (id) => names.get(id) || id;
  const bob = () => [...remotes.values()].find((r) => names.get(r.id) === "bob");

  function wireRemote(remote) {
    remotes.set(remote.id, remote);
    remote.on("state-change", (ev) =>
      log(`connection to ${who(remote.id)}: ${ev.from} -> ${ev.to}`));
    remote.on("track", (ev) => {
      const meta = ev.metadata ? " " + JSON.stringify(ev.metadata) : "";
      log(`track from ${who(remote.id)}: ${ev.track.kind}${meta}`);
      const el = document.createElement(ev.track.kind === "video" ? "video" : "audio");
      el.autoplay = true;
      el.muted = true;
      el.controls = true;
      el.srcObject = ev.streams[0] || new MediaStream([ev.track]);
      $("media").appendChild(el);
      $("unmute").disabled = false;
    });
    remote.on("data-channel", (ev) => {
      log(`data channel ${ev.channel.label} opened by ${who(remote.id)}`);
      ev.channel.onmessage = (m) => log(`data channel from ${who(remote.id)}: ${m.data}`);
    });
  }

  $("join").onclick = async () => {
    $("join").disabled = true;
    peer = new SDK.MeteredPeer({ apiKey: cfg.apiKey, url: cfg.url });
    peer.on("joined", (ev) => log(`joined ${ev.channel} as ${ev.peerId}`));
    peer.on("left", (ev) => log(`left (${ev.reason || ""})`));
    peer.on("error", (ev) => log(`error: ${ev.err && ev.err.message}`));
    peer.on("peer-joined", (ev) => {
      log(`peer joined: ${ev.peer.id}`);
      wireRemote(ev.peer);
    });
    peer.on("peer-left", (ev) => {
      log(`peer left: ${who(ev.peer.id)}`);
      remotes.delete(ev.peer.id);
    });
    peer.on("data", (ev) => {
      const d = ev.data;
      if (d && typeof d === "object" && d.type === "ping") {
        peer.sendTo(ev.senderPeerId, { type: "pong", id: d.id });
        return;
      }
      if (d && typeof d === "object" && typeof d.from === "string" && !names.has(ev.senderPeerId)) {
        names.set(ev.senderPeerId, d.from);
      }
      log(`data (${ev.kind}) from ${who(ev.senderPeerId)}: ${JSON.stringify(d)}`);
    });
    try {
      await peer.join(cfg.room);
      await peer.send({ text: "a browser joined", from: "browser" });
      for (const id of ["send", "direct", "dc", "mic"]) $(id).disabled = false;
    } catch (err) {
      log(`join failed: ${err && err.message}`);
      $("join").disabled = false;
    }
  };
  $("unmute").onclick = () => {
    for (const el of document.querySelectorAll("audio, video")) {
      el.muted = false;
      el.play();
    }
  };
  $("send").onclick = () => peer.send({ text: $("text").value });
  $("direct").onclick = () => {
    const target = bob() || [...remotes.values()][0];
    if (target) target.send({ text: $("text").value });
    else log("nobody to send to yet");
  };
  $("dc").onclick = () => {
    const target = bob() || [...remotes.values()][0];
    if (!target) return log("nobody to send to yet");
    let ch = channels.get(target.id);
    if (!ch || ch.readyState === "closed") {
      ch = target.pc.createDataChannel("browser");
      ch.onmessage = (m) => log(`data channel from ${who(target.id)}: ${m.data}`);
      channels.set(target.id, ch);
    }
    const text = $("text").value;
    if (ch.readyState === "open") ch.send(text);
    else ch.onopen = () => ch.send(text);
  };
  $("mic").onclick = async () => {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      peer.addStream(stream, { role: "microphone", label: "browser mic" });
      $("mic").disabled = true;
      log("sharing the microphone");
    } catch (err) {
      log(`microphone: ${err && err.message}`);
    }
  };
})();
</script>
</body>
</html>
"""


# --- command line ---------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` subcommand's flags."""
    parser.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: any free one)")
    parser.add_argument("--db", default=None, help="SQLite store (default: a temporary file)")
    parser.add_argument("--room", default="demo", help="room (channel) name")
    parser.add_argument(
        "--loopback",
        action="store_true",
        help=f"keep WebRTC on 127.0.0.1 (the default unless --browser; also {LOOPBACK_ENV}=1)",
    )
    parser.add_argument(
        "--lan",
        action="store_true",
        help="let WebRTC use the machine's network interfaces (the default with --browser)",
    )
    parser.add_argument(
        "--browser", action="store_true", help="also serve a page to join from a browser tab"
    )
    parser.add_argument("--http-port", type=int, default=0, help="port of the browser page")
    parser.add_argument("--sdk-js", default=None, help="path of the JS SDK's index.umd.js")
    parser.add_argument("--timeout", type=float, default=60.0, help="limit for the scripted run")
    parser.add_argument("--tone", type=float, default=440.0, help="tone frequency in Hz")
    parser.add_argument("--pings", type=int, default=10, help="ping-pongs per path")


def options_from(args: argparse.Namespace) -> DemoOptions:
    return DemoOptions(
        host=args.host,
        port=args.port,
        db=args.db,
        room=args.room,
        # Two peers in one process need nothing but loopback; a browser tab needs real
        # interfaces, since browsers do not gather 127.0.0.1 candidates.
        loopback=args.loopback or not (args.lan or args.browser),
        browser=args.browser,
        http_port=args.http_port,
        sdk_js=args.sdk_js,
        timeout=args.timeout,
        tone=args.tone,
        pings=max(1, min(args.pings, 1000)),
    )


def main(args: argparse.Namespace) -> int:
    """Entry point of ``metered-realtime demo`` (flags from :func:`add_arguments`)."""
    opts = options_from(args)
    if not (20 <= opts.tone <= 4000):
        print("--tone must be between 20 and 4000 Hz", file=sys.stderr)
        return 2
    return asyncio.run(run_demo(opts))
