"""Online backups and verified restores of the database.

``backup``: ``VACUUM INTO`` a new private file beside the target (a consistent snapshot taken in
one read transaction, so a running server keeps serving and writing), fsync, rename into place,
then check the copy: it opens, ``PRAGMA integrity_check`` is ok, the master key opens its check
blob, every app's data key and every encrypted field. A backup holds ciphertexts only; it is
readable with the master key that was current when it was made, which is never written into it.

``restore``: check the backup the same way before anything is touched, then copy it into the
database with SQLite's backup API (one write transaction on the destination, so every connection
sees the old or the new content, never a mix). A backup made before ``keys rotate-master``
opens with the retired key that rotation kept beside the key file
(``<key file>.retired-<time>``): the restore loads it, and every app's data key is wrapped
again under the current key in the restore's transaction, so the current key alone opens the
restored database.

"In use" means a running ``phase-lite serve``: it holds a shared ``flock`` on
``<database>.lock`` for its lifetime. The kernel drops the lock when the process ends, even by
SIGKILL, so it is never stale. ``restore`` and the ``keys rotate-*`` commands take the exclusive
lock without waiting: a held shared lock means a server is running (``restore --force`` goes on
anyway, and the server must be restarted so it drops its caches), and a server does not start
while one of them holds it.

On PostgreSQL the same lock is a session advisory lock (shared by every serving node, exclusive
for a restore or a rotation), the backup is written from one consistent snapshot into a new
SQLite file (``store.backups.export_to_sqlite``) and checked like any other, and a restore loads
a backup file into the database in one transaction.
"""

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import audit, keyring, mirror, rotation
from .config import Config, ConfigError
from .store import SqliteDatabase, StoreError, open_database
from .store import apps as app_store
from .store import backups as backup_store
from .store import meta as meta_store
from .store import mirrors as mirror_store
from .vault import DecryptionFailed, Vault


class BackupError(Exception):
    """A backup cannot be written, checked or restored; the message says why in one line."""


class WrongMasterKey(BackupError):
    """The backup was sealed by a master key that is not loaded (``key_id``, or None)."""

    def __init__(self, message, key_id):
        super().__init__(message)
        self.key_id = key_id


@dataclass(frozen=True)
class BackupSummary:
    path: str
    apps: int
    environments: int
    secrets: int
    fields: int  # encrypted fields that were decrypted to check the file


# -- the serving lock --------------------------------------------------------------------------


def lock_path(config: Config) -> Path:
    return config.database.with_name(config.database.name + ".lock")


def hold_serving_lock(config: Config):
    """Take the shared serving lock for this process's lifetime; return it (``close()``).

    Raise ConfigError when a restore or a master-key rotation holds the exclusive lock.
    """
    if config.database_url:
        from .store.postgres import SERVING_LOCK, AdvisoryLock

        lock = _advisory(config, lambda: AdvisoryLock.try_take(
            config.database_url, SERVING_LOCK, shared=True))
        if lock is None:
            raise ConfigError(
                "PHASE_LITE_DATABASE_URL: a restore or key rotation is running on the "
                "PostgreSQL database; start the server when it has finished")
        return lock
    handle = _open_lock(config)
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(
            f"PHASE_LITE_DATABASE: a restore or key rotation is running on {config.database}; "
            "start the server when it has finished"
        ) from None
    return handle


@contextlib.contextmanager
def exclusive_lock(config: Config, *, force: bool = False, action: str = "restore"):
    """Hold the exclusive lock (no server running) for the block.

    Raise BackupError when a server holds the serving lock, unless ``force``: then the block
    runs anyway and gets True (the database is in use).
    """
    if config.database_url:
        from .store.postgres import SERVING_LOCK, AdvisoryLock

        handle = _advisory(config, lambda: AdvisoryLock.try_take(
            config.database_url, SERVING_LOCK, shared=False))
        holder = "a node holds its serving lock"
    else:
        handle = _open_lock(config)
        holder = f"it holds {lock_path(config)}"
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            handle = None
    try:
        in_use = handle is None
        if in_use and not force:
            raise BackupError(
                f"{config.database_name} is in use by a running phase-lite server ({holder}); "
                f"stop it before the {action}"
                + (", or pass --force" if action == "restore" else "")
            )
        yield in_use
    finally:
        if handle is not None:
            handle.close()


