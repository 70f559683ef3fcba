"""Organisation, roles, users, service accounts, tokens and environment access grants."""

from . import fold_case, new_id, now, sessions

# -- organisation and roles ------------------------------------------------------------------


def get_organisation(db):
    return db.one("SELECT * FROM organisations ORDER BY created_at LIMIT 1")


def organisation_name(db, organisation_id):
    return db.scalar("SELECT name FROM organisations WHERE id = ?", (organisation_id,))


def insert_organisation(db, name):
    org_id, stamp = new_id(), now()
    db.execute(
        "INSERT INTO organisations (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
        (org_id, name, stamp, stamp),
    )
    return org_id


def insert_role(db, organisation_id, name, description, color, permissions_json, global_access):
    role_id, stamp = new_id(), now()
    db.execute(
        "INSERT INTO roles (id, organisation_id, name, description, color, is_default,"
        " global_access, permissions, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
        (role_id, organisation_id, name, description, color, int(global_access),
         permissions_json, stamp, stamp),
    )
    return role_id


def list_roles(db, organisation_id):
    return db.all(
        "SELECT * FROM roles WHERE organisation_id = ? ORDER BY created_at, rowid",
        (organisation_id,),
    )


def get_role(db, organisation_id, role_id):
    return db.one_or_missing(
        "SELECT * FROM roles WHERE organisation_id = ? AND id = ?", (organisation_id, role_id),
        "role",
    )


def get_role_by_name(db, organisation_id, name):
    return db.one_or_missing(
        "SELECT * FROM roles WHERE organisation_id = ? AND lower(name) = ?",
        (organisation_id, fold_case(name)),
        "role",
    )


# -- users -----------------------------------------------------------------------------------


def insert_user(db, organisation_id, email, role_id):
    """Add a user; a deleted user's row with the same email (which stays, so the audit log
    keeps naming it) comes back as a new account: new role, no tokens, grants or overrides."""
    stamp = now()
    (user_id,) = db.one(
        "INSERT INTO users (id, organisation_id, email, role_id, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (organisation_id, email) DO UPDATE SET role_id = excluded.role_id,"
        " created_at = excluded.created_at, updated_at = excluded.updated_at, deleted_at = NULL"
        " WHERE users.deleted_at IS NOT NULL RETURNING id",
        (new_id(), organisation_id, email, role_id, stamp, stamp),
    )
    return user_id


def count_users_with_role(db, organisation_id, role_id):
    (count,) = db.one(
        "SELECT COUNT(*) FROM users WHERE organisation_id = ? AND role_id = ?"
        " AND deleted_at IS NULL",
        (organisation_id, role_id),
    )
    return count


def delete_user(db, user_id):
    """Soft-delete the user (the row names them in the audit log), revoke their tokens, drop
    their grants and personal overrides, and end their console sessions and sign-in links."""
    stamp = now()
    db.execute("UPDATE users SET deleted_at = ?, updated_at = ? WHERE id = ?",
               (stamp, stamp, user_id))
    db.execute("UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
               (stamp, user_id))
    db.execute("DELETE FROM environment_access WHERE user_id = ?", (user_id,))
    db.execute("DELETE FROM personal_secrets WHERE user_id = ?", (user_id,))
    sessions.end_user_sessions(db, user_id)
    sessions.use_user_links(db, user_id)


def list_users(db, organisation_id):
    return db.all(
        "SELECT users.*, roles.name AS role_name FROM users JOIN roles ON roles.id = users.role_id"
        " WHERE users.organisation_id = ? AND users.deleted_at IS NULL ORDER BY users.created_at",
        (organisation_id,),
    )


def get_user_by_email(db, organisation_id, email):
    return db.one_or_missing(
        "SELECT * FROM users WHERE organisation_id = ? AND lower(email) = ?"
        " AND deleted_at IS NULL",
        (organisation_id, fold_case(email)),
        "user",
    )


def get_user(db, organisation_id, user_id):
    return db.one_or_missing(
        "SELECT * FROM users WHERE organisation_id = ? AND id = ? AND deleted_at IS NULL",
        (organisation_id, user_id),
        "user",
    )


def set_user_role(db, user_id, role_id):
    db.execute("UPDATE users SET role_id = ?, updated_at = ? WHERE id = ?",
               (role_id, now(), user_id))


# -- service accounts ------------------------------------------------------------------------


def insert_service_account(db, organisation_id, name, role_id):
    sa_id, stamp = new_id(), now()
    db.execute(
        "INSERT INTO service_accounts (id, organisation_id, name, role_id, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (sa_id, organisation_id, name, role_id, stamp, stamp),
    )
    return sa_id


_SA_SELECT = (
    "SELECT sa.*, roles.name AS role_name FROM service_accounts sa"
    " JOIN roles ON roles.id = sa.role_id"
)


def list_service_accounts(db, organisation_id):
    return db.all(
        _SA_SELECT + " WHERE sa.organisation_id = ? AND sa.deleted_at IS NULL"
        " ORDER BY sa.created_at DESC, sa.rowid DESC",
        (organisation_id,),
    )


def get_service_account(db, organisation_id, sa_id):
    return db.one_or_missing(
        _SA_SELECT + " WHERE sa.organisation_id = ? AND sa.id = ? AND sa.deleted_at IS NULL",
        (organisation_id, sa_id),
        "service account",
    )


