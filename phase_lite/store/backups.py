"""Whole database files: online snapshots, copies into a live database, read-only inspection."""

import sqlite3
from pathlib import Path

from . import Database, StoreError


class ReadOnlyDatabase(Database):
    """A database file opened read-only (a backup being checked): nothing is ever written to it,
    not even a WAL or a journal-mode change."""

    def _open(self) -> sqlite3.Connection:
        uri = Path(self.path).resolve().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                   timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database: {exc.__class__.__name__}") from None
        with self._all_lock:
            self._all.append(conn)
        return conn


def vacuum_into(db: Database, path) -> None:
    """Write a compact, consistent copy of the database to ``path`` (absent or empty).

    One read transaction: writers on other connections go on while it runs (WAL).
    """
    db.execute("VACUUM INTO ?", (str(path),))


def integrity_check(db: Database) -> bool:
    """The full ``PRAGMA integrity_check`` (slower than start-up's quick_check)."""
    rows = db.all("PRAGMA integrity_check")
    return len(rows) == 1 and rows[0][0] == "ok"


def copy_into(source_path, db: Database) -> None:
    """Replace the content of ``db`` with the database at ``source_path`` (SQLite's backup API).

    The copy is one write transaction on the destination: other connections see the old or the
    new database, never a mix, and pick the new one up on their next transaction.
    """
    source = ReadOnlyDatabase(source_path)
    try:
        source.conn.backup(db.conn)
    except sqlite3.Error as exc:
        raise StoreError(f"database error: {exc.__class__.__name__}: {exc}") from None
    finally:
        source.close()


def checkpoint(db: Database) -> None:
    """Move the WAL into the database file and truncate it."""
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def count_rows(db: Database) -> dict:
    """How many apps, environments and live secrets the database holds."""
    return {
        "apps": db.scalar("SELECT count(*) FROM apps"),
        "environments": db.scalar("SELECT count(*) FROM environments"),
        "secrets": db.scalar("SELECT count(*) FROM secrets WHERE deleted_at IS NULL"),
    }
