"""Credentials: a self-redacting resolved value and the closure that produces one."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from .._types import TokenProviderFn

__all__ = ["CredentialSource", "ResolvedCredential", "make_credential_source"]


class ResolvedCredential:
    """One credential ready for a connection attempt. Redacts itself; refuses pickling."""

    __slots__ = ("_kind", "_value")
    _kind: str
    _value: str

    def __init__(self, kind: str, value: str) -> None:
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_value", value)

    @property
    def kind(self) -> str:
        """``"key"`` (publishable key) or ``"token"`` (JWT)."""
        return self._kind

    def reveal(self) -> str:
        """The secret itself; only the URL builder calls this."""
        return self._value

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("ResolvedCredential is immutable")

    def __repr__(self) -> str:
        return f"ResolvedCredential(kind={self._kind!r}, value='***')"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("credentials cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("credentials cannot be pickled")

    def __getstate__(self) -> NoReturn:
        raise TypeError("credentials cannot be pickled")

    def __copy__(self) -> ResolvedCredential:
        return self

    def __deepcopy__(self, memo: Any) -> ResolvedCredential:
        return self


CredentialSource = Callable[[], Awaitable[ResolvedCredential]]


def make_credential_source(
    api_key: str | None,
    token_provider: TokenProviderFn | None,
    timeout: float,
    on_secret: Callable[[str], None] | None = None,
) -> CredentialSource:
    """A zero-argument coroutine function resolving the credential for one attempt.

    The secret lives only in this closure. A token provider may be sync or async; its
    awaitable is bounded by ``timeout`` (``TimeoutError``). An empty or non-string token
    is a failure too. ``on_secret`` is told each fresh secret (for exact-match scrubbing).
    """
    if api_key is not None:
        fixed = ResolvedCredential("key", api_key)

        async def from_key() -> ResolvedCredential:
            return fixed

        return from_key

    if token_provider is None:
        raise ValueError("a credential is required")
    provider = token_provider

    async def from_provider() -> ResolvedCredential:
        result: object = provider()
        if inspect.isawaitable(result):
            try:
                result = await asyncio.wait_for(_as_coroutine(result), timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"token provider timed out after {timeout:g} s") from None
        if not isinstance(result, str):
            raise TypeError("token provider must return a string")
        if not result:
            raise ValueError("token provider returned an empty token")
        if on_secret is not None:
            on_secret(result)
        return ResolvedCredential("token", result)

    return from_provider


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
