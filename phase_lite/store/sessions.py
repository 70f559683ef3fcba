"""Console sign-in: password hashes, sessions and one-time links (hashes only, never secrets)."""

from . import new_id, now

# -- passwords -------------------------------------------------------------------------------


def get_password_hash(db, user_id):
    return db.scalar("SELECT password_hash FROM user_passwords WHERE user_id = ?", (user_id,))


def set_password_hash(db, user_id, password_hash):
    db.execute(
        "INSERT INTO user_passwords (user_id, password_hash, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash,"
        " updated_at = excluded.updated_at",
        (user_id, password_hash, now()),
    )


# -- sessions --------------------------------------------------------------------------------


def insert_session(db, user_id, session_hash, expires_at, ip_address, user_agent):
    session_id, stamp = new_id(), now()
    db.execute(
        "INSERT INTO console_sessions (id, user_id, session_hash, created_at, last_seen_at,"
        " expires_at, ip_address, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (session_id, user_id, session_hash, stamp, stamp, expires_at, ip_address, user_agent),
    )
    return session_id


def find_session_by_hash(db, session_hash):
    """A session with its user and role, or None (ended sessions and removed users too)."""
    return db.one(
        "SELECT s.*, u.email, u.organisation_id, u.deleted_at AS user_deleted_at,"
        " r.id AS role_id, r.name AS role_name, r.permissions AS role_permissions,"
        " r.global_access AS global_access"
        " FROM console_sessions s JOIN users u ON u.id = s.user_id"
        " JOIN roles r ON r.id = u.role_id WHERE s.session_hash = ?",
        (session_hash,),
    )


def touch_session(db, session_id, stamp):
    db.execute("UPDATE console_sessions SET last_seen_at = ? WHERE id = ?", (stamp, session_id))


def end_session(db, session_id):
    db.execute(
        "UPDATE console_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL",
        (now(), session_id),
    )


def end_user_sessions(db, user_id, *, keep_session_id=None):
    """End every live session of the user (but ``keep_session_id``); return how many."""
    kept = "" if keep_session_id is None else " AND id <> ?"
    return db.execute(
        "UPDATE console_sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL" + kept,
        (now(), user_id) + (() if keep_session_id is None else (keep_session_id,)),
    ).rowcount


def live_user_sessions(db, user_id, stamp):
    return db.all(
        "SELECT id, created_at, last_seen_at, expires_at, ip_address, user_agent"
        " FROM console_sessions WHERE user_id = ? AND ended_at IS NULL AND expires_at > ?"
        " ORDER BY last_seen_at DESC",
        (user_id, stamp),
    )


# -- one-time links --------------------------------------------------------------------------


def insert_link(db, kind, user_id, link_hash, expires_at):
    link_id = new_id()
    db.execute(
        "INSERT INTO console_links (id, kind, user_id, link_hash, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (link_id, kind, user_id, link_hash, now(), expires_at),
    )
    return link_id


def find_link_by_hash(db, link_hash):
    return db.one(
        "SELECT l.*, u.email, u.deleted_at AS user_deleted_at FROM console_links l"
        " JOIN users u ON u.id = l.user_id WHERE l.link_hash = ?",
        (link_hash,),
    )


def use_link(db, link_id):
    """Mark a link used; return whether it was still unused (one use, even under races)."""
    return db.execute(
        "UPDATE console_links SET used_at = ? WHERE id = ? AND used_at IS NULL", (now(), link_id)
    ).rowcount == 1


def use_user_links(db, user_id):
    """Mark every unused link of the user used: a removed user's links, and every earlier
    link once a password is set or a newer link issued, stop working."""
    db.execute("UPDATE console_links SET used_at = ? WHERE user_id = ? AND used_at IS NULL",
               (now(), user_id))
