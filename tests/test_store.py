"""The store's foundations: migrations, connection settings, transactions, time format."""

import threading
from datetime import datetime, timezone

import pytest

from phase_lite.store import Conflict, SqliteDatabase, format_time, now, render_time

pytestmark = pytest.mark.both_backends


@pytest.fixture
def fresh(tmp_path):
    db = SqliteDatabase(tmp_path / "t.sqlite3")
    db.migrate()
    yield db
    db.close()


def test_migrations_apply_once_and_twice_is_harmless(fresh):
    tables = {r[0] for r in fresh.all("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"organisations", "roles", "users", "service_accounts", "tokens", "apps",
            "environments", "environment_access", "folders", "tags", "secrets", "secret_tags",
            "secret_versions", "personal_secrets", "audit_events", "meta"} <= tables
    applied = fresh.all("SELECT name FROM _sqlite_migrations")
    fresh.migrate()
    assert fresh.all("SELECT name FROM _sqlite_migrations") == applied


def test_lookup_indexes_exist(fresh):
    indexes = {r[0] for r in fresh.all("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"secrets_live_lookup", "secrets_by_environment"} <= indexes
    plan = " ".join(str(tuple(r)) for r in fresh.all(
        "EXPLAIN QUERY PLAN SELECT id FROM secrets WHERE environment_id = ? AND key_digest = ?"
        " AND path = ? AND deleted_at IS NULL", ("e", "d", "/")))
    assert "secrets_live_lookup" in plan
    token_plan = " ".join(str(tuple(r)) for r in fresh.all(
        "EXPLAIN QUERY PLAN SELECT id FROM tokens WHERE token_hash = ?", ("h",)))
    assert "USING INDEX" in token_plan or "USING COVERING INDEX" in token_plan


def test_connection_settings(fresh):
    assert fresh.scalar("PRAGMA journal_mode") == "wal"
    assert fresh.scalar("PRAGMA synchronous") == 2  # FULL
    assert fresh.scalar("PRAGMA foreign_keys") == 1
    assert fresh.scalar("PRAGMA busy_timeout") >= 5000


def test_each_thread_has_its_own_connection(fresh):
    seen = []
    thread = threading.Thread(target=lambda: seen.append(fresh.conn))
    thread.start()
    thread.join()
    assert seen[0] is not fresh.conn


def test_a_lookup_of_text_holding_nul_finds_nothing(db, demo):
    # PostgreSQL cannot hold NUL in text: such a value equals no stored text, as on SQLite.
    app_id = demo[0]["id"]
    assert db.one("SELECT id FROM apps WHERE id = ?", (app_id,)) is not None
    for probe in (app_id + "\x00", "\x00", "x\x00y"):
        assert db.one("SELECT id FROM apps WHERE id = ?", (probe,)) is None
        assert db.all("SELECT id FROM apps WHERE id IN (?, ?)", (probe, app_id)) != []
        assert db.one("SELECT id FROM apps WHERE id = :id", {"id": probe}) is None


def test_transactions_roll_back_on_error(fresh):
    with fresh.transaction():
        fresh.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
    with pytest.raises(RuntimeError):
        with fresh.transaction():
            fresh.execute("INSERT INTO meta (key, value) VALUES ('b', '2')")
            raise RuntimeError
    assert [tuple(r) for r in fresh.all("SELECT key FROM meta")] == [("a",)]


def test_commit_actions_run_after_the_outermost_commit_and_never_after_a_rollback(db):
    done = []
    with db.transaction():
        db.execute("INSERT INTO meta (key, value) VALUES ('commit-test', '1')")
        db.on_commit(lambda: done.append("outer"))
        with db.transaction():  # a nested block joins: its actions wait for the outer commit
            db.on_commit(lambda: done.append("inner"))
        assert done == []
    assert done == ["outer", "inner"]

    with pytest.raises(RuntimeError), db.transaction():
        db.execute("DELETE FROM meta WHERE key = 'commit-test'")
        db.on_commit(lambda: done.append("rolled back"))
        raise RuntimeError
    with pytest.raises(Conflict), db.transaction():
        db.on_commit(lambda: done.append("refused"))
        db.execute("INSERT INTO meta (key, value) VALUES ('commit-test', '2')")
    assert done == ["outer", "inner"]
    assert db.scalar("SELECT value FROM meta WHERE key = 'commit-test'") == "1"

    with db.transaction():  # what a rolled-back transaction registered is not carried over
        pass
    assert done == ["outer", "inner"]
    db.on_commit(lambda: done.append("now"))  # outside a transaction: at once
    assert done == ["outer", "inner", "now"]


def test_integrity_errors_become_conflicts_without_sqlite_types(fresh):
    fresh.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
    with pytest.raises(Conflict):
        fresh.execute("INSERT INTO meta (key, value) VALUES ('a', '2')")


def test_time_format_matches_phase():
    moment = datetime(2024, 2, 13, 13, 41, 45, 551255, tzinfo=timezone.utc)
    assert format_time(moment) == "2024-02-13T13:41:45.551255Z"
    assert render_time("2024-02-13T13:41:45.000000Z") == "2024-02-13T13:41:45Z"
    assert render_time("2024-02-13T13:41:45.551255Z") == "2024-02-13T13:41:45.551255Z"
    assert now().endswith("Z") and len(now()) == 27


def test_case_insensitive_names_fold_ascii_letters_only_on_every_backend(db, make_app):
    from phase_lite.store import apps as app_store
    from phase_lite.store import new_id

    app_row, _ = make_app("cases", ["Dev"])

    def add(name):
        with db.transaction():
            app_store.insert_environment(db, new_id(), app_row["id"], name, "custom", 9,
                                         b"seed", b"salt", "pk")

    add("Ärger")
    assert [app_store.find_environment(db, app_row["id"], name)["name"]
            for name in ("dev", "DEV", "Ärger", "ÄRGER")] == ["Dev", "Dev", "Ärger", "Ärger"]
    assert app_store.find_environment(db, app_row["id"], "ärger") is None
    with pytest.raises(Conflict):
        add("dEV")
    add("ärger")  # another name: Ä and ä are not ASCII letters
    assert app_store.find_environment(db, app_row["id"], "ärger")["name"] == "ärger"


def test_bookkeeping_commits_leave_the_generation_and_others_move_it(tmp_path):
    """Read caches survive read-audit flushes and last-use stamps, from this thread, another
    thread or another connection (process); every other commit moves the generation for all."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "g.sqlite3"
    db, other = SqliteDatabase(path), SqliteDatabase(path)  # other: as another process holds it
    worker = ThreadPoolExecutor(max_workers=1)  # one serving thread, its own connection
    try:
        db.migrate()

        def look_from_thread():
            return worker.submit(db.generation).result()

        def write(database, bookkeeping):
            with database.transaction(bookkeeping=bookkeeping):
                database.execute("INSERT INTO meta (key, value) VALUES (?, 'x')"
                                 " ON CONFLICT (key) DO UPDATE SET value = value || 'x'",
                                 (f"k{bookkeeping}",))

        start = db.generation()
        look_from_thread()
        start = db.generation()
        for database in (db, other):
            write(database, True)
            assert db.generation() == start
            assert look_from_thread() == db.generation() == start
        write(other, False)
        moved = db.generation()
        assert moved > start
        write(db, False)
        assert db.generation() > moved
    finally:
        worker.shutdown()
        db.close()
        other.close()


def test_a_commit_of_this_process_moves_the_generation_once_for_every_thread(tmp_path):
    """Every serving thread sees one move per commit, whether this process made it (the
    committing thread or another) or another connection (process) did: a move per thread
    would empty the read caches once more each time. A commit of another connection still
    moves it, also when this process committed after it."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "g.sqlite3"
    db, other = SqliteDatabase(path), SqliteDatabase(path)
    workers = [ThreadPoolExecutor(max_workers=1) for _ in range(2)]
    try:
        db.migrate()

        def looks():
            return [db.generation()] + [w.submit(db.generation).result() for w in workers]

        def write(database, n):
            with database.transaction():
                database.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (f"k{n}",))

        looks()
        start = db.generation()
        assert looks() == [start] * 3
        write(db, 1)
        assert looks() == [start + 1] * 3
        with ThreadPoolExecutor(max_workers=1) as writer:
            writer.submit(write, db, 2).result()
        assert looks() == [start + 2] * 3
        write(other, 3)  # another process
        assert looks() == [start + 3] * 3
        write(other, 4)  # then this process, before any thread looked
        write(db, 5)
        assert looks() == [start + 4] * 3
        write(other, 6)
        assert [w.submit(db.generation).result() for w in workers] == [start + 5] * 2
        assert db.generation() == start + 5
    finally:
        for worker in workers:
            worker.shutdown()
        db.close()
        other.close()
