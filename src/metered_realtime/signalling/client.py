"""``SignallingClient``: WebSocket pub/sub with acks, reconnect, replay and liveness."""

from __future__ import annotations

import asyncio
import functools
import math
import random
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._emitter import EventEmitter
from .._logging import Logger, NoopLogger, ScrubbingLogger
from .._scrub import scrub, scrub_exception
from .._swallow import best_effort
from .._types import SignallingClientState, TokenProviderFn
from ..errors import (
    AckTimeoutError,
    DisconnectedError,
    NotConnectedError,
    OversizedPayloadError,
    ServerRequestError,
    SignallingConnectError,
    SignallingError,
)
from ..events import (
    Connected,
    Direct,
    Disconnected,
    GoingAway,
    Message,
    Presence,
    ServerError,
    StateChange,
    TokenProviderError,
)
from ..protocol.codec import decode_server_frame, encode_client_frame, payload_size, to_wire_bytes
from ..protocol.frames import (
    AckFrame,
    ClientFrame,
    DirectFrame,
    ErrorFrame,
    GoingAwayFrame,
    Malformed,
    MessageFrame,
    PongFrame,
    PresenceFrame,
    PublishFrame,
    SendFrame,
    SubscribeFrame,
    UnsubscribeFrame,
    WelcomeFrame,
)
from ..protocol.ids import has_control_chars
from ..protocol.limits import (
    CLIENT_INBOUND_FRAME_CAP,
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_CHANNEL_LENGTH,
    MAX_PEER_ID_LENGTH,
)
from .acks import AckTable
from .credential import make_credential_source
from .ice_servers import parse_ice_servers
from .options import ReconnectOptions, SignallingClientOptions, SubscribeOptions, validate_options
from .policy import backoff_delay, should_reconnect
from .url import build_connect_url, masked_connect_url

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = ["ConnectFn", "SignallingClient"]

ConnectFn = Callable[..., Awaitable[Any]]
"""Signature of the private ``_connect`` seam: ``websockets.asyncio.client.connect``-like."""

ACK_TIMEOUT = 15.0
WELCOME_TIMEOUT = 10.0
OPEN_TIMEOUT = 10.0
CLOSE_WAIT = 1.0
HANDLER_DRAIN = 1.0
REPLAY_RETRIES = 3
REPLAY_SPACING = 2.0
TOKEN_FAILURES_BEFORE_EVENT = 3
_PING_TEXT = '{"type":"ping"}'


def _default_connect() -> ConnectFn:
    from websockets.asyncio.client import connect

    return connect


def _check_id(value: object, what: str, cap: int) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > cap:
        raise ValueError(f"{what} must be at most {cap} characters")
    if has_control_chars(value):
        raise ValueError(f"{what} must not contain control characters")


