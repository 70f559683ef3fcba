"""When an app's data key was last replaced: kept by ``rotate_app_key`` (not by a master-key
rotation, which wraps the same data key again), and taken from the audit log by m009 for the
rotations made before it."""

import pytest

import support
from phase_lite import migrations, rotation
from phase_lite.store import SqliteDatabase
from phase_lite.store import apps as app_store


def rotated_at(db, app_id):
    return db.scalar("SELECT data_key_rotated_at FROM apps WHERE id = ?", (app_id,))


def test_a_new_app_has_never_rotated_its_data_key(services, demo):
    assert rotated_at(services.db, demo[0]["id"]) is None


def test_rotate_app_keeps_the_time_and_rotate_master_does_not(config, services, make_app):
    alpha, _ = make_app("alpha")
    beta, _ = make_app("beta")
    rotation.rotate_app_key(services.db, services.vault, alpha["id"])
    stamp = rotated_at(services.db, alpha["id"])
    (event,) = services.db.all("SELECT created_at FROM audit_events WHERE action = ?",
                               ("rotate_data_key",))
    assert stamp is not None and stamp[:16] == event["created_at"][:16]
    rotation.rotate_master_key(config, services.db, services.vault)
    assert rotated_at(services.db, alpha["id"]) == stamp
    assert rotated_at(services.db, beta["id"]) is None
    row = app_store.get_app(services.db, support.organisation_id(services), alpha["id"])
    assert row["data_key_rotated_at"] == stamp


@pytest.fixture
def old_db(tmp_path):
    """A database before m009 with two apps, one rotated twice by the admin command."""
    db = SqliteDatabase(tmp_path / "old.sqlite3")
    migrations.migrations.apply(db.utils(), stop_before="m009_data_key_rotated_at")
    stamp = "2026-01-01T00:00:00.000000Z"
    with db.transaction():
        db.execute("INSERT INTO organisations VALUES ('org', 'o', ?, ?)", (stamp, stamp))
        for app_id in ("rotated", "never"):
            db.execute("INSERT INTO apps (id, organisation_id, name, wrapped_data_key,"
                       " created_at, updated_at) VALUES (?, 'org', ?, x'00', ?, ?)",
                       (app_id, app_id, stamp, stamp))
        for when in ("2026-02-01T00:00:00.000000Z", "2026-03-01T00:00:00.000000Z"):
            db.execute("INSERT INTO audit_events (created_at, actor_type, action, resource_type,"
                       " resource_id, app_id, details) VALUES (?, 'cli', 'rotate_data_key', 'app',"
                       " 'rotated', 'rotated', '{}')", (when,))
    yield db
    db.close()


def test_m009_takes_earlier_rotations_from_the_audit_log(old_db):
    old_db.migrate()
    assert rotated_at(old_db, "rotated") == "2026-03-01T00:00:00.000000Z"
    assert rotated_at(old_db, "never") is None
