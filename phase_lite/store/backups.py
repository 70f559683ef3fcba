"""Whole databases: online snapshots, copies into a live database, read-only inspection.

A backup is always a SQLite file, whichever backend made it. From PostgreSQL, ``export_to_sqlite``
copies every table into a new file migrated to the same schema, reading one ``REPEATABLE READ``
snapshot, row by row in ``rowid`` order with the same ``rowid``; ``import_into_postgres`` is the
way back. So a deployment moves between the backends with ``backup`` and ``restore``.
"""

import sqlite3
from pathlib import Path

from . import SqliteDatabase, StoreError


class ReadOnlyDatabase(SqliteDatabase):
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


def vacuum_into(db: SqliteDatabase, path) -> None:
    """Write a compact, consistent copy of the database to ``path`` (absent or empty).

    One read transaction: writers on other connections go on while it runs (WAL).
    """
    db.execute("VACUUM INTO ?", (str(path),))


def integrity_check(db: SqliteDatabase) -> bool:
    """The full ``PRAGMA integrity_check`` (slower than start-up's quick_check)."""
    rows = db.all("PRAGMA integrity_check")
    return len(rows) == 1 and rows[0][0] == "ok"


def copy_into(source_path, db: SqliteDatabase) -> None:
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


def checkpoint(db: SqliteDatabase) -> None:
    """Move the WAL into the database file and truncate it."""
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def count_rows(db: SqliteDatabase) -> dict:
    """How many apps, environments and live secrets the database holds."""
    return {
        "apps": db.scalar("SELECT count(*) FROM apps"),
        "environments": db.scalar("SELECT count(*) FROM environments"),
        "secrets": db.scalar("SELECT count(*) FROM secrets WHERE deleted_at IS NULL"),
    }


# -- between the backends ----------------------------------------------------------------------


def _tables(sqlite_db: SqliteDatabase) -> list:
    """[(table, columns, rowid column or None)] of the schema, parents before children."""
    names = [row[0] for row in sqlite_db.all(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
        " AND substr(name, 1, 1) <> '_' ORDER BY name")]  # not the migration record
    parents = {name: {row["table"] for row in sqlite_db.all(
        f"SELECT * FROM pragma_foreign_key_list('{name}')")} - {name} for name in names}
    ordered = []
    while len(ordered) < len(names):
        for name in names:
            if name not in ordered and parents[name] <= set(ordered):
                ordered.append(name)
    tables = []
    for name in ordered:
        info = sqlite_db.all(f"SELECT name, type, pk FROM pragma_table_info('{name}')")
        without_rowid = sqlite_db.scalar(
            "SELECT wr FROM pragma_table_list WHERE name = ? AND schema = 'main'", (name,))
        keys = [row for row in info if row["pk"]]
        aliased = len(keys) == 1 and keys[0]["type"].upper() == "INTEGER"
        rowid = None if without_rowid or aliased else "rowid"
        tables.append((name, [row["name"] for row in info], rowid))
    return tables


def _order(columns, rowid):
    return rowid or ", ".join(columns)


def export_to_sqlite(source, path) -> None:
    """Copy a PostgreSQL database into the new, empty SQLite file at ``path``."""
    target = SqliteDatabase(path)
    try:
        target.migrate()
        with source.snapshot(), target.transaction():
            target.execute("PRAGMA defer_foreign_keys = ON")
            for table, columns, rowid in _tables(target):
                selected = ([rowid] if rowid else []) + columns
                rows = source.stream(f"SELECT {', '.join(selected)} FROM {table}"
                                     f" ORDER BY {_order(columns, rowid)}")
                target.executemany(
                    f"INSERT INTO {table} ({', '.join(selected)})"
                    f" VALUES ({', '.join('?' * len(selected))})", rows)
        checkpoint(target)
    finally:
        target.close()


def import_into_postgres(path, target) -> None:
    """Replace the content of a PostgreSQL database with the SQLite database at ``path``
    (already migrated to the current schema), in the caller's transaction on ``target``."""
    source = ReadOnlyDatabase(path)
    try:
        tables = _tables(source)
        target.execute(f"TRUNCATE {', '.join(table for table, _, _ in tables)}")
        for table, columns, rowid in tables:
            selected = ([rowid] if rowid else []) + columns
            rows = source.execute(f"SELECT {', '.join(selected)} FROM {table}"
                                  f" ORDER BY {_order(columns, rowid)}")  # read as copied
            target.copy_rows(table, selected, rows)
            target.continue_identities(table)
    finally:
        source.close()
