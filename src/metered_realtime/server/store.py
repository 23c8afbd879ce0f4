"""Apps, publishable keys and secret keys: in one SQLite file, or in PostgreSQL.

``open_store(target)`` picks the backend: a ``postgresql://`` (or ``postgres://``) URL opens a
:class:`PostgresStore`, anything else is a SQLite file path opened by :class:`Store`. Both have the
same methods; :class:`Store` is the type callers name. All SQL, validation and row conversion is
shared; a backend only knows how to open its connection, run one statement and hold a transaction.

The store holds ``sk_live_`` secrets, so a SQLite file (and its ``-wal``/``-shm`` companions) is
created with mode 0600, and an existing one with a looser mode is tightened when we own it.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import stat
import string
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..tokens import PERMISSIONS

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("metered_realtime.server.store")

_BASE62 = string.ascii_letters + string.digits
# The one permission set: tokens.py holds it, as the SDK mints tokens without the server.
ALL_PERMISSIONS: frozenset[str] = PERMISSIONS
DEFAULT_KEY_PERMISSIONS: frozenset[str] = frozenset({"subscribe", "publish", "presence"})

POSTGRES_URL_PREFIXES = ("postgresql://", "postgres://")

# Table name -> its DDL. ``{float}`` is the column type of a Unix timestamp: SQLite's REAL is 8
# bytes, PostgreSQL's is 4 (too coarse to order keys created in the same second), so PostgreSQL
# gets DOUBLE PRECISION.
_SCHEMA = {
    "apps": """CREATE TABLE IF NOT EXISTS apps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    suspended INTEGER NOT NULL DEFAULT 0,
    created {float} NOT NULL
)""",
    "publishable_keys": """CREATE TABLE IF NOT EXISTS publishable_keys (
    key TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id),
    permissions TEXT NOT NULL,
    channel_patterns TEXT NOT NULL,
    allowed_origins TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    label TEXT NOT NULL DEFAULT '',
    created {float} NOT NULL
)""",
    "secret_keys": """CREATE TABLE IF NOT EXISTS secret_keys (
    id TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    app_id TEXT NOT NULL REFERENCES apps(id),
    revoked INTEGER NOT NULL DEFAULT 0,
    created {float} NOT NULL
)""",
}

# Any fixed 64-bit number; held (per transaction) while PostgreSQL creates the schema, so that
# processes starting at once do not race on ``CREATE TABLE IF NOT EXISTS`` (which can fail with a
# unique violation in the catalogue when two sessions create the same table concurrently).
_SCHEMA_LOCK_ID = 0x6D72_5F73_746F_7265  # "mr_store"

_APP_COLUMNS = "id, name, suspended"
_PK_COLUMNS = "key, app_id, permissions, channel_patterns, allowed_origins, revoked, label"
_SK_COLUMNS = "id, secret, app_id, revoked"

Row = Sequence[Any]


def random_base62(length: int) -> str:
    """A random string of ``length`` characters from ``[A-Za-z0-9]``, each equally likely.

    One read of the system's random source (``secrets.choice`` per character made one each,
    5% of the server's time while clients connect): a byte below 248 (4 x 62) picks a
    character, the few above are skipped.
    """
    chars = ""
    for _ in range(100):
        chars += "".join([_BASE62[b % 62] for b in secrets.token_bytes(length + 8) if b < 248])
        if len(chars) >= length:
            return chars[:length]
    raise RuntimeError("the random source kept returning bytes out of range")


def _mask(value: str) -> str:
    """``pk_live_…Ab3x``: the type prefix and, if the rest is long enough, its last 4 chars."""
    prefix, sep, rest = value.rpartition("_")
    head = prefix + sep if sep and len(prefix) <= 8 else ""
    if not head:
        rest = value
    return head + "…" + (rest[-4:] if len(rest) >= 16 else "")


# --- records ---------------------------------------------------------------


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
        """The key for listings and logs: its prefix and last 4 characters (``pk_live_…Ab3x``)."""
        return _mask(self.key)

    @property
    def credential_ref(self) -> str:
        """A stable, non-secret id of this key (16 hex chars of its SHA-256), to match sessions."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SecretKey:
    id: str
    secret: str = field(repr=False)
    app_id: str
    revoked: bool

    @property
    def masked(self) -> str:
        """The secret for listings: its prefix and last 4 characters (``sk_live_…wXyZ``)."""
        return _mask(self.secret)


