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
