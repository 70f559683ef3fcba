"""Every column encrypted under an app's data key, listed once.

Key rotation re-encrypts these and a restore check decrypts them, so a new encrypted column
must be added here. Each entry is (table, column, AAD field name, the rows of one app); the AAD
field names are the ones the writers pass to ``Vault.encrypt``.
"""

_ENV_ROWS = "SELECT id, {column} FROM environments WHERE app_id = ?"
_SECRET_ROWS = (
    "SELECT s.id, s.{column} FROM secrets s JOIN environments e ON e.id = s.environment_id"
    " WHERE e.app_id = ?"
)
_VERSION_ROWS = (
    "SELECT v.id, v.{column} FROM secret_versions v JOIN secrets s ON s.id = v.secret_id"
    " JOIN environments e ON e.id = s.environment_id WHERE e.app_id = ?"
)
_PERSONAL_ROWS = (
    "SELECT p.id, p.{column} FROM personal_secrets p JOIN secrets s ON s.id = p.secret_id"
    " JOIN environments e ON e.id = s.environment_id WHERE e.app_id = ?"
)

# The AAD field of a column is its name without ``_enc``.
ENCRYPTED_COLUMNS = tuple(
    (table, column, column.removesuffix("_enc"), rows)
    for table, rows, columns in (
        ("environments", _ENV_ROWS, ("seed_enc", "salt_enc")),
        ("secrets", _SECRET_ROWS, ("key_enc", "value_enc", "comment_enc")),
        ("secret_versions", _VERSION_ROWS, ("key_enc", "value_enc", "comment_enc")),
        ("personal_secrets", _PERSONAL_ROWS, ("value_enc",)),
        # The clients' ph:v1 ciphertexts, sealed so they cannot be forged; NULL until made.
        ("secrets", _SECRET_ROWS, ("wire_key", "wire_value", "wire_comment")),
        ("personal_secrets", _PERSONAL_ROWS, ("wire_value",)),
    )
    for column in columns
)
OPTIONAL_COLUMNS = {(table, column) for table, column, _, _ in ENCRYPTED_COLUMNS
                    if column.startswith("wire_")}
_WRITABLE = {(table, column) for table, column, _, _ in ENCRYPTED_COLUMNS}


def app_ciphertexts(db, app_id):
    """Yield (table, column, field, row id, blob) for every encrypted field of one app."""
    for table, column, field, query in ENCRYPTED_COLUMNS:
        optional = (table, column) in OPTIONAL_COLUMNS
        for row_id, blob in db.all(query.format(column=column), (app_id,)):
            if blob is None and optional:
                continue
            yield table, column, field, row_id, blob


def set_ciphertexts(db, table, column, updates):
    """Store new blobs in one encrypted column: ``updates`` is [(row id, blob)]."""
    if (table, column) not in _WRITABLE:
        raise ValueError(f"not an encrypted column: {table}.{column}")
    db.executemany(f"UPDATE {table} SET {column} = ? WHERE id = ?",
                   [(blob, row_id) for row_id, blob in updates])