class SignallingClient(EventEmitter):
    """Realtime pub/sub over one WebSocket, with acks, reconnect and subscription replay.

    Events: :class:`Connected`, :class:`Disconnected`, :class:`StateChange`,
    :class:`Message`, :class:`Direct`, :class:`Presence`, :class:`ServerError`,
    :class:`GoingAway`, :class:`TokenProviderError`.
    """

    def __init__(
        self,
        options: SignallingClientOptions | None = None,
        *,
        api_key: str | None = None,
        token_provider: TokenProviderFn | None = None,
        url: str | None = None,
        token_provider_timeout: float = 10.0,
        logger: Logger | None = None,
        reconnect: bool | ReconnectOptions = True,
        inactivity_timeout: float = 60.0,
        auto_resubscribe: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        _connect: ConnectFn | None = None,
        _sleep: Callable[[float], Awaitable[Any]] | None = None,
        _random: Callable[[], float] | None = None,
        _clock: Callable[[], float] | None = None,
        _ack_timeout: float = ACK_TIMEOUT,
        _welcome_timeout: float = WELCOME_TIMEOUT,
        _open_timeout: float = OPEN_TIMEOUT,
        _replay_delay: float = REPLAY_SPACING,
    ) -> None:
        if options is None:
            options = SignallingClientOptions(
                api_key=api_key,
                token_provider=token_provider,
                url=url,
                token_provider_timeout=token_provider_timeout,
                logger=logger,
                reconnect=reconnect,
                inactivity_timeout=inactivity_timeout,
                auto_resubscribe=auto_resubscribe,
                ssl_context=ssl_context,
            )
        elif not isinstance(options, SignallingClientOptions):
            raise TypeError("options must be a SignallingClientOptions")
        cfg = validate_options(options)

        # Exact secrets in use, for exact-match scrubbing; held only by these closures.
        live: list[str] = [options.api_key] if options.api_key else []

        def remember(secret: str) -> None:
            if secret not in live:
                live.append(secret)
                del live[:-2]

        def secrets() -> tuple[str, ...]:
            return tuple(live)

        self._secrets = secrets
        log = ScrubbingLogger(cfg.logger if cfg.logger is not None else NoopLogger(), secrets)
        self._init_emitter(log)
        self._log = log
        self._cred_source = make_credential_source(
            options.api_key, options.token_provider, cfg.token_provider_timeout, remember
        )
        self._origin = cfg.origin
        self._policy = cfg.reconnect
        self._inactivity = cfg.inactivity_timeout
        self._watchdog = cfg.watchdog_enabled
        self._heartbeat = cfg.heartbeat_interval
        self._auto_resubscribe = cfg.auto_resubscribe
        # websockets refuses an ssl argument for ws:// (validated: only wss:// gets one).
        self._tls: dict[str, Any] = {} if cfg.ssl_context is None else {"ssl": cfg.ssl_context}
        self._connect_fn: ConnectFn = _connect if _connect is not None else _default_connect()
        self._sleep: Callable[[float], Awaitable[Any]] = (
            _sleep if _sleep is not None else asyncio.sleep
        )
        self._random: Callable[[], float] = (
            _random if _random is not None else (lambda: random.uniform(-1.0, 1.0))
        )
        # Measures how long a session lasted after its welcome (see ``stable_after``).
        self._clock: Callable[[], float] = _clock if _clock is not None else time.monotonic
        self._ack_timeout = float(_ack_timeout)
        self._welcome_timeout = float(_welcome_timeout)
        self._open_timeout = float(_open_timeout)
        self._replay_delay = float(_replay_delay)

        self._state: SignallingClientState = "idle"
        self._supervisor: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._closing: asyncio.Future[None] | None = None
        self._explicit_close = False
        self._ever_connected = False
        self._token_failures = 0
        self._ws: ClientConnection | None = None
        self._session = 0
        self._welcomed = False
        self._welcomed_at = 0.0
        self._local_close: tuple[int, str] | None = None
        self._last_rx = 0.0
        self._last_ping = -math.inf
        self._acks = AckTable()
        self._subs: dict[str, SubscribeOptions] = {}
        self._replays: dict[str, asyncio.Task[None]] = {}
        self._peer_id: str | None = None
        self._max_message_size = DEFAULT_MAX_MESSAGE_SIZE

    # --- properties ---------------------------------------------------------

    @property
    def state(self) -> SignallingClientState:
        return self._state

    @property
    def peer_id(self) -> str | None:
        """The peer id of the latest welcome (``None`` before the first)."""
        return self._peer_id

    @property
    def max_message_size(self) -> int:
        """The latest welcome's ``maxMessageSize`` (65536 before any welcome)."""
        return self._max_message_size

    @property
    def subscriptions(self) -> frozenset[str]:
        """Channels recorded for replay."""
        return frozenset(self._subs)

    def __repr__(self) -> str:
        return f"<SignallingClient state={self._state}>"

    def __reduce__(self) -> Any:
        raise TypeError("SignallingClient cannot be pickled")

    def _set_state(self, to: SignallingClientState) -> None:
        if to == self._state:
            return
        before, self._state = self._state, to
        self._log.debug("state change", {"from": before, "to": to})
        self.emit(StateChange(before, to))

    # --- lifecycle ----------------------------------------------------------

    async def connect(self) -> None:
        """Connect and return once the welcome arrived (from ``idle`` or ``closed`` only)."""
        if self._state not in ("idle", "closed") or self._closing is not None:
            raise SignallingError(f"connect() invalid state: {self._state}")
        loop = asyncio.get_running_loop()
        self._explicit_close = False
        self._ever_connected = False
        self._token_failures = 0
        first: asyncio.Future[None] = loop.create_future()
        first.add_done_callback(_consume_future)
        self._first = first
        self._set_state("connecting")
        self._supervisor = loop.create_task(self._supervise())
        try:
            await asyncio.shield(first)
        except asyncio.CancelledError:
            if not first.done():
                await self.close()
            raise

    async def __aenter__(self) -> SignallingClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self, code: int = 1000, reason: str = "client requested close") -> None:
        """Close for good: socket, supervisor, pending requests, handlers and streams."""
        if self._closing is not None:
            await asyncio.shield(self._closing)
            return
        closing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closing = closing
        try:
            self._explicit_close = True
            ws = self._ws
            was_connected = self._state == "connected" and ws is not None
            if ws is not None:
                await self._close_ws(ws, code, reason)
            sup, self._supervisor = self._supervisor, None
            if sup is not None and not sup.done() and sup is not asyncio.current_task():
                sup.cancel()
                await asyncio.wait([sup], timeout=2.0)
            self._cancel_replays()
            self._acks.fail_all()
            first = self._first
            if first is not None and not first.done():
                first.set_exception(SignallingError("connect() interrupted by close()"))
            if was_connected:
                self.emit(Disconnected(code, reason, False))
            await self._drain_handlers(HANDLER_DRAIN)
            self._set_state("closed")
            self._teardown_emitter()
        finally:
            self._closing = None
            if not closing.done():
                closing.set_result(None)

    # --- requests -----------------------------------------------------------

    async def subscribe(self, channel: str, opts: SubscribeOptions | None = None) -> None:
        """Subscribe to ``channel``; recorded for replay before the frame is sent."""
        _check_id(channel, "channel", MAX_CHANNEL_LENGTH)
        if opts is None:
            opts = SubscribeOptions()
        elif not isinstance(opts, SubscribeOptions):
            raise TypeError("opts must be a SubscribeOptions")
        known = channel in self._subs
        self._subs[channel] = opts
        self._cancel_replay(channel)
        flag = opts.include_sender_metadata
        try:
            await self._request(lambda rid: SubscribeFrame(channel, rid, flag))
        except NotConnectedError:
            if not known and self._subs.get(channel) is opts:
                del self._subs[channel]
            raise

    async def unsubscribe(self, channel: str) -> None:
        """Forget ``channel`` (even if the send then fails) and unsubscribe."""
        _check_id(channel, "channel", MAX_CHANNEL_LENGTH)
        self._subs.pop(channel, None)
        self._cancel_replay(channel)
        await self._request(lambda rid: UnsubscribeFrame(channel, rid))

    async def publish(self, channel: str, data: Any) -> None:
        """Broadcast ``data`` (any JSON value) on ``channel``; resolves on the ack."""
        _check_id(channel, "channel", MAX_CHANNEL_LENGTH)
        size = payload_size(data)
        await self._request(lambda rid: PublishFrame(channel, data, rid), size=size)

    async def send(self, to_peer_id: str, data: Any) -> None:
        """Send ``data`` to one peer id; resolves on the ack."""
        _check_id(to_peer_id, "peer id", MAX_PEER_ID_LENGTH)
        size = payload_size(data)
        await self._request(lambda rid: SendFrame(to_peer_id, data, rid), size=size)

    async def _request(self, build: Callable[[str], ClientFrame], *, size: int = 0) -> None:
        ws = self._ws
        if self._state != "connected" or ws is None:
            raise NotConnectedError()
        if size > self._max_message_size:
            raise OversizedPayloadError(size, self._max_message_size)
        rid = str(uuid.uuid4())
        text = encode_client_frame(build(rid))
        fut = self._acks.register(rid)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._ack_timeout, self._ack_expired, rid)
        try:
            try:
                await _send_text(ws, text)
            except Exception as exc:
                if _is_connection_closed(exc):
                    raise DisconnectedError("connection closed while sending") from None
                raise
            await fut
        finally:
            timer.cancel()
            self._acks.discard(rid)

    def _ack_expired(self, rid: str) -> None:
        self._acks.reject(rid, AckTimeoutError(rid, self._ack_timeout))

    # --- supervisor ---------------------------------------------------------

    async def _supervise(self) -> None:
        attempt = 0  # reconnect attempts made since the last stable connection
        backoff_code: int | None = None  # close code feeding the next delay (4010 floor)
        last_drop: int | None = None
        try:
            for _ in range(1_000_000):  # bounded; real budgets end far earlier
                if attempt > 0 and self._policy is not None:
                    delay = backoff_delay(attempt, backoff_code, self._random(), self._policy)
                    self._log.debug("reconnect scheduled", {"attempt": attempt, "delay": delay})
                    await self._sleep(delay)
                    if self._explicit_close:
                        return
                backoff_code = None
                try:
                    cred = await self._cred_source()
                except Exception as exc:
                    err = self._token_failure(exc)
                    if not self._ever_connected:
                        self._fail_first(err)
                        return
                    if not self._may_retry(attempt):
                        self.emit(
                            Disconnected(
                                last_drop if last_drop is not None else 1006,
                                "token provider failed",
                                False,
                            )
                        )
                        await self._finish_terminal()
                        return
                    attempt += 1
                    continue
                self._token_failures = 0
                url = build_connect_url(self._origin, cred.kind, cred.reveal())
                self._log.debug(
                    "opening socket", {"url": masked_connect_url(self._origin, cred.kind)}
                )
                try:
                    ws = await self._connect_fn(
                        url,
                        max_size=CLIENT_INBOUND_FRAME_CAP,
                        ping_interval=None,
                        open_timeout=self._open_timeout,
                        close_timeout=CLOSE_WAIT,
                        **self._tls,
                    )
                except Exception as exc:
                    code, reason = _classify_open_failure(exc)
                    del url
                    self._log.info("connection attempt failed", {"code": code, "reason": reason})
                    if self._explicit_close:
                        return
                    if not self._ever_connected:
                        self._fail_first(SignallingConnectError(code, reason))
                        return
                    if not self._may_retry(attempt):
                        await self._finish_terminal()
                        return
                    attempt += 1
                    continue
                del url
                code, reason, welcomed = await self._run_session(ws)
                if welcomed:
                    if self._stable():
                        attempt = 0
                    else:
                        # Welcomed, then closed before it was stable (say a frame over the
                        # inbound cap right after the welcome): the attempts still count.
                        self._log.debug(
                            "connection dropped soon after welcome; backoff continues",
                            {"attempts": attempt},
                        )
                if self._explicit_close:
                    return
                if not self._ever_connected:
                    self._fail_first(SignallingConnectError(code, reason))
                    return
                last_drop = backoff_code = code
                will = self._may_retry(attempt, code)
                self._log.info(
                    "disconnected", {"code": code, "reason": reason, "will_reconnect": will}
                )
                self.emit(Disconnected(code, reason, will))
                if not will:
                    await self._finish_terminal()
                    return
                self._set_state("reconnecting")
                attempt += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave the client half-alive
            self._log.error(f"signalling supervisor crashed: {type(exc).__name__}: {exc}")
            if not self._ever_connected:
                self._fail_first(SignallingError("signalling supervisor crashed"))
            else:
                await self._finish_terminal()

    def _stable(self) -> bool:
        """Whether the session that just ended stayed up ``stable_after`` past its welcome."""
        policy = self._policy
        return policy is None or self._clock() - self._welcomed_at >= policy.stable_after

    def _may_retry(self, attempts_made: int, code: int | None = None) -> bool:
        return should_reconnect(
            explicit_close=self._explicit_close,
            opts=self._policy,
            ever_connected=self._ever_connected,
            close_code=code,
            attempts_made=attempts_made,
        )

    def _token_failure(self, exc: Exception) -> Exception:
        self._token_failures += 1
        err = scrub_exception(exc, self._secrets())
        self._log.warning(
            f"token provider failed: {type(exc).__name__}",
            {"consecutive_failures": self._token_failures},
        )
        if self._token_failures >= TOKEN_FAILURES_BEFORE_EVENT:
            self.emit(TokenProviderError(self._token_failures, err))
        return err

    def _fail_first(self, err: BaseException) -> None:
        self._set_state("closed")
        first = self._first
        if first is not None and not first.done():
            first.set_exception(err)

    async def _finish_terminal(self) -> None:
        self._cancel_replays()
        self._acks.fail_all()
        self._set_state("closed")
        await self._drain_handlers(HANDLER_DRAIN)
        if self._state == "closed" and not self._explicit_close:
            self._teardown_emitter()

    # --- one socket ---------------------------------------------------------

    async def _run_session(self, ws: ClientConnection) -> tuple[int, str, bool]:
        self._session += 1
        self._ws = ws
        self._welcomed = False
        self._local_close = None
        self._last_rx = time.monotonic()
        self._last_ping = -math.inf
        timer = asyncio.get_running_loop().create_task(self._liveness(ws))
        try:
            async for raw in ws:
                self._on_raw(raw)
        except Exception as exc:
            if not _is_connection_closed(exc):
                self._log.error(f"reader failed: {type(exc).__name__}")
                await self._close_ws(ws, 1011, "internal error")
        finally:
            timer.cancel()
            self._ws = None
            self._cancel_replays()
            self._acks.fail_all()
        welcomed = self._welcomed
        if self._local_close is not None:
            code, reason = self._local_close
        else:
            code, reason = _close_info(ws)
        return code, scrub(reason, self._secrets()), welcomed

    async def _close_ws(self, ws: ClientConnection, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(ws.close(code, reason), CLOSE_WAIT + 0.5)
        except Exception:
            transport = getattr(ws, "transport", None)
            if transport is not None:
                transport.abort()

    async def _liveness(self, ws: ClientConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        deadline = time.monotonic() + self._welcome_timeout
        for _ in range(10_000_000):  # ends with the session (cancelled) or a close
            if self._ws is not ws:
                return
            now = time.monotonic()
            if not self._welcomed:
                if now >= deadline:
                    self._local_close = (1000, "no welcome")
                    await self._close_ws(ws, 1000, "no welcome")
                    return
                wait = deadline - now
            elif not self._watchdog:
                return
            else:
                idle = now - self._last_rx
                if idle >= self._inactivity:
                    self._log.warning("inactivity timeout; closing", {"idle": round(idle, 3)})
                    self._local_close = (4000, "inactivity")
                    await self._close_ws(ws, 4000, "inactivity")
                    return
                wait = self._inactivity - idle
                quiet = now - max(self._last_rx, self._last_ping)
                if quiet >= self._heartbeat:
                    self._last_ping = now
                    quiet = 0.0
                    # A dead socket shows up in the reader; the watchdog ends a silent one.
                    with best_effort(
                        self._log,
                        "heartbeat ping",
                        {"peer": self._peer_id},
                        (ConnectionClosed, asyncio.TimeoutError),
                    ):
                        await asyncio.wait_for(ws.send(_PING_TEXT), CLOSE_WAIT)
                wait = min(wait, self._heartbeat - quiet)
            await asyncio.sleep(max(wait, 0.005))

    # --- inbound ------------------------------------------------------------

    def _on_raw(self, raw: str | bytes) -> None:
        if not isinstance(raw, str):
            self._log.debug("binary frame dropped", {"bytes": len(raw)})
            return
        self._last_rx = time.monotonic()
        frame = decode_server_frame(raw)
        if isinstance(frame, Malformed):
            self._log.warning(f"malformed frame dropped: {frame.reason}")
            return
        if isinstance(frame, WelcomeFrame):
            self._on_welcome(frame)
        elif not self._welcomed:
            self._log.warning(f"{type(frame).__name__} before welcome dropped")
        elif isinstance(frame, AckFrame):
            self._acks.resolve(frame.request_id)
        elif isinstance(frame, MessageFrame):
            self.emit(Message(frame.channel, frame.sender, frame.data, frame.from_metadata))
        elif isinstance(frame, DirectFrame):
            self.emit(Direct(frame.sender, frame.data, frame.from_metadata))
        elif isinstance(frame, PresenceFrame):
            self.emit(Presence(frame.channel, frame.joined, frame.left))
        elif isinstance(frame, ErrorFrame):
            self._on_error(frame)
        elif isinstance(frame, GoingAwayFrame):
            self._log.info("server going away", {"retry_after_ms": frame.retry_after_ms})
            self.emit(GoingAway(frame.retry_after_ms))
        elif isinstance(frame, PongFrame):
            pass

    def _on_welcome(self, frame: WelcomeFrame) -> None:
        if self._welcomed:
            self._log.warning("second welcome on the same socket ignored")
            return
        self._welcomed = True
        self._welcomed_at = self._clock()
        is_reconnect = self._ever_connected
        self._ever_connected = True
        self._peer_id = frame.peer_id
        self._max_message_size = int(frame.max_message_size)
        expires = None if frame.expires_at is None else int(frame.expires_at)
        event = Connected(
            peer_id=frame.peer_id,
            server_time=int(frame.server_time),
            expires_at=expires,
            is_reconnect=is_reconnect,
            max_message_size=self._max_message_size,
            ice_servers=parse_ice_servers(frame.metadata),
        )
        self._set_state("connected")
        self.emit(event)
        first = self._first
        if first is not None and not first.done():
            first.set_result(None)
        if is_reconnect and self._auto_resubscribe:
            self._start_replays()

    def _on_error(self, frame: ErrorFrame) -> None:
        rid = frame.request_id
        message = None if frame.message is None else scrub(frame.message, self._secrets())
        if rid is not None and rid in self._acks:
            self._acks.reject(rid, ServerRequestError(frame.code, message, rid))
            return
        if rid is None and frame.code == "unknown_type":
            return  # an old server answering our ping
        self.emit(ServerError(frame.code, message, rid))

    # --- subscription replay ------------------------------------------------

    def _start_replays(self) -> None:
        loop = asyncio.get_running_loop()
        session = self._session
        for channel, opts in list(self._subs.items()):
            self._cancel_replay(channel)
            task = loop.create_task(self._replay(channel, opts, session))
            self._replays[channel] = task
            task.add_done_callback(functools.partial(self._replay_done, channel))

    def _replay_done(self, channel: str, task: asyncio.Task[None]) -> None:
        if self._replays.get(channel) is task:
            del self._replays[channel]

    def _cancel_replay(self, channel: str) -> None:
        task = self._replays.pop(channel, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _cancel_replays(self) -> None:
        for channel in list(self._replays):
            self._cancel_replay(channel)

    async def _replay(self, channel: str, opts: SubscribeOptions, session: int) -> None:
        flag = opts.include_sender_metadata
        for retry in range(REPLAY_RETRIES + 1):
            if self._session != session or self._subs.get(channel) is not opts:
                return
            try:
                await self._request(lambda rid: SubscribeFrame(channel, rid, flag))
                return
            except (NotConnectedError, DisconnectedError):
                return
            except (ServerRequestError, AckTimeoutError) as exc:
                if retry == REPLAY_RETRIES:
                    self._log.error(
                        f"replayed subscribe gave up after {REPLAY_RETRIES} retries",
                        {"channel": channel, "error": type(exc).__name__},
                    )
                    return
                self._log.warning(
                    "replayed subscribe failed; retrying",
                    {"channel": channel, "error": type(exc).__name__, "retry": retry + 1},
                )
            await asyncio.sleep(self._replay_delay)


async def _send_text(ws: ClientConnection, text: str) -> None:
    try:
        await ws.send(text)
    except UnicodeEncodeError:  # lone surrogates: re-escape as ASCII JSON
        await ws.send(to_wire_bytes(text).decode("ascii"))


def _is_connection_closed(exc: BaseException) -> bool:
    from websockets.exceptions import ConnectionClosed

    return isinstance(exc, ConnectionClosed)


def _classify_open_failure(exc: BaseException) -> tuple[int, str]:
    from websockets.exceptions import InvalidStatus

    if isinstance(exc, InvalidStatus):
        return int(exc.response.status_code), "handshake rejected"
    if isinstance(exc, asyncio.TimeoutError):
        return 1006, "TimeoutError"
    return 1006, type(exc).__name__


def _close_info(ws: ClientConnection) -> tuple[int, str]:
    """Code and reason of a finished socket: the peer's close frame, else ours, else 1006."""
    proto = ws.protocol
    frame = proto.close_rcvd if proto.close_rcvd is not None else proto.close_sent
    if frame is None:
        return 1006, ""
    return int(frame.code), frame.reason or ""


def _consume_future(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
