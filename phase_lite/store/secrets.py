"""Secrets, their folders, tags, versions and personal overrides.

``*_enc`` columns are keyring blobs bound to (table, row id, field); ``wire_*`` columns are
``ph:v1`` ciphertexts for the Phase clients, NULL until the client protocol fills them.
Live secrets are listed in Phase's observed order: least recently written first.
"""

import json

from . import StoreError, new_id, now

# A ciphertext fill gives up quickly rather than queue behind a long write: the answer is made.
FILL_BUSY_TIMEOUT_MS = 200
_CHUNK = 500  # ids per IN (...) list, far below SQLite's variable limit

SECRET_COLUMNS = (
    "s.rowid AS row_order, s.id, s.environment_id, s.folder_id, s.path, s.key_digest,"
    " s.key_enc, s.value_enc, s.comment_enc, s.wire_key, s.wire_value, s.wire_comment,"
    " s.type, s.version, s.created_at, s.updated_at, s.deleted_at"
)


def _chunks(values):
    values = list(values)
    for start in range(0, len(values), _CHUNK):
        part = values[start:start + _CHUNK]
        yield part, ",".join("?" * len(part))


# -- reading ---------------------------------------------------------------------------------


def live_secrets(db, env_id):
    """The live secrets of an environment: one query, no per-row work."""
    return db.all(
        f"SELECT {SECRET_COLUMNS} FROM secrets s"
        " WHERE s.environment_id = ? AND s.deleted_at IS NULL ORDER BY s.updated_at, s.rowid",
        (env_id,),
    )


def live_secret_tags(db, env_id):
    """(secret id, tag name) of the environment's live secrets, in tag creation order."""
    return db.all(
        "SELECT st.secret_id, t.name FROM secrets s"
        " JOIN secret_tags st ON st.secret_id = s.id JOIN tags t ON t.id = st.tag_id"
        " WHERE s.environment_id = ? AND s.deleted_at IS NULL ORDER BY t.created_at, t.rowid",
        (env_id,),
    )


def secrets_by_id(db, env_id, ids, *, live_only=True):
    """The environment's secrets with these ids, as {id: row} (ids elsewhere are absent)."""
    found = {}
    deleted = " AND s.deleted_at IS NULL" if live_only else ""
    for part, marks in _chunks(set(ids)):
        for row in db.all(
            f"SELECT {SECRET_COLUMNS} FROM secrets s"
            f" WHERE s.environment_id = ? AND s.id IN ({marks}){deleted}",
            (env_id, *part),
        ):
            found[row["id"]] = row
    return found


def tag_names_of(db, secret_ids):
    """{secret id: [tag names]} in tag creation order."""
    names = {}
    for part, marks in _chunks(set(secret_ids)):
        for secret_id, name in db.all(
            "SELECT st.secret_id, t.name FROM secret_tags st JOIN tags t ON t.id = st.tag_id"
            f" WHERE st.secret_id IN ({marks}) ORDER BY t.created_at, t.rowid",
            part,
        ):
            names.setdefault(secret_id, []).append(name)
    return names


def live_positions(db, env_id, digests):
    """(id, path, key_digest) of live secrets of the environment having any of these digests."""
    rows = []
    for part, marks in _chunks(set(digests)):
        rows.extend(db.all(
            "SELECT id, path, key_digest FROM secrets WHERE environment_id = ?"
            f" AND deleted_at IS NULL AND key_digest IN ({marks})",
            (env_id, *part),
        ))
    return rows


# -- writing ---------------------------------------------------------------------------------


def insert_secrets(db, rows):
    """Insert secrets (dicts with every column but rowid); return their rowids in order."""
    return db.insert_returning(
        "INSERT INTO secrets (id, environment_id, folder_id, path, key_digest, key_enc,"
        " value_enc, comment_enc, wire_key, wire_value, wire_comment, type, version,"
        " created_at, updated_at, deleted_at) VALUES (:id, :environment_id, :folder_id, :path,"
        " :key_digest, :key_enc, :value_enc, :comment_enc, :wire_key, :wire_value,"
        " :wire_comment, :type, :version, :created_at, :updated_at, NULL) RETURNING rowid",
        rows,
    )


_UPDATABLE = frozenset({
    "folder_id", "path", "key_digest", "key_enc", "value_enc", "comment_enc", "wire_key",
    "wire_value", "wire_comment", "type", "version", "updated_at",
})


def update_secret(db, secret_id, fields):
    """Set the given columns of one secret."""
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    assignments = ", ".join(f"{column} = :{column}" for column in fields)
    db.execute(f"UPDATE secrets SET {assignments} WHERE id = :id", dict(fields, id=secret_id))


def soft_delete_secrets(db, secret_ids, stamp):
    db.executemany(
        "UPDATE secrets SET deleted_at = ?, updated_at = ? WHERE id = ?",
        [(stamp, stamp, secret_id) for secret_id in secret_ids],
    )


