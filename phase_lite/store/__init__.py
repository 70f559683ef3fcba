"""Database access: connections, transactions and the store's exceptions.

Every SQL statement of phase_lite lives in this package (one module per group of tables), written
once in the subset SQLite and PostgreSQL both accept; ``postgres`` holds the thin layer that
runs them on PostgreSQL. Case-insensitive matches are spelt out: ``lower(column) = ?`` with the
argument passed through ``fold_case``, which both backends fold identically (ASCII letters only).

On SQLite (the default), each thread has its own connection (waitress serves a request on one
thread), opened with WAL, ``synchronous=FULL`` (an acknowledged write survives power loss), a
busy timeout and foreign keys. Write transactions start with ``BEGIN IMMEDIATE`` so concurrent
writers queue on the lock instead of failing half-way. ``sqlite3`` exceptions never leave this
package.
"""

import contextlib
import os
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timezone

import sqlite_utils

from .. import migrations

BUSY_TIMEOUT_MS = 30_000
# Errors after which a connection is not trusted again: it may have opened its files read-only
# or lost them. The thread opens a fresh connection once its transaction is over, so writes
# heal by themselves when the cause (a read-only or full disk, a remount) is gone.
_REOPEN_AFTER = {
    sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_FULL,
}
# SQLite opens a file it may not write read-only, without a word: reads work, and the first
# write fails (SQLITE_READONLY) even after the file became writable again. Such a connection
# is replaced before its next write transaction once the file opens for writing.


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_case(text: str) -> str:
    """``text`` with ASCII letters in lower case: what ``lower()`` does on SQLite and on
    PostgreSQL's ``"C"`` collation, so a case-insensitive match is the same on both."""
    return text.translate(_ASCII_LOWER)


def open_database(location):
    """The database at ``location``: a ``postgresql://`` URL, else a SQLite file path."""
    if str(location).startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresDatabase  # psycopg is an optional dependency

        return PostgresDatabase(str(location))
    return SqliteDatabase(location)


class StoreError(Exception):
    """The database failed (I/O, corruption, lock timeout). The message holds no row data."""


class NotFound(Exception):
    """A row the caller named does not exist (or is not visible to it)."""


@contextlib.contextmanager
def missing_as(error):
    """Raise ``error`` (the domain's error, with Phase's text) for a NotFound in the block."""
    try:
        yield
    except NotFound:
        raise error from None


class Conflict(Exception):
    """A write would break a uniqueness rule."""


def new_id() -> str:
    return str(uuid.uuid4())


_SECOND_TEXT = (None, "")  # (whole Unix second, its text up to the seconds)


def now() -> str:
    """Current UTC time as Phase renders it: ISO-8601, microseconds, ``Z``.

    Every request takes the time (audit, token expiry), so the text of the current second is
    kept and only the microseconds are formatted.
    """
    global _SECOND_TEXT
    second, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    known = _SECOND_TEXT
    if known[0] != second:
        known = _SECOND_TEXT = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{known[1]}.{nanoseconds // 1000:06d}Z"


def format_time(moment: datetime) -> str:
    text = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text + "Z"


def render_time(stored: str | None) -> str | None:
    """Render a stored timestamp as Phase does (microseconds dropped when zero)."""
    if stored and stored.endswith(".000000Z"):
        return stored[:-8] + "Z"
    return stored


CONTENT_VERSION_WRAP = 1 << 31  # PRAGMA user_version is a signed 32-bit integer


class Statements:
    """What both backends share: the reading helpers over their own ``execute``, and the
    connections they open, one per thread, all closed by ``close``."""

    driver_error = Exception  # the base error of the backend's driver

    def __init__(self):
        self._local = threading.local()
        self._all = []
        self._all_lock = threading.Lock()

    def _remember(self, conn):
        """Keep a newly opened connection for ``close``; return it."""
        with self._all_lock:
            self._all.append(conn)
        return conn

    def close(self):
        """Close every connection this object opened (all threads)."""
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(self.driver_error):
                conn.close()
        self._local = threading.local()

    def on_commit(self, action):
        """Call ``action()`` once the write transaction this thread is in commits (the
        outermost, when blocks nest), after every earlier one; drop it if it rolls back.
        Outside a transaction, call it now. What others may see of a write (a cached
        snapshot moved on to it) is published this way, so a rolled-back write never is."""
        pending = getattr(self._local, "after_commit", None)
        if pending is None:
            action()
        else:
            pending.append(action)

    def _begun(self):
        """The outermost transaction began: collect its ``on_commit`` actions."""
        self._local.after_commit = []

    def _ended(self, committed: bool):
        """The outermost transaction ended: run its ``on_commit`` actions if it committed."""
        local = self._local
        pending, local.after_commit = getattr(local, "after_commit", None), None
        if committed:
            for action in pending or ():
                action()

    def one(self, sql, params=()):
        return self.execute(sql, params).fetchone()

    def all(self, sql, params=()):
        return self.execute(sql, params).fetchall()

    def one_or_missing(self, sql, params, what):
        """The one row the query finds; NotFound(what) when there is none."""
        row = self.one(sql, params)
        if row is None:
            raise NotFound(what)
        return row

    def scalar(self, sql, params=()):
        row = self.one(sql, params)
        return None if row is None else row[0]

    def insert_rows(self, table, columns, rows):
        """Insert many rows (values of ``columns``) into ``table``: ``executemany`` here,
        ``COPY`` on PostgreSQL (a row of read audit events at a time costs less that way)."""
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)})"
                         f" VALUES ({', '.join('?' * len(columns))})", rows)


