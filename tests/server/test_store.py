"""The app and key store, over both backends: a SQLite file and a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import string
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.postgres import PostgresServer

from metered_realtime.server.store import (
    ALL_PERMISSIONS,
    DEFAULT_KEY_PERMISSIONS,
    PostgresStore,
    PublishableKey,
    SecretKey,
    Store,
    StoreSnapshot,
    open_store,
)


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What ``--db`` would say: a SQLite file path, or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    url: str = request.getfixturevalue("postgres_store_url")
    return url


@pytest.fixture
def store(target: str) -> Iterator[Store]:
    s = open_store(target)
    yield s
    s.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- both backends ---------------------------------------------------------


def test_open_store_picks_the_backend(target: str, store: Store) -> None:
    assert isinstance(store, Store)
    assert isinstance(store, PostgresStore) == target.startswith("postgresql://")


def test_apps(store: Store) -> None:
    shop = store.create_app("shop")
    other = store.create_app("other")
    twin = store.create_app("shop")
    assert shop.id.startswith("app_") and len(shop.id) == 4 + 16
    assert store.get_app(shop.id) == shop
    assert store.get_app("app_missing") is None
    assert store.find_app("shop") == shop  # the oldest of that name
    assert store.find_app("nope") is None
    assert store.list_apps() == [shop, other, twin]
    with pytest.raises(ValueError):
        store.create_app("")

    store.set_suspended(shop.id, True)
    assert store.get_app(shop.id) == dataclasses.replace(shop, suspended=True)
    assert store.get_app(other.id) == other
    store.set_suspended(shop.id, False)
    assert store.get_app(shop.id) == shop
    with pytest.raises(KeyError):
        store.set_suspended("app_missing", True)


def test_publishable_keys(store: Store) -> None:
    app = store.create_app("shop")
    other = store.create_app("other")
    plain = store.create_publishable_key(app.id)
    custom = store.create_publishable_key(
        app.id,
        permissions=ALL_PERMISSIONS,
        channel_patterns=["room-*", "lobby"],
        allowed_origins=["https://shop.example"],
        label="web",
    )
    elsewhere = store.create_publishable_key(other.id)

    assert plain.key.startswith("pk_live_") and len(plain.key) == 8 + 24
    assert plain.permissions == DEFAULT_KEY_PERMISSIONS
    assert plain.channel_patterns == ("*",)
    assert plain.allowed_origins == ()
    assert not plain.revoked and plain.label == ""
    assert store.get_publishable_key(plain.key) == plain
    assert store.get_publishable_key(custom.key) == PublishableKey(
        custom.key,
        app.id,
        ALL_PERMISSIONS,
        ("room-*", "lobby"),
        ("https://shop.example",),
        False,
        "web",
    )
    assert store.get_publishable_key("pk_live_" + "x" * 24) is None
    assert store.list_publishable_keys(app.id) == [plain, custom]
    assert store.list_publishable_keys(other.id) == [elsewhere]
    assert store.list_publishable_keys() == [plain, custom, elsewhere]

    with pytest.raises(ValueError, match="unknown permissions"):
        store.create_publishable_key(app.id, permissions=["subscribe", "admin"])
    with pytest.raises(ValueError):
        store.create_publishable_key(app.id, channel_patterns=[])
    with pytest.raises(ValueError):
        store.create_publishable_key(app.id, channel_patterns=["ok", ""])
    with pytest.raises(KeyError):
        store.create_publishable_key("app_missing")
    assert len(store.list_publishable_keys()) == 3  # nothing half-created


def test_secret_keys(store: Store) -> None:
    app = store.create_app("shop")
    other = store.create_app("other")
    first = store.create_secret_key(app.id)
    second = store.create_secret_key(app.id)
    elsewhere = store.create_secret_key(other.id)
    assert first.id.startswith("sk_id_") and len(first.id) == 6 + 16
    assert first.secret.startswith("sk_live_") and len(first.secret) == 8 + 32
    assert store.get_secret_key(first.id) == first
    assert store.get_secret_key(first.secret) is None  # looked up by public id only
    assert store.list_secret_keys(app.id) == [first, second]
    assert store.list_secret_keys() == [first, second, elsewhere]
    with pytest.raises(KeyError):
        store.create_secret_key("app_missing")


def test_revoke(store: Store) -> None:
    app = store.create_app("shop")
    pk = store.create_publishable_key(app.id)
    kept = store.create_publishable_key(app.id)
    sk = store.create_secret_key(app.id)

    assert store.revoke(pk.key) is True
    assert store.revoke(sk.id) is True
    assert store.get_publishable_key(pk.key) == dataclasses.replace(pk, revoked=True)
    assert store.get_secret_key(sk.id) == dataclasses.replace(sk, revoked=True)
    assert store.get_publishable_key(kept.key) == kept
    assert store.revoke("pk_live_" + "x" * 24) is False
    assert store.revoke("sk_id_missing") is False
    assert store.revoke(sk.secret) is False  # a secret is not an id


def test_snapshot(store: Store) -> None:
    empty = store.snapshot()
    assert empty == StoreSnapshot({}, {}, {})

    app = store.create_app("shop")
    other = store.create_app("other")
    pk = store.create_publishable_key(app.id, label="a")
    pk2 = store.create_publishable_key(other.id, permissions=["subscribe"])
    sk = store.create_secret_key(app.id)
    store.revoke(pk2.key)
    store.set_suspended(other.id, True)

    snap = store.snapshot()
    assert isinstance(snap, StoreSnapshot)
    assert snap.apps == {app.id: app, other.id: dataclasses.replace(other, suspended=True)}
    assert snap.publishable == {pk.key: pk, pk2.key: dataclasses.replace(pk2, revoked=True)}
    assert snap.secret == {sk.id: sk}
    assert snap.secret[sk.id].secret == sk.secret
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.apps = {}  # type: ignore[misc]

    # the store still works normally after a snapshot's transaction
    later = store.create_secret_key(other.id)
    assert store.snapshot().secret == {sk.id: sk, later.id: later}


def test_masking_and_credential_ref(store: Store) -> None:
    app = store.create_app("shop")
    pk = store.create_publishable_key(app.id)
    sk = store.create_secret_key(app.id)
    again = store.get_publishable_key(pk.key)
    assert again is not None

    assert pk.masked == "pk_live_…" + pk.key[-4:]
    assert again.masked == pk.masked
    assert pk.key[8:-4] not in pk.masked
    assert sk.masked == "sk_live_…" + sk.secret[-4:]
    assert sk.secret[8:-4] not in sk.masked

    ref = pk.credential_ref
    assert ref == hashlib.sha256(pk.key.encode()).hexdigest()[:16]
    assert len(ref) == 16 and int(ref, 16) >= 0
    assert again.credential_ref == ref  # stable across reads
    assert store.snapshot().publishable[pk.key].credential_ref == ref
    assert store.create_publishable_key(app.id).credential_ref != ref

    for text in (repr(pk), str(pk), repr(store.snapshot())):
        assert pk.key not in text
        assert pk.key[8:] not in text
    for text in (repr(sk), repr(store.snapshot())):
        assert sk.secret not in text
        assert sk.secret[8:] not in text


def test_masking_short_values() -> None:
    short = PublishableKey("pk_live_abc", "app_x", frozenset(), ("*",), (), False)
    assert short.masked == "pk_live_…"  # too short to show any of it
    assert SecretKey("sk_id_1", "hunter2hunter2", "app_x", False).masked == "…"


def test_reopened_and_second_store_see_the_data(target: str, store: Store) -> None:
    app = store.create_app("shop")
    pk = store.create_publishable_key(app.id)
    second = open_store(target)
    try:
        assert second.get_publishable_key(pk.key) == pk
        sk = second.create_secret_key(app.id)
        second.revoke(pk.key)
        assert store.get_secret_key(sk.id) == sk
        got = store.get_publishable_key(pk.key)
        assert got is not None and got.revoked
        assert store.snapshot() == second.snapshot()
    finally:
        second.close()
    store.close()
    reopened = open_store(target)
    try:
        assert reopened.list_apps() == [app]
        assert reopened.list_secret_keys() == [sk]
    finally:
        reopened.close()


def test_store_is_usable_from_threads(store: Store) -> None:
    app = store.create_app("shop")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                store.create_publishable_key(app.id)
                store.snapshot()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(store.snapshot().publishable) == 40


# --- SQLite: secrets at rest, several processes ------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_sqlite_files_are_private(tmp_path: Path, umask: int) -> None:
    db = tmp_path / "store.db"
    old = os.umask(umask)
    try:
        store = Store(str(db))
    finally:
        os.umask(old)
    try:
        app = store.create_app("shop")
        store.create_secret_key(app.id)
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        store.close()


def test_sqlite_loose_files_are_tightened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # What an older version left behind: a 0644 store whose process died with data still in the
    # WAL (a clean close would have checkpointed and removed -wal and -shm).
    db = tmp_path / "store.db"
    crash = (
        "import os, sqlite3, sys\n"
        "store = Store(sys.argv[1])\n"
        "app = store.create_app('before')\n"
        "store.create_secret_key(app.id)\n"
        "for suffix in ('', '-wal', '-shm'):\n"
        "    os.chmod(sys.argv[1] + suffix, 0o644)\n"
        "os._exit(0)\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from metered_realtime.server.store import Store\n" + crash,
            str(db),
        ],
        check=True,
        timeout=60,
    )
    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    assert {f.name: _mode(f) for f in files} == {f.name: 0o644 for f in files}
    assert Path(f"{db}-wal").stat().st_size > 0

    with caplog.at_level("WARNING", logger="metered_realtime.server.store"):
        store = Store(str(db))
    try:
        assert [a.name for a in store.list_apps()] == ["before"]  # recovered from the WAL
        assert len(store.list_secret_keys()) == 1
        store.create_app("after")
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert caplog.text.count("0600") == 3
    finally:
        store.close()


def _child(db: Path, code: str) -> subprocess.Popen[str]:
    prelude = (
        "import json, sys\n"
        "from metered_realtime.server.store import open_store\n"
        "store = open_store(sys.argv[1])\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", prelude + code, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str]) -> object:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out)


def test_sqlite_shared_between_processes(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = Store(str(db))
    try:
        mine = store.create_app("parent")
        write = (
            "app = store.create_app('child')\n"
            "keys = [store.create_publishable_key(app.id).key for _ in range(20)]\n"
            "print(json.dumps({'app': app.id, 'keys': keys}))\n"
        )
        children = [_child(db, write) for _ in range(2)]  # two writers at once
        parent_keys = [store.create_publishable_key(mine.id).key for _ in range(20)]
        results = [_result(c) for c in children]

        snap = store.snapshot()
        for res in results:
            assert isinstance(res, dict)
            assert snap.apps[res["app"]].name == "child"
            assert set(res["keys"]) <= snap.publishable.keys()
        assert set(parent_keys) <= snap.publishable.keys()
        assert len(snap.publishable) == 60

        store.revoke(parent_keys[0])
        read = (
            f"pk = store.get_publishable_key({parent_keys[0]!r})\n"
            "print(json.dumps({'revoked': pk.revoked, 'apps': len(store.list_apps())}))\n"
        )
        assert _result(_child(db, read)) == {"revoked": True, "apps": 3}
    finally:
        store.close()


# --- PostgreSQL --------------------------------------------------------------


def _open_concurrently(target: str, n: int) -> list[BaseException]:
    """Open ``n`` stores on ``target`` at the same instant; what they raised."""
    barrier = threading.Barrier(n)
    stores: list[Store] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait(timeout=30)
        try:
            stores.append(open_store(target))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in stores:
        s.close()
    assert len(stores) + len(errors) == n
    return errors


def test_postgres_schema_created_concurrently(postgres_server: PostgresServer) -> None:
    # Without the advisory lock, concurrent CREATE TABLE IF NOT EXISTS fails now and then with a
    # unique violation in pg_type; a few fresh databases make that near-certain to show.
    for _round in range(3):
        url = postgres_server.create_database()
        try:
            assert _open_concurrently(url, 6) == []
            store = PostgresStore(url)
            assert store.list_apps() == []
            store.close()
        finally:
            postgres_server.drop_database(url)


def test_postgres_reconnects_after_losing_its_connection(postgres_store_url: str) -> None:
    import psycopg

    store = PostgresStore(postgres_store_url)
    try:
        app = store.create_app("shop")
        with psycopg.connect(postgres_store_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(psycopg.OperationalError):
            store.get_app(app.id)  # this call finds the connection gone
        assert store.get_app(app.id) == app  # the next one reconnects
    finally:
        store.close()


def test_postgres_least_privilege_role(postgres_store_url: str) -> None:
    """A role with only SELECT, INSERT, UPDATE on the three tables (no CREATE) can run the store."""
    import psycopg

    PostgresStore(postgres_store_url).close()  # an admin creates the tables once
    role = "rt_" + os.urandom(4).hex()
    with psycopg.connect(postgres_store_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN".encode())
        admin.execute(
            f"GRANT SELECT, INSERT, UPDATE ON apps, publishable_keys, secret_keys TO {role}".encode()
        )
    store = PostgresStore(postgres_store_url.replace("postgres@", f"{role}@", 1))
    try:
        app = store.create_app("shop")
        pk = store.create_publishable_key(app.id)
        assert store.revoke(pk.key)
        assert store.snapshot().publishable[pk.key].revoked
    finally:
        store.close()
        with psycopg.connect(postgres_store_url, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}".encode())
            admin.execute(f"DROP ROLE {role}".encode())


def test_sqlite_opened_by_many_at_once(tmp_path: Path) -> None:
    # `serve --workers N` starts N processes that open (and create) the same file together;
    # SQLite calls no busy handler while it switches the journal to WAL.
    for round_ in range(20):
        assert _open_concurrently(str(tmp_path / f"race-{round_}.db"), 6) == []


def test_random_base62_gives_the_length_and_every_character_of_the_alphabet() -> None:
    from metered_realtime.server.store import random_base62

    values = [random_base62(n) for n in (1, 7, 20, 32, 300) for _ in range(40)]
    assert [len(v) for v in values] == [n for n in (1, 7, 20, 32, 300) for _ in range(40)]
    alphabet = string.ascii_letters + string.digits
    seen = set("".join(values))
    assert seen == set(alphabet)  # 40 x 360 characters: every one of the 62 shows up
    assert len(set(values[-40:])) == 40
