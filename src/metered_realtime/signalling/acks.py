"""The ack table: request id -> future, failed all at once when the socket drops."""

from __future__ import annotations

import asyncio

__all__ = ["AckTable"]


class AckTable:
    """Pending requests awaiting ``ack``/``error`` frames."""

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._pending

    def register(self, request_id: str) -> asyncio.Future[None]:
        if request_id in self._pending:
            raise ValueError("duplicate request id")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        return fut

    def discard(self, request_id: str) -> None:
        self._pending.pop(request_id, None)

    def resolve(self, request_id: str) -> bool:
        fut = self._pending.pop(request_id, None)
        if fut is None:
            return False
        if not fut.done():
            fut.set_result(None)
        return True

    def reject(self, request_id: str, exc: BaseException) -> bool:
        fut = self._pending.pop(request_id, None)
        if fut is None:
            return False
        if not fut.done():
            fut.set_exception(exc)
        return True

    def fail_all(self, make_exc: type[BaseException] | None = None) -> int:
        """Fail every pending request with a fresh ``make_exc()``; returns how many."""
        from ..errors import DisconnectedError

        factory = make_exc or DisconnectedError
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(factory())
                # the caller may be gone (cancelled); never warn "exception never retrieved"
                fut.add_done_callback(_consume)
        return len(pending)


def _consume(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()