@dataclass(frozen=True, slots=True, repr=False)
class StoreSnapshot:
    """Every app (by id), publishable key (by key) and secret key (by id), read at one instant."""

    apps: dict[str, App]
    publishable: dict[str, PublishableKey]
    secret: dict[str, SecretKey]

    def __repr__(self) -> str:
        # Publishable keys are dict keys here, so the default repr would print them.
        return (
            f"StoreSnapshot(apps={len(self.apps)}, publishable={len(self.publishable)},"
            f" secret={len(self.secret)})"
        )


def _app(row: Row) -> App:
    return App(row[0], row[1], bool(row[2]))


def _pk(row: Row) -> PublishableKey:
    return PublishableKey(
        row[0],
        row[1],
        frozenset(json.loads(row[2])),
        tuple(json.loads(row[3])),
        tuple(json.loads(row[4])),
        bool(row[5]),
        row[6],
    )


def _sk(row: Row) -> SecretKey:
    return SecretKey(row[0], row[1], row[2], bool(row[3]))


# --- backends --------------------------------------------------------------


class _Database(abc.ABC):
    """One connection. SQL is written with ``?`` placeholders; a backend may translate them."""

    def __init__(self) -> None:
        # The store may be called from several threads; a transaction must not take in another
        # thread's statements, so every statement and every transaction holds this lock.
        self._lock = threading.RLock()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        with self._lock:
            return self._execute(sql, params)[1]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one query; its rows."""
        with self._lock:
            return self._execute(sql, params)[0]

    @contextlib.contextmanager
    def consistent(self) -> Iterator[None]:
        """A read-only transaction: the queries inside see one state of the database."""
        with self._lock, self._transaction():
            yield

    @abc.abstractmethod
    def _execute(self, sql: str, params: Sequence[Any]) -> tuple[list[Row], int]: ...

    @abc.abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[None]: ...

    @abc.abstractmethod
    def close(self) -> None: ...


def _tighten(path: str) -> None:
    """Set ``path`` to mode 0600 if it exists, is ours and lets anyone else in."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(st.st_mode)
    ours = not hasattr(os, "geteuid") or st.st_uid == os.geteuid()
    if mode & 0o077 and ours:
        log.warning("tightening %s from mode %03o to 0600", path, mode)
        os.chmod(path, 0o600)


class _SQLite(_Database):
    def __init__(self, path: str) -> None:
        super().__init__()
        if path and path != ":memory:":
            # Create the file 0600 before SQLite opens it: SQLite gives -wal, -shm and -journal
            # the main file's mode, so that covers them. Files an older version left with a
            # looser mode are tightened.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            for suffix in ("", "-wal", "-shm", "-journal"):
                _tighten(path + suffix)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._enter_wal()
        for ddl in _SCHEMA.values():
            self._db.execute(ddl.format(float="REAL"))

    def _enter_wal(self) -> None:
        # SQLite does not call the busy handler while it switches journal mode, so processes that
        # open a new file together (``serve --workers``) can see "database is locked" here.
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _execute(self, sql: str, params: Sequence[Any]) -> tuple[list[Row], int]:
        cur = self._db.execute(sql, tuple(params))
        return cur.fetchall(), cur.rowcount

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