def update_service_account(db, sa_id, name=None, role_id=None):
    db.execute(
        "UPDATE service_accounts SET name = COALESCE(?, name), role_id = COALESCE(?, role_id),"
        " updated_at = ? WHERE id = ?",
        (name, role_id, now(), sa_id),
    )


def delete_service_account(db, sa_id):
    """Soft-delete the account, revoke its tokens and drop its grants."""
    stamp = now()
    db.execute("UPDATE service_accounts SET deleted_at = ? WHERE id = ?", (stamp, sa_id))
    db.execute(
        "UPDATE tokens SET revoked_at = ? WHERE service_account_id = ? AND revoked_at IS NULL",
        (stamp, sa_id),
    )
    db.execute("DELETE FROM environment_access WHERE service_account_id = ?", (sa_id,))


# -- tokens ----------------------------------------------------------------------------------


def insert_token(db, kind, owner_id, name, token_hash, public_key, wrapped_key_share,
                 expires_at=None):
    token_id, stamp = new_id(), now()
    db.execute(
        "INSERT INTO tokens (id, kind, user_id, service_account_id, name, token_hash, public_key,"
        " wrapped_key_share, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (token_id, kind, owner_id if kind == "user" else None,
         owner_id if kind == "service" else None, name, token_hash, public_key,
         wrapped_key_share, stamp, expires_at),
    )
    return token_id


def get_token(db, token_id):
    return db.one_or_missing("SELECT * FROM tokens WHERE id = ?", (token_id,), "token")


def list_tokens(db, *, user_id=None, service_account_id=None, include_revoked=False):
    where = "user_id = ?" if user_id else "service_account_id = ?"
    if not include_revoked:
        where += " AND revoked_at IS NULL"
    return db.all(
        f"SELECT * FROM tokens WHERE {where} ORDER BY created_at DESC, rowid DESC",
        (user_id or service_account_id,),
    )


def list_user_tokens(db, organisation_id):
    return db.all(
        "SELECT tokens.*, users.email FROM tokens JOIN users ON users.id = tokens.user_id"
        " WHERE users.organisation_id = ? ORDER BY tokens.created_at, tokens.rowid",
        (organisation_id,),
    )


def revoke_token(db, token_id):
    cursor = db.execute(
        "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now(), token_id)
    )
    return cursor.rowcount


def find_token_by_hash(db, token_hash):
    """The token with its account and role, or None: the hot path of every request."""
    return db.one(
        "SELECT t.id, t.kind, t.token_hash, t.user_id, t.service_account_id, t.name, t.expires_at,"
        " t.revoked_at, t.public_key, t.wrapped_key_share,"
        " COALESCE(u.organisation_id, sa.organisation_id) AS organisation_id,"
        " COALESCE(u.deleted_at, sa.deleted_at) AS account_deleted_at,"
        " u.email AS email, sa.name AS service_account_name,"
        " r.id AS role_id, r.name AS role_name, r.permissions AS role_permissions,"
        " r.global_access AS global_access"
        " FROM tokens t"
        " LEFT JOIN users u ON u.id = t.user_id"
        " LEFT JOIN service_accounts sa ON sa.id = t.service_account_id"
        " JOIN roles r ON r.id = COALESCE(u.role_id, sa.role_id)"
        " WHERE t.token_hash = ?",
        (token_hash,),
    )


def touch_token(db, token_id, stamp):
    db.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (stamp, token_id))


# -- environment access ----------------------------------------------------------------------


def grant_environment(db, environment_id, *, user_id=None, service_account_id=None):
    db.execute(
        "INSERT INTO environment_access"
        " (id, environment_id, user_id, service_account_id, created_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (new_id(), environment_id, user_id, service_account_id, now()),
    )


def revoke_environments(db, environment_ids, *, user_id=None, service_account_id=None):
    column, owner = ("user_id", user_id) if user_id else ("service_account_id", service_account_id)
    db.executemany(
        f"DELETE FROM environment_access WHERE environment_id = ? AND {column} = ?",
        [(env_id, owner) for env_id in environment_ids],
    )


def granted_environment_ids(db, *, user_id=None, service_account_id=None):
    column, owner = ("user_id", user_id) if user_id else ("service_account_id", service_account_id)
    return {
        row[0]
        for row in db.all(
            f"SELECT environment_id FROM environment_access WHERE {column} = ?", (owner,)
        )
    }


def get_service_account_token(db, service_account_id, token_id):
    """A live (not revoked) token of the service account."""
    return db.one_or_missing(
        "SELECT * FROM tokens WHERE id = ? AND service_account_id = ? AND revoked_at IS NULL",
        (token_id, service_account_id),
        "token",
    )


def service_accounts_holding(db, environment_ids) -> set:
    """The ids of the service accounts granted any of ``environment_ids``."""
    ids, found = sorted(environment_ids), set()
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        found.update(row[0] for row in db.all(
            "SELECT DISTINCT service_account_id FROM environment_access"
            " WHERE service_account_id IS NOT NULL AND environment_id IN"
            f" ({', '.join('?' * len(part))})", part))
    return found


def service_account_grants(db, service_account_id):
    """The environments a service account may use with their apps: newest app first, then the
    environments in index order."""
    return db.all(
        "SELECT e.id, e.name, e.env_type, a.id AS app_id, a.name AS app_name"
        " FROM environment_access ea JOIN environments e ON e.id = ea.environment_id"
        " JOIN apps a ON a.id = e.app_id WHERE ea.service_account_id = ?"
        " ORDER BY a.created_at DESC, a.rowid DESC, e.sort_index",
        (service_account_id,),
    )