def ensure_folders(db, env_id, chain):
    """Create the missing folders of ``chain`` (``paths.folder_chain``); return the deepest
    folder's id, or None for the root."""
    parent_id = None
    for path, name, _parent_path in chain:
        row = db.one(
            "SELECT id FROM folders WHERE environment_id = ? AND path = ?", (env_id, path)
        )
        if row is None:
            folder_id = new_id()
            db.execute(
                "INSERT INTO folders (id, environment_id, parent_id, name, path, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (folder_id, env_id, parent_id, name, path, now()),
            )
        else:
            folder_id = row[0]
        parent_id = folder_id
    return parent_id


def ensure_tags(db, organisation_id, names):
    """Create the organisation's missing tags (colour ""); return {name: (tag id, order)},
    ``order`` sorting tags as listings do (creation order)."""
    names = list(dict.fromkeys(names))
    if not names:
        return {}
    stamp = now()
    db.executemany(
        "INSERT INTO tags (id, organisation_id, name, color, created_at)"
        " VALUES (?, ?, ?, '', ?) ON CONFLICT DO NOTHING",
        [(new_id(), organisation_id, name, stamp) for name in names],
    )
    ids = {}
    for part, marks in _chunks(names):
        for tag_id, name, created_at, rowid in db.all(
            "SELECT id, name, created_at, rowid FROM tags"
            f" WHERE organisation_id = ? AND name IN ({marks})",
            (organisation_id, *part),
        ):
            ids[name] = (tag_id, (created_at, rowid))
    return ids


def insert_secret_tags(db, pairs):
    """Tag new secrets: ``pairs`` is [(secret id, tag id)]."""
    db.executemany("INSERT INTO secret_tags (secret_id, tag_id) VALUES (?, ?)"
                   " ON CONFLICT DO NOTHING", pairs)


def replace_secret_tags(db, secret_id, tag_ids):
    db.execute("DELETE FROM secret_tags WHERE secret_id = ?", (secret_id,))
    db.executemany(
        "INSERT INTO secret_tags (secret_id, tag_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [(secret_id, tag_id) for tag_id in tag_ids],
    )


# -- versions --------------------------------------------------------------------------------


_VERSION_DEFAULTS = {"restored_from": None, "actor_type": None, "actor_id": None}


def insert_versions(db, rows):
    """Insert version snapshots (dicts with the secret_versions columns; tags as a list;
    ``restored_from`` and the actor default to NULL)."""
    db.executemany(
        "INSERT INTO secret_versions (id, secret_id, version, event, restored_from, actor_type,"
        " actor_id, path, key_digest, key_enc, value_enc, comment_enc, type, tags, created_at)"
        " VALUES (:id, :secret_id, :version, :event, :restored_from, :actor_type, :actor_id,"
        " :path, :key_digest, :key_enc, :value_enc, :comment_enc, :type, :tags, :created_at)",
        [{**_VERSION_DEFAULTS, **row,
          "tags": json.dumps(list(row["tags"]), separators=(",", ":"))} for row in rows],
    )


# -- personal overrides ----------------------------------------------------------------------


def personal_secrets(db, user_id, secret_ids):
    """{secret id: row} of the user's overrides of these secrets."""
    found = {}
    for part, marks in _chunks(set(secret_ids)):
        for row in db.all(
            "SELECT * FROM personal_secrets WHERE user_id = ?"
            f" AND secret_id IN ({marks})",
            (user_id, *part),
        ):
            found[row["secret_id"]] = row
    return found


def environment_personal_secrets(db, user_id, env_id):
    """{secret id: row} of the user's overrides of the environment's live secrets."""
    return {
        row["secret_id"]: row
        for row in db.all(
            "SELECT p.* FROM personal_secrets p JOIN secrets s ON s.id = p.secret_id"
            " WHERE p.user_id = ? AND s.environment_id = ? AND s.deleted_at IS NULL",
            (user_id, env_id),
        )
    }


def insert_personal_secret(db, row):
    db.execute(
        "INSERT INTO personal_secrets (id, secret_id, user_id, value_enc, wire_value, is_active,"
        " created_at, updated_at) VALUES (:id, :secret_id, :user_id, :value_enc, :wire_value,"
        " :is_active, :created_at, :updated_at)",
        row,
    )


def update_personal_secret(db, personal_id, value_enc, wire_value, is_active, stamp):
    db.execute(
        "UPDATE personal_secrets SET value_enc = ?, wire_value = ?, is_active = ?,"
        " updated_at = ? WHERE id = ?",
        (value_enc, wire_value, int(is_active), stamp, personal_id),
    )


def organisation_of_environment(db, env_id):
    return db.scalar(
        "SELECT a.organisation_id FROM environments e JOIN apps a ON a.id = e.app_id"
        " WHERE e.id = ?",
        (env_id,),
    )


# -- the client protocol's ciphertexts -------------------------------------------------------


def fill_secret_wire(db, fills, override_fills=()):
    """Store freshly made ``wire_*`` ciphertexts; return False when the database was too busy.

    ``fills``: (secret id, version read, wire_key, wire_value, wire_comment);
    ``override_fills``: (personal secret id, updated_at read, wire_value). A row that changed
    since it was read keeps its columns (its own writer set them).
    """
    try:
        with db.lock_wait(FILL_BUSY_TIMEOUT_MS), db.transaction():
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
