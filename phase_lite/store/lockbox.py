"""Lockbox shares: ciphertexts made in the browser, found by the hash of their link's id.

A view is one conditional UPDATE (a view left, not expired, ciphertext present) inside the
caller's write transaction: of two simultaneous views of a one-view share exactly one changes
the row, on SQLite (one writer) and PostgreSQL (the second waits for the row lock, then sees
``views_left = 0``) alike.
"""

from . import new_id


def insert_share(db, *, organisation_id, link_hash, creator_type, creator_id, ciphertext,
                 views, created_at, expires_at) -> str:
    share_id = new_id()
    db.execute(
        "INSERT INTO lockbox_shares (id, organisation_id, link_hash, creator_type, creator_id,"
        " ciphertext, max_views, views_left, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (share_id, organisation_id, link_hash, creator_type, creator_id, ciphertext, views,
         views, created_at, expires_at),
    )
    return share_id


def find_by_link(db, link_hash):
    """The share a link names (gone ones too), or None."""
    return db.one("SELECT * FROM lockbox_shares WHERE link_hash = ?", (link_hash,))


def get_share(db, share_id):
    return db.one("SELECT * FROM lockbox_shares WHERE id = ?", (share_id,))


def take_view(db, share_id, stamp):
    """Count one view of a live share; return the views left after it, or None when the share
    had none left, had expired or is gone (nothing changed)."""
    rows = db.all(  # every row read: SQLite finishes an UPDATE ... RETURNING only then
        "UPDATE lockbox_shares SET views_left = views_left - 1"
        " WHERE id = ? AND views_left > 0 AND expires_at > ? AND ciphertext IS NOT NULL"
        " RETURNING views_left",
        (share_id, stamp),
    )
    return rows[0][0] if rows else None


def end_share(db, share_id, reason, stamp) -> bool:
    """Delete a live share's ciphertext; return whether it was still live."""
    return db.execute(
        "UPDATE lockbox_shares SET ciphertext = NULL, ended_at = ?, end_reason = ?"
        " WHERE id = ? AND ciphertext IS NOT NULL",
        (stamp, reason, share_id),
    ).rowcount == 1


def expired_shares(db, stamp) -> list:
    """(id, organisation id) of the live shares whose expiry has passed."""
    return db.all(
        "SELECT id, organisation_id FROM lockbox_shares"
        " WHERE ciphertext IS NOT NULL AND expires_at <= ? ORDER BY expires_at",
        (stamp,),
    )


def shares_of(db, creator_type, creator_id) -> list:
    """A creator's shares, newest first (without their ciphertexts)."""
    return db.all(
        "SELECT id, max_views, views_left, created_at, expires_at, ended_at, end_reason,"
        " ciphertext IS NOT NULL AS live FROM lockbox_shares"
        " WHERE creator_type = ? AND creator_id = ? ORDER BY created_at DESC, rowid DESC",
        (creator_type, creator_id),
    )


def all_shares(db, organisation_id) -> list:
    """Every share of the organisation, newest first (without their ciphertexts)."""
    return db.all(
        "SELECT id, creator_type, creator_id, max_views, views_left, created_at, expires_at,"
        " ended_at, end_reason, ciphertext IS NOT NULL AS live FROM lockbox_shares"
        " WHERE organisation_id = ? ORDER BY created_at DESC, rowid DESC",
        (organisation_id,),
    )
