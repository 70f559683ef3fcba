"""Rows as the Phase client protocol reads them: secrets with their ``wire_*`` ciphertexts.

The ``wire_*`` columns hold ``ph:v1`` ciphertexts to the environment's public key. They are a
cache of what the encrypted ``*_enc`` columns say, filled on the first client read after a REST
write; ``fill_*`` only ever writes into a row that has not changed since it was read.
"""

from . import StoreError

# A cache fill gives up quickly rather than queue behind a long write: the answer is already made.
FILL_BUSY_TIMEOUT_MS = 200

SECRET_COLUMNS = (
    "s.id, s.environment_id, s.folder_id, s.path, s.key_digest, s.key_enc, s.value_enc,"
    " s.comment_enc, s.wire_key, s.wire_value, s.wire_comment, s.type, s.version,"
    " s.created_at, s.updated_at"
)


def organisation_name(db, organisation_id):
    return db.scalar("SELECT name FROM organisations WHERE id = ?", (organisation_id,))


def list_secrets(db, environment_id, key_digest=None, path=None):
    """Live secrets of an environment in Phase's observed order (least recently written
    first, as ``store.secrets.live_secrets``), optionally one digest and/or one path."""
    clauses, params = ["s.environment_id = ?", "s.deleted_at IS NULL"], [environment_id]
    if key_digest is not None:
        clauses.append("s.key_digest = ?")
        params.append(key_digest)
    if path is not None:
        clauses.append("s.path = ?")
        params.append(path)
    return db.all(
        f"SELECT {SECRET_COLUMNS} FROM secrets s WHERE {' AND '.join(clauses)}"
        " ORDER BY s.updated_at, s.rowid",
        params,
    )


def tag_names(db, secret_ids):
    """Map each secret id to its tag names (in tag creation order, as ``/v1/secrets/``)."""
    names = {secret_id: [] for secret_id in secret_ids}
    for chunk in _chunks(secret_ids):
        marks = ",".join("?" * len(chunk))
        for secret_id, name in db.all(
            "SELECT st.secret_id, t.name FROM secret_tags st JOIN tags t ON t.id = st.tag_id"
            f" WHERE st.secret_id IN ({marks}) ORDER BY t.created_at, t.rowid",
            chunk,
        ):
            names[secret_id].append(name)
    return names


def personal_overrides(db, secret_ids, user_id):
    """Map secret id to the user's personal override row (id, value_enc, wire_value, ...)."""
    found = {}
    for chunk in _chunks(secret_ids):
        marks = ",".join("?" * len(chunk))
        for row in db.all(
            "SELECT id, secret_id, value_enc, wire_value, is_active, created_at, updated_at"
            f" FROM personal_secrets WHERE user_id = ? AND secret_id IN ({marks})",
            (user_id, *chunk),
        ):
            found[row["secret_id"]] = row
    return found


def fill_secret_wire(db, fills, override_fills=()):
    """Store freshly made wire ciphertexts; return False when the database was too busy.

    ``fills``: (secret id, version read, wire_key, wire_value, wire_comment);
    ``override_fills``: (personal secret id, updated_at read, wire_value). A row that changed
    since it was read keeps its columns (its own writer set them).
    """
    try:
        with db.lock_wait(FILL_BUSY_TIMEOUT_MS), db.transaction(changes_reads=False):
            db.executemany(
                "UPDATE secrets SET wire_key = COALESCE(wire_key, ?),"
                " wire_value = COALESCE(wire_value, ?), wire_comment = COALESCE(wire_comment, ?)"
                " WHERE id = ? AND version = ?",
                [(key, value, comment, secret_id, version)
                 for secret_id, version, key, value, comment in fills],
            )
            db.executemany(
                "UPDATE personal_secrets SET wire_value = COALESCE(wire_value, ?)"
                " WHERE id = ? AND updated_at = ?",
                [(value, row_id, updated_at) for row_id, updated_at, value in override_fills],
            )
    except StoreError:
        return False
    return True


def _chunks(items, size=500):
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start:start + size]
