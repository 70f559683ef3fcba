"""Apps and their environments."""

from . import NotFound, fold_case, now

ENV_COLUMNS = (
    "e.id, e.app_id, e.name, e.env_type, e.sort_index, e.seed_enc, e.salt_enc, e.public_key,"
    " e.version, e.created_at, e.updated_at"
)


def insert_app(db, app_id, organisation_id, name, description, wrapped_data_key):
    stamp = now()
    db.execute(
        "INSERT INTO apps (id, organisation_id, name, description, wrapped_data_key, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (app_id, organisation_id, name, description, wrapped_data_key, stamp, stamp),
    )


def list_apps(db, organisation_id):
    return db.all(
        "SELECT * FROM apps WHERE organisation_id = ? ORDER BY created_at DESC, rowid DESC",
        (organisation_id,),
    )


def all_apps(db):
    return db.all("SELECT * FROM apps ORDER BY created_at, rowid")


def get_app(db, organisation_id, app_id):
    if not isinstance(app_id, str):  # an id from a JSON body may be anything
        raise NotFound("app")
    return db.one_or_missing(
        "SELECT * FROM apps WHERE organisation_id = ? AND id = ?", (organisation_id, app_id),
        "app",
    )


def find_apps_by_name(db, organisation_id, name):
    """Apps whose name matches case-insensitively (Phase resolves cross-app references so)."""
    return db.all(
        "SELECT * FROM apps WHERE organisation_id = ? AND lower(name) = ?",
        (organisation_id, fold_case(name)),
    )


def update_app(db, app_id, name=None, description=None):
    db.execute(
        "UPDATE apps SET name = COALESCE(?, name), description = COALESCE(?, description),"
        " updated_at = ? WHERE id = ?",
        (name, description, now(), app_id),
    )


def set_wrapped_data_key(db, app_id, wrapped, *, new_key=False):
    """Store the app's wrapped data key: the same key wrapped again (a master-key rotation),
    or with ``new_key`` a new data key, whose time is kept."""
    if new_key:
        db.execute("UPDATE apps SET wrapped_data_key = ?, data_key_rotated_at = ? WHERE id = ?",
                   (wrapped, now(), app_id))
    else:
        db.execute("UPDATE apps SET wrapped_data_key = ? WHERE id = ?", (wrapped, app_id))


def delete_app(db, app_id):
    db.execute("DELETE FROM apps WHERE id = ?", (app_id,))


def get_wrapped_data_key(db, app_id):
    return db.one_or_missing(
        "SELECT wrapped_data_key FROM apps WHERE id = ?", (app_id,), "app")[0]


# -- environments ----------------------------------------------------------------------------


def insert_environment(db, env_id, app_id, name, env_type, sort_index, seed_enc, salt_enc,
                       public_key):
    stamp = now()
    db.execute(
        "INSERT INTO environments (id, app_id, name, env_type, sort_index, seed_enc, salt_enc,"
        " public_key, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
        (env_id, app_id, name, env_type, sort_index, seed_enc, salt_enc, public_key, stamp,
         stamp),
    )


def next_sort_index(db, app_id):
    return db.scalar(
        "SELECT COALESCE(MAX(sort_index) + 1, 0) FROM environments WHERE app_id = ?", (app_id,)
    )


def list_environments(db, app_id):
    return db.all(
        f"SELECT {ENV_COLUMNS} FROM environments e WHERE e.app_id = ?"
        " ORDER BY e.sort_index, e.created_at",
        (app_id,),
    )


def list_org_environments(db, organisation_id):
    """Every environment of the organisation with its app, apps then index order."""
    return db.all(
        f"SELECT {ENV_COLUMNS}, a.name AS app_name FROM environments e"
        " JOIN apps a ON a.id = e.app_id WHERE a.organisation_id = ?"
        " ORDER BY a.created_at, a.rowid, e.sort_index",
        (organisation_id,),
    )


def get_environment(db, organisation_id, env_id):
    return db.one_or_missing(
        f"SELECT {ENV_COLUMNS} FROM environments e JOIN apps a ON a.id = e.app_id"
        " WHERE a.organisation_id = ? AND e.id = ?",
        (organisation_id, env_id),
        "environment",
    )


def find_environment(db, app_id, name):
    """The app's environment with this name (case-insensitive), or None."""
    return db.one(
        f"SELECT {ENV_COLUMNS} FROM environments e WHERE e.app_id = ? AND lower(e.name) = ?",
        (app_id, fold_case(name)),
    )


def rename_environment(db, env_id, name):
    db.execute(
        "UPDATE environments SET name = ?, updated_at = ? WHERE id = ?", (name, now(), env_id)
    )


def set_environment_order(db, app_id, env_ids):
    """Number the app's environments 0, 1, ... in the order of ``env_ids`` (rows already at
    their place are left alone)."""
    stamp = now()
    for index, env_id in enumerate(env_ids):
        db.execute(
            "UPDATE environments SET sort_index = ?, updated_at = ?"
            " WHERE id = ? AND app_id = ? AND sort_index <> ?",
            (index, stamp, env_id, app_id, index),
        )


def delete_environment(db, env_id):
    db.execute("DELETE FROM environments WHERE id = ?", (env_id,))


def bump_environment(db, env_id, stamp=None):
    """Mark a change to the environment's secrets (cache invalidation, client sync)."""
    db.execute(
        "UPDATE environments SET version = version + 1, updated_at = ? WHERE id = ?",
        (stamp or now(), env_id),
    )


def environment_versions(db, env_ids):
    marks = ",".join("?" * len(env_ids))
    return dict(db.all(f"SELECT id, version FROM environments WHERE id IN ({marks})", env_ids))


def environment_of_secret(db, organisation_id, secret_id):
    """The environment holding a secret (live or deleted) of the organisation, or None."""
    return db.one(
        f"SELECT {ENV_COLUMNS} FROM secrets s JOIN environments e ON e.id = s.environment_id"
        " JOIN apps a ON a.id = e.app_id WHERE a.organisation_id = ? AND s.id = ?",
        (organisation_id, secret_id),
    )
