"""The server in this process, with an app and an all-permission key: for the demo, the
examples' ``--server`` flag and the test suite."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..server.app import Server
    from ..server.store import Store


@dataclasses.dataclass(frozen=True)
class AppKeys:
    """An app and the keys :func:`provision_app` made for it."""

    app_id: str
    api_key: str
    secret_key_id: str
    secret: str = dataclasses.field(repr=False)


def provision_app(store: Store, name: str) -> AppKeys:
    """The app called ``name`` (created when missing), a new publishable key with every
    permission (``send`` included) and a new secret key."""
    from ..server.store import ALL_PERMISSIONS

    app = store.find_app(name) or store.create_app(name)
    key = store.create_publishable_key(app.id, permissions=ALL_PERMISSIONS, label=name)
    secret = store.create_secret_key(app.id)
    return AppKeys(app.id, key.key, secret.id, secret.secret)


@dataclasses.dataclass
class EmbeddedServer:
    """A running in-process server and an app with an all-permission publishable key."""

    server: Server
    store: Store
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
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    db: str | None = None,
    app_name: str = "demo",
    **config: Any,
) -> AsyncIterator[EmbeddedServer]:
    """Start the server in this process; stop it (and delete a temporary store) on exit.

    ``port=0`` picks a free port. Without ``db`` the store is a SQLite file in a temporary
    directory. The app is reused by name when ``db`` already holds one; its keys are new
    each time. Other keyword arguments are :class:`~metered_realtime.server.config.ServerConfig`
    settings.
    """
    from ..server.app import Server
    from ..server.config import ServerConfig
    from ..server.store import Store

    with contextlib.ExitStack() as stack:
        if db is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="metered-realtime-"))
            db = os.path.join(tmp, "store.db")
        store = Store(db)
        stack.callback(store.close)
        keys = provision_app(store, app_name)
        server = Server(ServerConfig(host=host, port=port, db=db, **config), store)
        await server.start()
        try:
            yield EmbeddedServer(
                server, store, keys.app_id, keys.api_key, keys.secret_key_id, keys.secret, host
            )
        finally:
            await server.stop()
