"""The meta table: small named values about the database itself."""

import base64


def get(db, key):
    return db.scalar("SELECT value FROM meta WHERE key = ?", (key,))


def put(db, key, value):
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def get_blob(db, key):
    value = get(db, key)
    return None if value is None else base64.b64decode(value)


def put_blob(db, key, blob):
    put(db, key, base64.b64encode(blob).decode())


def count_objects(db) -> dict:
    """How many apps, environments, live secrets and usable tokens (by kind) the database holds."""
    row = db.one(
        "SELECT (SELECT count(*) FROM apps),"
        " (SELECT count(*) FROM environments),"
        " (SELECT count(*) FROM secrets WHERE deleted_at IS NULL),"
        " (SELECT count(*) FROM tokens WHERE revoked_at IS NULL AND kind = 'user'),"
        " (SELECT count(*) FROM tokens WHERE revoked_at IS NULL AND kind = 'service')"
    )
    return {"apps": row[0], "environments": row[1], "secrets": row[2],
            "user_tokens": row[3], "service_tokens": row[4]}
