"""Apps and keys held in memory, so admitting a connection costs no database round trip.

The cache is reloaded from the store every ``store_refresh`` seconds and at once when an admin
action (on any node of a cluster) changes a key or an app. A key the cache does not know yet
(made a moment ago by the CLI on another machine) is looked up in the store and remembered.
Each reload reports what was revoked or suspended, so live sessions can be closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .store import App, PublishableKey, SecretKey, Store

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Revocations:
    """What a reload found newly revoked or suspended."""

    credentials: frozenset[str]
    apps: frozenset[str]


class KeyCache:
    """The lookups ``authenticate`` needs, served from memory."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._apps: dict[str, App] = {}
        self._publishable: dict[str, PublishableKey] = {}
        self._secret: dict[str, SecretKey] = {}
        self.reload()

    def reload(self) -> Revocations:
        """Read everything again; say which credentials and apps were cut off since."""
        snap = self.store.snapshot()
        revoked = {
            key.credential_ref
            for key in snap.publishable.values()
            if key.revoked and not self._was_revoked_pk(key.key)
        }
        revoked |= {
            key.id
            for key in snap.secret.values()
            if key.revoked and not (key.id in self._secret and self._secret[key.id].revoked)
        }
        suspended = {
            app.id
            for app in snap.apps.values()
            if app.suspended and not (app.id in self._apps and self._apps[app.id].suspended)
        }
        self._apps = dict(snap.apps)
        self._publishable = dict(snap.publishable)
        self._secret = dict(snap.secret)
        return Revocations(frozenset(revoked), frozenset(suspended))

    def _was_revoked_pk(self, key: str) -> bool:
        known = self._publishable.get(key)
        return known is not None and known.revoked

    def get_app(self, app_id: str) -> App | None:
        """The app, from memory or else from the store."""
        return _cached(self._apps, app_id, self.store.get_app)

    def get_publishable_key(self, key: str) -> PublishableKey | None:
        """The publishable key record, from memory or else from the store."""
        return _cached(self._publishable, key, self.store.get_publishable_key)

    def get_secret_key(self, key_id: str) -> SecretKey | None:
        """The secret key record, from memory or else from the store."""
        return _cached(self._secret, key_id, self.store.get_secret_key)


def _cached(table: dict[str, R], key: str, load: Callable[[str], R | None]) -> R | None:
    record = table.get(key)
    if record is None:
        record = load(key)
        if record is not None:
            table[key] = record
    return record
