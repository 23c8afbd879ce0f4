"""Apps, publishable keys and secret keys in one SQLite file."""

from __future__ import annotations

import json
import secrets
import sqlite3
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

_BASE62 = string.ascii_letters + string.digits
ALL_PERMISSIONS: frozenset[str] = frozenset({"subscribe", "publish", "presence", "send"})
DEFAULT_KEY_PERMISSIONS: frozenset[str] = frozenset({"subscribe", "publish", "presence"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    suspended INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS publishable_keys (
    key TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id),
    permissions TEXT NOT NULL,
    channel_patterns TEXT NOT NULL,
    allowed_origins TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    label TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS secret_keys (
    id TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    app_id TEXT NOT NULL REFERENCES apps(id),
    revoked INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
"""


def random_base62(length: int) -> str:
    """A random string of ``length`` characters from ``[A-Za-z0-9]``."""
    return "".join(secrets.choice(_BASE62) for _ in range(length))


def _mask(secret_value: str) -> str:
    return secret_value[:8] + "…" if len(secret_value) > 8 else "…"


@dataclass(frozen=True, slots=True)
class App:
    id: str
    name: str
    suspended: bool


@dataclass(frozen=True, slots=True)
class PublishableKey:
    key: str = field(repr=False)
    app_id: str
    permissions: frozenset[str]
    channel_patterns: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    revoked: bool
    label: str = ""

    @property
    def masked(self) -> str:
        """The key with all but its prefix hidden, for listings and logs."""
        return _mask(self.key)


@dataclass(frozen=True, slots=True)
class SecretKey:
    id: str
    secret: str = field(repr=False)
    app_id: str
    revoked: bool


class Store:
    """The app and key store. Each call is one short SQLite transaction."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    # --- apps -------------------------------------------------------------

    def create_app(self, name: str) -> App:
        """Create a tenant."""
        if not name:
            raise ValueError("an app needs a name")
        app = App("app_" + random_base62(16), name, False)
        self._db.execute(
            "INSERT INTO apps (id, name, suspended, created) VALUES (?, ?, 0, ?)",
            (app.id, name, time.time()),
        )
        return app

    def get_app(self, app_id: str) -> App | None:
        """The app with that id, or None."""
        row = self._db.execute(
            "SELECT id, name, suspended FROM apps WHERE id = ?", (app_id,)
        ).fetchone()
        return App(row[0], row[1], bool(row[2])) if row else None

    def find_app(self, name: str) -> App | None:
        """The oldest app with that name, or None."""
        row = self._db.execute(
            "SELECT id, name, suspended FROM apps WHERE name = ? ORDER BY created LIMIT 1",
            (name,),
        ).fetchone()
        return App(row[0], row[1], bool(row[2])) if row else None

    def list_apps(self) -> list[App]:
        """Every app, oldest first."""
        rows = self._db.execute("SELECT id, name, suspended FROM apps ORDER BY created")
        return [App(r[0], r[1], bool(r[2])) for r in rows]

    def set_suspended(self, app_id: str, suspended: bool) -> None:
        """Suspend or reinstate an app."""
        self._require_app(app_id)
        self._db.execute("UPDATE apps SET suspended = ? WHERE id = ?", (int(suspended), app_id))

    def _require_app(self, app_id: str) -> None:
        if self.get_app(app_id) is None:
            raise KeyError(f"no such app: {app_id}")

    # --- publishable keys -------------------------------------------------

    def create_publishable_key(
        self,
        app_id: str,
        *,
        permissions: Iterable[str] = DEFAULT_KEY_PERMISSIONS,
        channel_patterns: Iterable[str] = ("*",),
        allowed_origins: Iterable[str] = (),
        label: str = "",
    ) -> PublishableKey:
        """Issue a ``pk_live_`` key for an app."""
        self._require_app(app_id)
        perms = frozenset(permissions)
        unknown = perms - ALL_PERMISSIONS
        if unknown:
            raise ValueError(f"unknown permissions: {sorted(unknown)}")
        patterns = tuple(channel_patterns)
        if not patterns or any(not p for p in patterns):
            raise ValueError("channel patterns must be non-empty strings")
        key = PublishableKey(
            "pk_live_" + random_base62(24),
            app_id,
            perms,
            patterns,
            tuple(allowed_origins),
            False,
            label,
        )
        self._db.execute(
            "INSERT INTO publishable_keys (key, app_id, permissions, channel_patterns,"
            " allowed_origins, revoked, label, created) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
            (
                key.key,
                app_id,
                json.dumps(sorted(perms)),
                json.dumps(patterns),
                json.dumps(key.allowed_origins),
                label,
                time.time(),
            ),
        )
        return key

    def get_publishable_key(self, key: str) -> PublishableKey | None:
        """The key record for that key string, or None."""
        row = self._db.execute(
            "SELECT key, app_id, permissions, channel_patterns, allowed_origins, revoked, label"
            " FROM publishable_keys WHERE key = ?",
            (key,),
        ).fetchone()
        return self._pk(row) if row else None

    def list_publishable_keys(self, app_id: str | None = None) -> list[PublishableKey]:
        """Publishable keys, of one app or all."""
        sql = (
            "SELECT key, app_id, permissions, channel_patterns, allowed_origins, revoked, label"
            " FROM publishable_keys"
        )
        rows = (
            self._db.execute(sql + " WHERE app_id = ? ORDER BY created", (app_id,))
            if app_id
            else self._db.execute(sql + " ORDER BY created")
        )
        return [self._pk(r) for r in rows]

    @staticmethod
    def _pk(row: tuple[str, str, str, str, str, int, str]) -> PublishableKey:
        return PublishableKey(
            row[0],
            row[1],
            frozenset(json.loads(row[2])),
            tuple(json.loads(row[3])),
            tuple(json.loads(row[4])),
            bool(row[5]),
            row[6],
        )

    # --- secret keys ------------------------------------------------------

    def create_secret_key(self, app_id: str) -> SecretKey:
        """Issue a secret key: a public ``sk_id_`` id and its ``sk_live_`` secret."""
        self._require_app(app_id)
        key = SecretKey("sk_id_" + random_base62(16), "sk_live_" + random_base62(32), app_id, False)
        self._db.execute(
            "INSERT INTO secret_keys (id, secret, app_id, revoked, created) VALUES (?, ?, ?, 0, ?)",
            (key.id, key.secret, app_id, time.time()),
        )
        return key

    def get_secret_key(self, key_id: str) -> SecretKey | None:
        """The secret key with that public id, or None."""
        row = self._db.execute(
            "SELECT id, secret, app_id, revoked FROM secret_keys WHERE id = ?", (key_id,)
        ).fetchone()
        return SecretKey(row[0], row[1], row[2], bool(row[3])) if row else None

    def list_secret_keys(self, app_id: str | None = None) -> list[SecretKey]:
        """Secret keys, of one app or all."""
        sql = "SELECT id, secret, app_id, revoked FROM secret_keys"
        rows = (
            self._db.execute(sql + " WHERE app_id = ? ORDER BY created", (app_id,))
            if app_id
            else self._db.execute(sql + " ORDER BY created")
        )
        return [SecretKey(r[0], r[1], r[2], bool(r[3])) for r in rows]

    # --- revocation -------------------------------------------------------

    def revoke(self, key_or_id: str) -> bool:
        """Revoke a publishable key (by key) or a secret key (by id). True if one matched."""
        if key_or_id.startswith("pk_"):
            cur = self._db.execute(
                "UPDATE publishable_keys SET revoked = 1 WHERE key = ?", (key_or_id,)
            )
        else:
            cur = self._db.execute("UPDATE secret_keys SET revoked = 1 WHERE id = ?", (key_or_id,))
        return cur.rowcount > 0
