"""m007_secret_version_events on a database written before it: rows kept byte for byte, actors
taken from the audit log where it still has them, the new event allowed."""

import json

import pytest

from phase_lite import migrations
from phase_lite.store import Conflict, SqliteDatabase

SECRET, OTHER = "secret-1", "secret-2"


@pytest.fixture
def old_db(tmp_path):
    """A database at m001 holding three versions of one secret and one of another, with audit
    events for the create (a user) and the update (a service account) only."""
    db = SqliteDatabase(tmp_path / "old.sqlite3")
    migrations.migrations.apply(db.utils(), stop_before="m007_secret_version_events")
    stamp = "2026-01-01T00:00:00.000000Z"
    with db.transaction():
        db.execute("INSERT INTO organisations VALUES ('org', 'o', ?, ?)", (stamp, stamp))
        db.execute("INSERT INTO apps (id, organisation_id, name, wrapped_data_key, created_at,"
                   " updated_at) VALUES ('app', 'org', 'a', x'00', ?, ?)", (stamp, stamp))
        db.execute("INSERT INTO environments (id, app_id, name, env_type, sort_index, seed_enc,"
                   " salt_enc, public_key, created_at, updated_at) VALUES ('env', 'app', 'e',"
                   " 'dev', 0, x'00', x'00', 'pk', ?, ?)", (stamp, stamp))
        for secret_id in (SECRET, OTHER):
            db.execute("INSERT INTO secrets (id, environment_id, path, key_digest, key_enc,"
                       " value_enc, comment_enc, created_at, updated_at) VALUES"
                       " (?, 'env', '/', 'd', x'01', x'02', x'03', ?, ?)",
                       (secret_id, stamp, stamp))
        for version_id, secret_id, version, event in (
                ("v1", SECRET, 1, "create"), ("v2", SECRET, 2, "update"),
                ("v3", SECRET, 2, "delete"), ("v4", OTHER, 1, "create")):
            db.execute("INSERT INTO secret_versions (id, secret_id, version, event, path,"
                       " key_digest, key_enc, value_enc, comment_enc, type, tags, created_at)"
                       " VALUES (?, ?, ?, ?, '/', 'd', ?, x'0b', x'0c', 'secret', '[\"t\"]', ?)",
                       (version_id, secret_id, version, event, version_id.encode(), stamp))
        for action, actor_type, actor_id, details in (
                ("secrets.create", "user", "u1",
                 {"secrets": [{"id": SECRET, "version": 1}, {"id": OTHER, "version": 1}]}),
                ("secrets.update", "service", "sa1", {"secrets": [{"id": SECRET, "version": 2}]}),
                ("secrets.read", "user", "u2", {"secrets": [SECRET]})):
            db.execute("INSERT INTO audit_events (created_at, actor_type, actor_id, action,"
                       " resource_type, details) VALUES (?, ?, ?, ?, 'secret', ?)",
                       (stamp, actor_type, actor_id, action, json.dumps(details)))
    yield db
    db.close()


def test_versions_keep_their_rows_and_gain_their_actors(old_db):
    before = [tuple(row) for row in old_db.all("SELECT * FROM secret_versions ORDER BY rowid")]
    old_db.migrate()
    rows = old_db.all("SELECT * FROM secret_versions ORDER BY rowid")
    kept = [tuple(row[c] for c in ("id", "secret_id", "version", "event", "path", "key_digest",
                                   "key_enc", "value_enc", "comment_enc", "type", "tags",
                                   "created_at")) for row in rows]
    assert kept == before
    assert [(row["id"], row["actor_type"], row["actor_id"], row["restored_from"])
            for row in rows] == [("v1", "user", "u1", None), ("v2", "service", "sa1", None),
                                 ("v3", None, None, None), ("v4", "user", "u1", None)]
    assert old_db.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                         " AND name = 'secret_versions_by_secret'") == 1


def test_restore_events_are_allowed_and_others_still_refused(old_db):
    old_db.migrate()
    insert = ("INSERT INTO secret_versions (id, secret_id, version, event, restored_from, path,"
              " key_digest, key_enc, value_enc, comment_enc, type, tags, created_at) VALUES"
              " (?, ?, 3, ?, 1, '/', 'd', x'00', x'00', x'00', 'secret', '[]', 'now')")
    with old_db.transaction():
        old_db.execute(insert, ("v5", SECRET, "restore"))
    with pytest.raises(Conflict), old_db.transaction():
        old_db.execute(insert, ("v6", SECRET, "rollback"))
    with pytest.raises(Conflict), old_db.transaction():
        old_db.execute(insert, ("v7", "no-such-secret", "restore"))


def test_deleting_a_secret_row_still_removes_its_history(old_db):
    old_db.migrate()
    with old_db.transaction():
        old_db.execute("DELETE FROM secrets WHERE id = ?", (SECRET,))
    assert old_db.scalar("SELECT count(*) FROM secret_versions") == 1