class _Postgres(_Database):
    """psycopg 3, autocommit, one connection (reopened on the next call if it breaks)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._conn = self._connect()
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
            for table, ddl in _SCHEMA.items():
                # Only missing tables: even CREATE TABLE IF NOT EXISTS needs the CREATE privilege,
                # which a least-privilege role (SELECT, INSERT, UPDATE) does not have.
                found = self._conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
                if found is None or found[0] is None:
                    self._conn.execute(ddl.format(float="DOUBLE PRECISION"))

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise RuntimeError(
                "a postgresql:// store needs psycopg: pip install 'metered-realtime[postgres]'"
            ) from exc
        return psycopg.connect(self._url, autocommit=True)

    def _live(self) -> psycopg.Connection[Any]:
        if self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _execute(self, sql: str, params: Sequence[Any]) -> tuple[list[Row], int]:
        cur = self._live().execute(sql.replace("?", "%s"), tuple(params))
        rows = cur.fetchall() if cur.description is not None else []
        return rows, cur.rowcount

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        conn = self._live()
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    def close(self) -> None:
        self._conn.close()


# --- the store -------------------------------------------------------------


class Store:
    """The app and key store. ``Store(path)`` opens a SQLite file; see also :func:`open_store`.

    Each call is one short statement (or one short read-only transaction, for :meth:`snapshot`).
    """

    def __init__(self, path: str) -> None:
        self._db = self._open(path)

    def _open(self, target: str) -> _Database:
        return _SQLite(target)

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
        rows = self._db.query(f"SELECT {_APP_COLUMNS} FROM apps WHERE id = ?", (app_id,))
        return _app(rows[0]) if rows else None

    def find_app(self, name: str) -> App | None:
        """The oldest app with that name, or None."""
        rows = self._db.query(
            f"SELECT {_APP_COLUMNS} FROM apps WHERE name = ? ORDER BY created LIMIT 1", (name,)
        )
        return _app(rows[0]) if rows else None

    def list_apps(self) -> list[App]:
        """Every app, oldest first."""
        return [
            _app(r) for r in self._db.query(f"SELECT {_APP_COLUMNS} FROM apps ORDER BY created")
        ]

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
        rows = self._db.query(f"SELECT {_PK_COLUMNS} FROM publishable_keys WHERE key = ?", (key,))
        return _pk(rows[0]) if rows else None

    def list_publishable_keys(self, app_id: str | None = None) -> list[PublishableKey]:
        """Publishable keys, of one app or all, oldest first."""
        sql = f"SELECT {_PK_COLUMNS} FROM publishable_keys"
        rows = (
            self._db.query(sql + " WHERE app_id = ? ORDER BY created", (app_id,))
            if app_id
            else self._db.query(sql + " ORDER BY created")
        )
        return [_pk(r) for r in rows]

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
        rows = self._db.query(f"SELECT {_SK_COLUMNS} FROM secret_keys WHERE id = ?", (key_id,))
        return _sk(rows[0]) if rows else None

    def list_secret_keys(self, app_id: str | None = None) -> list[SecretKey]:
        """Secret keys, of one app or all, oldest first."""
        sql = f"SELECT {_SK_COLUMNS} FROM secret_keys"
        rows = (
            self._db.query(sql + " WHERE app_id = ? ORDER BY created", (app_id,))
            if app_id
            else self._db.query(sql + " ORDER BY created")
        )
        return [_sk(r) for r in rows]

    # --- revocation -------------------------------------------------------

    def revoke(self, key_or_id: str) -> bool:
        """Revoke a publishable key (by key) or a secret key (by id). True if one matched."""
        if key_or_id.startswith("pk_"):
            changed = self._db.execute(
                "UPDATE publishable_keys SET revoked = 1 WHERE key = ?", (key_or_id,)
            )
        else:
            changed = self._db.execute(
                "UPDATE secret_keys SET revoked = 1 WHERE id = ?", (key_or_id,)
            )
        return changed > 0

    # --- everything at once -----------------------------------------------

    def snapshot(self) -> StoreSnapshot:
        """Every app, publishable key and secret key, read in one consistent transaction."""
        with self._db.consistent():
            apps = self._db.query(f"SELECT {_APP_COLUMNS} FROM apps ORDER BY created")
            pks = self._db.query(f"SELECT {_PK_COLUMNS} FROM publishable_keys ORDER BY created")
            sks = self._db.query(f"SELECT {_SK_COLUMNS} FROM secret_keys ORDER BY created")
        return StoreSnapshot(
            apps={a.id: a for a in map(_app, apps)},
            publishable={k.key: k for k in map(_pk, pks)},
            secret={k.id: k for k in map(_sk, sks)},
        )


class PostgresStore(Store):
    """The same store in PostgreSQL (``postgresql://user@host/db?sslmode=verify-full``).

    Needs the ``postgres`` extra (psycopg 3). Creating the schema is safe when several processes
    start at once.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)

    def _open(self, target: str) -> _Database:
        return _Postgres(target)


def is_postgres_url(target: str) -> bool:
    """Whether ``--db`` names a PostgreSQL database rather than a SQLite file."""
    return target.lower().startswith(POSTGRES_URL_PREFIXES)


def open_store(target: str) -> Store:
    """The store ``--db`` names: a ``postgresql://`` URL, or else a SQLite file path."""
    return PostgresStore(target) if is_postgres_url(target) else Store(target)
