"""Secret versions as history, deleted secrets, and undeleting.

``secret_versions`` holds one encrypted snapshot per write of a secret (``event`` create,
update, delete or restore; a delete keeps the version number it deleted, as Phase does), with
the writing account (``actor_type``/``actor_id``, as in the audit log). The actor's current name
(a user's email, a service account's name) is looked up when history is read.
"""

_ACTORS = (
    " LEFT JOIN users u ON v.actor_type = 'user' AND u.id = v.actor_id"
    " LEFT JOIN service_accounts sa ON v.actor_type = 'service' AND sa.id = v.actor_id"
)


def secret_versions(db, secret_id):
    """Every version row of a secret with its actor's name, newest first."""
    return db.all(
        "SELECT v.*, COALESCE(u.email, sa.name) AS actor_name FROM secret_versions v"
        f"{_ACTORS} WHERE v.secret_id = ? ORDER BY v.version DESC, v.rowid DESC",
        (secret_id,),
    )


def secret_version(db, secret_id, version):
    """The snapshot of one version of a secret, or None. A version that was deleted has two
    rows of equal content; the write that made it is preferred."""
    return db.one(
        "SELECT * FROM secret_versions WHERE secret_id = ? AND version = ?"
        " ORDER BY event = 'delete', rowid DESC LIMIT 1",
        (secret_id, version),
    )


def deleted_secrets(db, env_id):
    """The environment's deleted secrets, most recently deleted first, each with the actor of
    its last deletion (``actor_type``, ``actor_id``, ``actor_name``; NULL when not known)."""
    return db.all(
        "SELECT s.id, s.key_enc, s.path, s.type, s.version, s.deleted_at, v.actor_type,"
        " v.actor_id, COALESCE(u.email, sa.name) AS actor_name FROM secrets s"
        " LEFT JOIN secret_versions v ON v.rowid = (SELECT max(rowid) FROM secret_versions"
        "  WHERE secret_id = s.id AND event = 'delete')"
        f"{_ACTORS}"
        " WHERE s.environment_id = ? AND s.deleted_at IS NOT NULL"
        " ORDER BY s.deleted_at DESC, s.rowid DESC",
        (env_id,),
    )


def find_secret_id(db, env_id, path, key_digest):
    """The id of the secret at (path, key digest): the live one, else the one deleted last."""
    return db.scalar(
        "SELECT id FROM secrets WHERE environment_id = ? AND path = ? AND key_digest = ?"
        " ORDER BY deleted_at IS NOT NULL, deleted_at DESC, rowid DESC LIMIT 1",
        (env_id, path, key_digest),
    )


def undelete_secret(db, secret_id):
    db.execute("UPDATE secrets SET deleted_at = NULL WHERE id = ?", (secret_id,))