def _advisory(config: Config, take):
    try:
        return take()
    except StoreError as exc:
        raise ConfigError(f"PHASE_LITE_DATABASE_URL: {exc}") from None


def _open_lock(config: Config):
    path = lock_path(config)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    return os.fdopen(fd, "r+b")


# -- backup ------------------------------------------------------------------------------------


def create_backup(db: SqliteDatabase, ring: keyring.Keyring, target) -> BackupSummary:
    """Write a checked, consistent copy of the live database to ``target`` (a new file)."""
    target = Path(target).absolute()
    if target.exists():
        raise BackupError(f"{target} already exists; choose a new file name")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a directory")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    # VACUUM INTO accepts an existing empty file: create it private first.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        if db.backend == "sqlite":
            backup_store.vacuum_into(db, partial)
        else:
            backup_store.export_to_sqlite(db, partial)
        _fsync_file(partial)
        summary = verify_backup(partial, ring)
        os.link(partial, target)  # fails rather than replace a file made meanwhile
    except FileExistsError:
        raise BackupError(f"{target} already exists; choose a new file name") from None
    except StoreError as exc:
        raise BackupError(f"cannot write the backup: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    _fsync_dir(target.parent)
    # After the copy: a backup is a read of the database it records in (no cached read changes).
    with db.transaction(bookkeeping=True):
        audit.record(db, None, audit.CLI_META, "backup", "database",
                     details={"target": target.name, "counts": _counts(summary)})
    return BackupSummary(str(target), summary.apps, summary.environments, summary.secrets,
                         summary.fields)


def verify_backup(path, ring: keyring.Keyring) -> BackupSummary:
    """Check that a database file is whole and opens with the master key; never writes to it.

    Checks ``PRAGMA integrity_check``, the master-key check blob, every app's data key, every
    encrypted field and every mirror source's token. Raise BackupError naming what failed (never a value).
    """
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    snapshot = backup_store.ReadOnlyDatabase(path)
    try:
        if not backup_store.integrity_check(snapshot):
            raise BackupError(f"{path} failed its integrity check")
        check = meta_store.get_blob(snapshot, "master_key_check")
        if check is None:
            raise BackupError(f"{path} is not an initialised phase_lite database")
        if not ring.verify_check_blob(check):
            raise WrongMasterKey(
                f"{path} was made with another master key (this key does not open it)",
                ring.sealing_key_id(check),
            )
        vault = Vault(snapshot, ring)
        fields = 0
        for app in app_store.all_apps(snapshot):
            fields += sum(1 for _ in rotation.decrypt_app_fields(snapshot, vault, app["id"]))
        fields += _open_mirror_tokens(path, snapshot, ring)
        counts = backup_store.count_rows(snapshot)
    except DecryptionFailed as exc:
        raise BackupError(f"{path}: {exc} (another master key, or a damaged file)") from None
    except StoreError as exc:
        raise BackupError(f"{path} is not a readable phase_lite database ({exc})") from None
    finally:
        snapshot.close()
    return BackupSummary(str(path), counts["apps"], counts["environments"], counts["secrets"],
                         fields)


def _open_mirror_tokens(path, snapshot, ring) -> int:
    """Open every mirror source's token (its key wrapped by the master key, as an app's);
    return how many. A backup made before mirrors existed has none."""
    if snapshot.one("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                    " AND name = 'mirror_sources'") is None:
        return 0
    sources = mirror_store.all_sources(snapshot)
    for source in sources:
        try:
            mirror.open_token(ring, source)
        except keyring.KeyringError:
            raise BackupError(f"{path}: the token of mirror {source['name']} does not open "
                              "(another master key, or a damaged file)") from None
    return len(sources)


# -- restore -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreResult:
    summary: BackupSummary
    was_in_use: bool
    set_aside: Path | None  # where a damaged database was moved before the restore
    kept: Path | None = None  # the copy of the replaced database
    retired_key_file: Path | None = None  # the retired master key that opened the backup
    retired_key_id: str | None = None


def restore_backup(config: Config, ring: keyring.Keyring, source, *,
                   force: bool = False) -> RestoreResult:
    """Check ``source`` with the master key, then make it the database.

    Nothing is touched when the check fails, or when a server is running and not ``force``.
    """
    if config.database_url:
        return _restore_into_postgres(config, ring, source, force=force)
    if Path(source).resolve() == config.database.resolve():
        raise BackupError(f"{source} is the database itself; give a backup file")
    opening, summary, retired = _open_backup(config, ring, source)
    with exclusive_lock(config, force=force) as in_use:
        set_aside = None if in_use else _set_aside_if_damaged(config.database)
        kept = _keep_replaced(config.database) if set_aside is None else None
        if not config.database.exists():
            config.database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(config.database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        db = SqliteDatabase(config.database)
        try:
            backup_store.copy_into(source, db)
            db.migrate()
            with db.transaction():
                _rewrap_under_current_key(db, opening, retired)
                if not ring.verify_check_blob(meta_store.get_blob(db, "master_key_check")):
                    raise BackupError("the restored database does not open with this key")
                audit.record(db, None, audit.CLI_META, "restore", "database",
                             details=_restore_details(source, summary, retired))
            backup_store.checkpoint(db)
        except StoreError as exc:
            raise BackupError(f"cannot restore into {config.database}: {exc}") from None
        finally:
            db.close()
    return RestoreResult(summary, in_use, set_aside, kept, *(retired or (None, None)))


def _open_backup(config: Config, ring: keyring.Keyring, source):
    """(keyring that opens the backup, its summary, (retired key file, key id) or None).

    A backup sealed by a key that is not loaded is tried with the keys ``keys rotate-master``
    retired beside the key file; when none is the one, the advice says what to load."""
    try:
        return ring, verify_backup(source, ring), None
    except WrongMasterKey as exc:
        wanted = exc.key_id
    for path in config.retired_key_files() if wanted else ():
        try:
            keys = [keyring.parse_master_key(line) for line in path.read_text().split()]
        except (OSError, ValueError):
            continue  # not a key file phase_lite wrote; the advice below still applies
        for key in keys:
            if keyring.master_key_id(key) == wanted:
                opening = ring.also_opening([key])
                return opening, verify_backup(source, opening), (path, wanted)
    raise BackupError(_wrong_key_advice(config, ring, source, wanted))


def _rewrap_under_current_key(db, opening: keyring.Keyring, retired):
    """After restoring a backup that a retired key opened: wrap its data keys under the
    current key (inside the restore's transaction)."""
    if retired is None:
        return
    try:
        rotation.rewrap_data_keys(db, opening)
    except rotation.RotationError as exc:
        raise BackupError(str(exc)) from None


def _restore_details(source, summary, retired) -> dict:
    details = {"source": Path(source).name, "counts": _counts(summary)}
    if retired is not None:
        details["retiredKeyId"] = retired[1]
    return details


def _wrong_key_advice(config: Config, ring: keyring.Keyring, source, key_id) -> str:
    needed = f"another master key ({key_id})" if key_id else "another master key"
    loaded = ", ".join(ring.key_ids())
    if config.master_key_env:
        where = ("PHASE_LITE_MASTER_KEY holds one key: put the current key on the first line "
                 "and that key on the second line of a file (mode 0600), set "
                 "PHASE_LITE_MASTER_KEY_FILE to it and unset PHASE_LITE_MASTER_KEY")
    else:
        where = (f"add that key as a second line of {config.master_key_file} (the first line "
                 "stays the current key)")
    retired = config.retired_key_files()
    if retired:
        loaded += f"; nor is it among the {len(retired)} retired keys beside the key file"
    return (f"{source} was made with {needed}, which is not loaded here (loaded: {loaded}); "
            f"{where}, restore again, then run phase-lite keys rotate-master.")


def _keep_replaced(database: Path) -> Path | None:
    """Copy the database about to be replaced to ``<database>.replaced-<UTC time>`` (0600)."""
    if not database.exists():
        return None
    kept = rotation.dated_sibling(database, "replaced")
    os.close(os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    db = SqliteDatabase(database)
    try:
        backup_store.vacuum_into(db, kept)
    except StoreError as exc:
        kept.unlink()
        raise BackupError(f"cannot keep a copy of {database} before the restore: {exc}") from None
    finally:
        db.close()
    _fsync_file(kept)
    return kept


def _restore_into_postgres(config: Config, ring: keyring.Keyring, source, *,
                           force: bool) -> RestoreResult:
    """Load a checked backup file into PostgreSQL in one transaction (the generation moves,
    so every node's caches are dropped on its next request)."""
    opening, summary, retired = _open_backup(config, ring, source)
    with exclusive_lock(config, force=force) as in_use:
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, work = tempfile.mkstemp(prefix=".restore-", suffix=".sqlite3",
                                        dir=config.data_dir)  # private: mode 0600
        os.close(handle)
        work = Path(work)
        db = open_database(config.database_url)
        try:
            shutil.copyfile(source, work)
            staged = SqliteDatabase(work)
            try:
                staged.migrate()  # a backup made by an older version: bring it up to date
            finally:
                staged.close()
            db.migrate()
            kept = _keep_replaced_postgres(config, db)
            with db.transaction():
                backup_store.import_into_postgres(work, db)
                _rewrap_under_current_key(db, opening, retired)
                if not ring.verify_check_blob(meta_store.get_blob(db, "master_key_check")):
                    raise BackupError("the restored database does not open with this key")
                audit.record(db, None, audit.CLI_META, "restore", "database",
                             details=_restore_details(source, summary, retired))
        except StoreError as exc:
            raise BackupError(f"cannot restore into {config.database_name}: {exc}") from None
        finally:
            db.close()
            with contextlib.suppress(FileNotFoundError):
                work.unlink()
    return RestoreResult(summary, in_use, None, kept, *(retired or (None, None)))


def _keep_replaced_postgres(config: Config, db) -> Path | None:
    """Write the PostgreSQL content about to be replaced to ``<data dir>/replaced-<UTC time>
    .sqlite3`` (0600; a backup file like any other), unless it holds nothing yet."""
    if meta_store.get_blob(db, "master_key_check") is None:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = config.data_dir / f"replaced-{stamp}.sqlite3"
    suffix = 1
    while kept.exists():
        suffix += 1
        kept = config.data_dir / f"replaced-{stamp}-{suffix}.sqlite3"
    os.close(os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        backup_store.export_to_sqlite(db, kept)
    except StoreError as exc:
        kept.unlink()
        raise BackupError(f"cannot keep a copy of {config.database_name} before the restore: "
                          f"{exc}") from None
    _fsync_file(kept)
    return kept


def _set_aside_if_damaged(database: Path) -> Path | None:
    """Move a database that does not open or fails its check (with its WAL) out of the way."""
    if not database.exists():
        return None
    db = SqliteDatabase(database)
    try:
        healthy = db.integrity_check()
    except StoreError:
        healthy = False
    finally:
        db.close()
    if healthy:
        return None
    aside = database.with_name(f"{database.name}.damaged-{int(time.time())}")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{database}{suffix}", f"{aside}{suffix}")
    return aside


def _counts(summary: BackupSummary) -> dict:
    # Nested under "counts": an event's "secrets" is always the list of secrets it names.
    return {"apps": summary.apps, "environments": summary.environments,
            "secrets": summary.secrets}


def _fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
