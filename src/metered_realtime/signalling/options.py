"""Options of :class:`SignallingClient` and their validation."""

from __future__ import annotations

import dataclasses
import math
import ssl
from dataclasses import dataclass, field
from typing import Any

from .._logging import Logger
from .._types import TokenProviderFn

__all__ = [
    "DEFAULT_URL",
    "ReconnectOptions",
    "SignallingClientOptions",
    "SubscribeOptions",
    "ValidatedOptions",
    "validate_options",
]

DEFAULT_URL = "wss://rms.metered.ca"


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class ReconnectOptions:
    """Exponential backoff with jitter; validated on construction (``ValueError``).

    ``stable_after`` (seconds): a connection counts as a success, and restarts the attempt
    numbering, only when it stayed up that long after its welcome. A server that welcomes
    and then closes at once therefore meets a growing delay, not the initial one forever.
    ``0`` restarts the numbering on every welcome, as the published SDKs do.
    """

    initial_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter_ratio: float = 0.2
    max_attempts: float = 100
    stable_after: float = 10.0

    def __post_init__(self) -> None:
        for name in (
            "initial_delay",
            "multiplier",
            "max_delay",
            "jitter_ratio",
            "max_attempts",
            "stable_after",
        ):
            if not _is_real(getattr(self, name)):
                raise ValueError(f"ReconnectOptions.{name} must be a number")
        if not (math.isfinite(self.initial_delay) and self.initial_delay > 0):
            raise ValueError("ReconnectOptions.initial_delay must be a finite number > 0")
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise ValueError("ReconnectOptions.multiplier must be a finite number >= 1")
        if not (math.isfinite(self.max_delay) and self.max_delay >= self.initial_delay):
            raise ValueError("ReconnectOptions.max_delay must be finite and >= initial_delay")
        if not (0 <= self.jitter_ratio <= 1):
            raise ValueError("ReconnectOptions.jitter_ratio must be within [0, 1]")
        attempts = self.max_attempts
        if not (attempts >= 0) or (math.isfinite(attempts) and attempts != int(attempts)):
            raise ValueError("ReconnectOptions.max_attempts must be a whole number >= 0 or inf")
        if not (math.isfinite(self.stable_after) and self.stable_after >= 0):
            raise ValueError("ReconnectOptions.stable_after must be a finite number >= 0")


@dataclass(frozen=True, kw_only=True)
class SubscribeOptions:
    """Per-subscription options."""

    include_sender_metadata: bool = False


@dataclass(kw_only=True)
class SignallingClientOptions:
    """Everything :class:`SignallingClient` accepts. The credential is hidden from ``repr``."""

    api_key: str | None = field(default=None, repr=False)
    token_provider: TokenProviderFn | None = field(default=None, repr=False)
    url: str | None = None
    token_provider_timeout: float = 10.0
    logger: Logger | None = None
    reconnect: bool | ReconnectOptions = True
    inactivity_timeout: float = 60.0
    auto_resubscribe: bool = True
    ssl_context: ssl.SSLContext | None = None
    """How a ``wss://`` server is verified (e.g. a private CA); None: the system's trust store."""

    def __reduce__(self) -> Any:
        raise TypeError("SignallingClientOptions holds a credential and cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("SignallingClientOptions holds a credential and cannot be pickled")

    def __copy__(self) -> SignallingClientOptions:
        return dataclasses.replace(self)

    def __deepcopy__(self, memo: Any) -> SignallingClientOptions:
        return dataclasses.replace(self)


@dataclass(frozen=True)
class ValidatedOptions:
    """The non-secret part of validated options, as the client keeps it."""

    origin: str
    token_provider_timeout: float
    logger: Logger | None
    reconnect: ReconnectOptions | None
    inactivity_timeout: float  # <= 0 or inf: watchdog and heartbeat disabled
    auto_resubscribe: bool
    ssl_context: ssl.SSLContext | None = None

    @property
    def watchdog_enabled(self) -> bool:
        return 0 < self.inactivity_timeout < math.inf

    @property
    def heartbeat_interval(self) -> float:
        return max(1.0, self.inactivity_timeout / 3)


def validate_options(opts: SignallingClientOptions) -> ValidatedOptions:
    """Check every option; ``ValueError``/``TypeError`` on a bad one. Never echoes a secret."""
    from .url import validate_base_url

    api_key, provider = opts.api_key, opts.token_provider
    if api_key is not None and not isinstance(api_key, str):
        raise TypeError("api_key must be a string")
    if provider is not None and not callable(provider):
        raise TypeError("token_provider must be a callable returning a token")
    if api_key is not None and provider is not None:
        raise ValueError("pass exactly one of api_key and token_provider, not both")
    if provider is None and not api_key:
        raise ValueError("a credential is required: pass api_key or token_provider")

    timeout = opts.token_provider_timeout
    if not _is_real(timeout) or math.isnan(timeout) or not timeout > 0:
        raise ValueError("token_provider_timeout must be a number > 0")

    logger = opts.logger
    if logger is not None and not isinstance(logger, Logger):
        raise TypeError("logger must have debug/info/warning/error(msg, ctx=None) methods")

    reconnect = opts.reconnect
    policy: ReconnectOptions | None
    if reconnect is True:
        policy = ReconnectOptions()
    elif reconnect is False:
        policy = None
    elif isinstance(reconnect, ReconnectOptions):
        policy = reconnect
    else:
        raise TypeError("reconnect must be True, False or a ReconnectOptions")

    inactivity = opts.inactivity_timeout
    if not _is_real(inactivity) or math.isnan(inactivity):
        raise ValueError("inactivity_timeout must be a number (<= 0 disables the watchdog)")

    if not isinstance(opts.auto_resubscribe, bool):
        raise TypeError("auto_resubscribe must be a bool")

    origin = validate_base_url(DEFAULT_URL if opts.url is None else opts.url)
    if opts.ssl_context is not None:
        if not isinstance(opts.ssl_context, ssl.SSLContext):
            raise TypeError("ssl_context must be an ssl.SSLContext")
        if not origin.startswith("wss://"):
            raise ValueError("ssl_context applies to wss:// URLs only")
    return ValidatedOptions(
        origin=origin,
        token_provider_timeout=float(timeout),
        logger=logger,
        reconnect=policy,
        inactivity_timeout=float(inactivity),
        auto_resubscribe=opts.auto_resubscribe,
        ssl_context=opts.ssl_context,
    )