class SqliteDatabase(Statements):
    """A SQLite file with one connection per thread."""

    backend = "sqlite"
    driver_error = sqlite3.Error

    def __init__(self, path):
        super().__init__()
        self.path = str(path)
        self._generation = 0
        self._generation_lock = threading.Lock()
        # The content version the generation last moved for (a commit of this process, or
        # another's that a thread found): another thread finding the database at that version
        # has nothing to add.
        self._moved_for_content = None
        # Called with the seconds each committed write transaction took (metrics), or None.
        self.observe_transaction = None

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.row_factory = sqlite3.Row
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database: {exc.__class__.__name__}") from None
        return self._remember(conn)

    def _writable(self) -> bool:
        """The file may be written now (SQLite tries that first, then falls back to
        read-only). Asked with access(2), never by opening the file: closing any descriptor
        of it would drop this process's SQLite locks on it."""
        if not os.path.exists(self.path):
            return True  # SQLite creates it
        return os.access(self.path, os.W_OK, effective_ids=os.access in os.supports_effective_ids)

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "stale", False) and not conn.in_transaction:
            self._drop(conn)
            conn = None
        if conn is None:
            writable = self._writable()
            conn = self._local.conn = self._open()
            # Checked on both sides of the open: either failing means SQLite may have
            # fallen back to read-only.
            self._local.read_only = not (writable and self._writable())
        return conn

    def _for_writing(self) -> sqlite3.Connection:
        """This thread's connection for a write transaction: a fresh one in place of a
        connection opened read-only, once the file is writable again."""
        local = self._local
        conn = getattr(local, "conn", None)
        if (conn is not None and getattr(local, "read_only", False) and not conn.in_transaction
                and self._writable()):
            local.stale = True
        return self.conn

    def _drop(self, conn):
        """Close this thread's connection; the next use opens a fresh one."""
        with self._all_lock:
            if conn in self._all:
                self._all.remove(conn)
        with contextlib.suppress(sqlite3.Error):
            conn.close()
        self._local.conn = self._local.seen = None
        self._local.stale = self._local.read_only = False

    def _failed(self, exc: sqlite3.Error) -> Exception:
        """The store's exception for ``exc``; a connection that hit I/O trouble is replaced."""
        if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _REOPEN_AFTER:
            self._local.stale = True
        return _store_error(exc)

    def generation(self) -> int:
        """A number that moves whenever the data a read can show may have changed.

        It moves after every commit of ``transaction()`` in this process, and whenever this
        thread's connection sees ``PRAGMA data_version`` change (any other connection
        committed: another thread, or another process such as the admin command) together
        with the database's content version, or has itself changed rows outside
        ``transaction()``. Bookkeeping commits (``transaction(bookkeeping=True)``: read audit
        events, a token's last use) change nothing a read shows and leave the content version
        and the generation alone. Caches of what reads compute are valid for one generation.
        A connection's first look moves it too: it cannot tell what happened before it was
        opened. A commit moves it once: a thread that finds the content version it last moved
        for (this process's commit, or another's found by another thread; no commit since)
        leaves it, which would otherwise empty every read cache once more per thread and per
        commit.
        """
        local = self._local
        conn = getattr(local, "conn", None) or self.conn
        try:
            seen = (conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes)
            if getattr(local, "seen", None) != seen:
                content = conn.execute("PRAGMA user_version").fetchone()[0]
                previous = getattr(local, "seen", None)
                if previous is None or previous[1] != seen[1]:
                    self._advance_generation()
                elif getattr(local, "content", None) != content != self._moved_for_content:
                    self._advance_generation(content)
                local.seen, local.content = seen, content
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        return self._generation

    def _advance_generation(self, content=None):
        """Move the generation (for the database's content version ``content``, if known)."""
        with self._generation_lock:  # += is not atomic across threads; a lost move is a bug
            self._generation += 1
            if content is not None:
                self._moved_for_content = content

    def utils(self) -> sqlite_utils.Database:
        return sqlite_utils.Database(self.conn)

    def execute(self, sql, params=()):
        try:
            return self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._failed(exc) from None

    def executemany(self, sql, rows):
        try:
            return self.conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise self._failed(exc) from None

    def insert_returning(self, sql, rows) -> list:
        """Run an ``INSERT ... RETURNING <one column>`` for each row; return the values."""
        return [self.execute(sql, row).fetchone()[0] for row in rows]

    @contextlib.contextmanager
    def transaction(self, bookkeeping=False):
        """Run the block as one write transaction (``BEGIN IMMEDIATE``); roll back on error.

        Nested use joins the outer transaction. A ``bookkeeping`` transaction writes only what
        no cached read shows (audit events of reads, a token's last use, Lockbox shares): it leaves the content
        version (``PRAGMA user_version``, moved by every other commit) and so every read cache
        of every process as they were.
        """
        conn = self._for_writing()
        if conn.in_transaction:
            yield self
            return
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        self._begun()
        written = None
        try:
            yield self
            if not bookkeeping:
                content = conn.execute("PRAGMA user_version").fetchone()[0]
                written = (content + 1) % CONTENT_VERSION_WRAP
                conn.execute(f"PRAGMA user_version = {written}")
        except BaseException:
            self._ended(committed=False)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._ended(committed=False)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._failed(exc) from None
        local = self._local
        seen = getattr(local, "seen", None)
        if bookkeeping:
            if seen is not None:  # this connection's own changes were bookkeeping only
                local.seen = (seen[0], conn.total_changes)
        else:
            if seen is not None:  # its own changes, counted by the move below (data_version
                local.seen = (seen[0], conn.total_changes)  # stays: others' commits still show)
                local.content = written
            self._advance_generation(written)
            if self.observe_transaction is not None:
                self.observe_transaction(time.perf_counter() - started)
        self._ended(committed=True)

    def take_turn(self, task: str) -> bool:
        """Claim ``task`` (one node at a time) for the current transaction: here always, since
        one SQLite file has one writer."""
        return True

    @contextlib.contextmanager
    def task_lock(self, task: str):
        """Hold ``task`` (one node at a time) across several transactions: the block gets
        True, here always (one SQLite file is served by one process)."""
        yield True

    @contextlib.contextmanager
    def lock_wait(self, milliseconds: int):
        """Give up on the write lock after ``milliseconds`` inside the block."""
        self.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")
        try:
            yield
        finally:
            self.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def migrate(self):
        """Apply pending schema migrations (harmless when there are none)."""
        try:
            migrations.apply(self.utils())
        except sqlite3.Error as exc:
            raise self._failed(exc) from None

    def integrity_check(self) -> bool:
        return self.scalar("PRAGMA quick_check") == "ok"

def _store_error(exc: sqlite3.Error) -> Exception:
    if isinstance(exc, sqlite3.IntegrityError):
        return Conflict("a uniqueness or reference rule was broken")
    return StoreError(f"database error: {exc.__class__.__name__}: {exc}")
