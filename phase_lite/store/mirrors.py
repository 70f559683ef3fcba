"""Mirror sources (``phase-lite mirror``) and what mirrored apps and environments are."""

import json

from . import NotFound, now


def insert_source(db, row: dict):
    columns = list(row)
    db.execute(f"INSERT INTO mirror_sources ({', '.join(columns)})"
               f" VALUES ({', '.join('?' * len(columns))})", [row[c] for c in columns])


def list_sources(db, organisation_id):
    return db.all("SELECT * FROM mirror_sources WHERE organisation_id = ?"
                  " ORDER BY created_at, name", (organisation_id,))


def get_source(db, organisation_id, name):
    row = db.one("SELECT * FROM mirror_sources WHERE organisation_id = ? AND name = ?",
                 (organisation_id, name))
    if row is None:
        raise NotFound("mirror source")
    return row


def source_by_id(db, source_id):
    return db.one("SELECT * FROM mirror_sources WHERE id = ?", (source_id,))


def record_attempt(db, source_id, *, error=None, counts=None, next_run_at=None):
    """Note a sync's outcome: a success clears the error and the failure count."""
    stamp = now()
    if error is None:
        db.execute("UPDATE mirror_sources SET last_attempt_at = ?, last_success_at = ?,"
                   " last_error = NULL, failures = 0, next_run_at = ?, counts = ? WHERE id = ?",
                   (stamp, stamp, next_run_at, json.dumps(counts or {}), source_id))
    else:
        db.execute("UPDATE mirror_sources SET last_attempt_at = ?, last_error = ?,"
                   " failures = failures + 1, next_run_at = ? WHERE id = ?",
                   (stamp, error, next_run_at, source_id))


def set_next_run(db, source_id, next_run_at):
    db.execute("UPDATE mirror_sources SET next_run_at = ? WHERE id = ?", (next_run_at, source_id))


def set_wrapped_key(db, source_id, wrapped):
    db.execute("UPDATE mirror_sources SET wrapped_key = ? WHERE id = ?", (wrapped, source_id))


def all_sources(db):
    return db.all("SELECT * FROM mirror_sources ORDER BY created_at")


def delete_source(db, source_id):
    """Forget a source; the apps still here (kept with ``--keep-data``) become local apps."""
    db.execute("UPDATE environments SET mirror_env_id = NULL, mirror_removed_at = NULL"
               " WHERE app_id IN (SELECT id FROM apps WHERE mirror_source_id = ?)", (source_id,))
    db.execute("UPDATE apps SET mirror_source_id = NULL, mirror_app_id = NULL,"
               " mirror_removed_at = NULL WHERE mirror_source_id = ?", (source_id,))
    db.execute("DELETE FROM mirror_sources WHERE id = ?", (source_id,))


def mirrored_apps(db, source_id):
    return db.all("SELECT * FROM apps WHERE mirror_source_id = ? ORDER BY created_at",
                  (source_id,))


def copy_of_source_app(db, source_id, source_app_id):
    """The local app that copies the source's app ``source_app_id``, or None."""
    return db.one("SELECT * FROM apps WHERE mirror_source_id = ? AND mirror_app_id = ?",
                  (source_id, source_app_id))


def mirror_of_app(db, app_id):
    """(source name, host, when the source stopped giving the app or None) of a mirrored app,
    or None for an app of this server."""
    return db.one("SELECT s.name, s.host, a.mirror_removed_at FROM apps a JOIN mirror_sources s"
                  " ON s.id = a.mirror_source_id WHERE a.id = ?", (app_id,))


def mark_mirrored(db, app_id, source_id, source_app_id):
    """The app is the copy of the source's app ``source_app_id`` (again, if it was removed)."""
    db.execute("UPDATE apps SET mirror_source_id = ?, mirror_app_id = ?, mirror_removed_at = NULL"
               " WHERE id = ?", (source_id, source_app_id, app_id))


def mark_environment(db, env_id, source_env_id):
    db.execute("UPDATE environments SET mirror_env_id = ?, mirror_removed_at = NULL WHERE id = ?",
               (source_env_id, env_id))


def mark_app_removed(db, app_id, stamp):
    db.execute("UPDATE apps SET mirror_removed_at = ? WHERE id = ? AND mirror_removed_at IS NULL",
               (stamp, app_id))


def mark_environment_removed(db, env_id, stamp):
    db.execute("UPDATE environments SET mirror_removed_at = ? WHERE id = ?"
               " AND mirror_removed_at IS NULL", (stamp, env_id))


def mirrored_environments(db, app_id):
    """A mirrored app's environments with their source ids and removal marks, in order."""
    return db.all("SELECT id, name, mirror_env_id, mirror_removed_at FROM environments"
                  " WHERE app_id = ? ORDER BY sort_index, created_at", (app_id,))


def mirrored_environment_ids(db, source_id):
    """The source ids of every environment copied from this source (chosen for good)."""
    return {row[0] for row in db.all(
        "SELECT e.mirror_env_id FROM environments e JOIN apps a ON a.id = e.app_id"
        " WHERE a.mirror_source_id = ? AND e.mirror_env_id IS NOT NULL", (source_id,))}


def delete_personal_secrets(db, personal_ids):
    """Overrides the source no longer has (a mirrored app's, written by its sync only)."""
    db.executemany("DELETE FROM personal_secrets WHERE id = ?", [(i,) for i in personal_ids])


def source_environment_ids(db, app_id):
    """{source environment id: local environment id} of a mirrored app."""
    return {row[0]: row[1] for row in db.all(
        "SELECT mirror_env_id, id FROM environments WHERE app_id = ?"
        " AND mirror_env_id IS NOT NULL", (app_id,))}


def state(db):
    """(sources, sources whose last sync failed, oldest last success or None) for metrics."""
    row = db.one("SELECT COUNT(*), COUNT(last_error), MIN(last_success_at) FROM mirror_sources")
    return row[0], row[1], row[2]
