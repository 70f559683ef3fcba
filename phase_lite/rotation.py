"""Key rotation: a new master key, or a new data key for one app.

``rotate_master_key``: generate a master key and re-wrap every app's data key under it, and a
new check blob, in one transaction (the fields themselves do not change). With a key file the
new key is written first as ``<new>\\n<previous>\\n`` (atomically, mode 0600), so whichever
moment the process stops at, the file opens the database: before the commit the previous key
opens it, after the commit the new one does. Once the commit is confirmed the previous line is
dropped. Before anything changes, the previous key line(s) are kept in
``<key file>.retired-<UTC time>`` (mode 0600) beside the key file, which ``restore`` reads to
open a backup made before the rotation. With ``PHASE_LITE_MASTER_KEY`` nothing is written:
the new key is handed to ``publish`` (printed for the operator) *before* the database changes,
since a key that exists nowhere else would lose every secret.

``rotate_app_key``: draw a new data key for one app, decrypt every encrypted field of that app
(``store.ciphertexts``) with the old key and encrypt it with the new one, and store the new
wrapped key, all in one transaction. Plaintexts stay in memory only.

Both drop the vault's cached key material afterwards.
"""

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from . import audit, keyring
from .config import Config
from .store import apps as app_store
from .store import ciphertexts as cipher_store
from .store import meta as meta_store
from .store import mirrors as mirror_store


class RotationError(Exception):
    """A rotation could not be done; the message says what was (not) changed."""


@dataclass(frozen=True)
class MasterRotation:
    previous_key_ids: list
    new_key_id: str
    apps: int
    key_file: Path | None  # where the new key was written; None when it comes from the env
    new_key: str | None = field(default=None, repr=False)  # only for PHASE_LITE_MASTER_KEY
    retired_file: Path | None = None  # where the previous key was kept (with a key file)


def decrypt_app_fields(db, vault, app_id):
    """Yield ((table, column, field, row id), plaintext) for every encrypted field of an app.

    Raise ``vault.DecryptionFailed`` naming the first row that does not open.
    """
    data_key = vault.data_key(app_id)
    for table, column, name, row_id, blob in cipher_store.app_ciphertexts(db, app_id):
        yield (table, column, name, row_id), vault.decrypt(data_key, table, row_id, name, blob)


def rotate_app_key(db, vault, app_id) -> int:
    """Give one app a new data key, re-encrypting its fields; return how many were."""
    with db.transaction():
        updates = defaultdict(list)
        new_key = vault.keyring.new_data_key()
        count = 0
        for (table, column, name, row_id), text in decrypt_app_fields(db, vault, app_id):
            updates[table, column].append(
                (row_id, vault.encrypt(new_key, table, row_id, name, text)))
            count += 1
        for (table, column), rows in updates.items():
            cipher_store.set_ciphertexts(db, table, column, rows)
        app_store.set_wrapped_data_key(db, app_id, vault.keyring.wrap_data_key(new_key, app_id),
                                       new_key=True)
        audit.record(db, None, audit.CLI_META, "rotate_data_key", "app", app_id, app_id=app_id,
                     details={"fields": count})
    vault.forget()
    return count


def rotate_master_key(config: Config, db, vault, *, publish=None) -> MasterRotation:
    """Replace the master key; see the module docstring for the order of the steps.

    ``publish(new_key_text)`` is required when the key comes from PHASE_LITE_MASTER_KEY.
    """
    setting, previous_lines = config.read_master_key_lines()
    try:
        previous = [keyring.parse_master_key(line) for line in previous_lines]
    except ValueError:
        raise RotationError(f"{setting}: malformed master key; nothing was changed") from None
    new_key = keyring.generate_master_key()
    new_text = keyring.encode_master_key(new_key)
    rotating = keyring.Keyring([new_key, *previous])
    previous_ids = [keyring.master_key_id(key) for key in previous]
    key_file = None if config.master_key_env else config.master_key_file
    retired_file = None
    if key_file is not None:  # kept first: no moment at which the previous key exists nowhere
        retired_file = retire_keys(key_file, previous_lines)
    if key_file is None:
        if publish is None:
            raise ValueError("publish is required when the key comes from the environment")
        publish(new_text)
    else:
        _write_key_file(key_file, [new_text, *previous_lines], changed="nothing was changed")
    try:
        with db.transaction():
            apps = rewrap_data_keys(db, rotating)
            audit.record(db, None, audit.CLI_META, "rotate_master_key", "master_key",
                         details={"from": previous_ids[0], "to": rotating.current_key_id,
                                  "apps": apps})
    except BaseException:
        if key_file is not None:
            _write_key_file(key_file, previous_lines,
                            changed=f"{key_file} still holds the new key as its first line")
        raise
    vault.forget()
    _confirm(db, keyring.Keyring([new_key]))
    if key_file is not None:
        _write_key_file(key_file, [new_text],
                        changed=f"{key_file} still holds the previous key as its second line "
                                "(harmless; run the rotation again to drop it)")
    return MasterRotation(previous_ids, rotating.current_key_id, apps, key_file,
                          None if key_file else new_text, retired_file)


def rewrap_data_keys(db, ring: keyring.Keyring) -> int:
    """Wrap every app's data key, and a new check blob, under ``ring``'s current key (call
    inside a transaction); return how many apps. The fields themselves do not change."""
    apps = app_store.all_apps(db)
    for app in apps:
        try:
            data_key = ring.unwrap_data_key(app["wrapped_data_key"], app["id"])
        except keyring.KeyringError:
            raise RotationError(
                f"the data key of app {app['id']} does not open with the loaded master keys; "
                "nothing was changed"
            ) from None
        app_store.set_wrapped_data_key(db, app["id"], ring.wrap_data_key(data_key, app["id"]))
    for source in mirror_store.all_sources(db):  # a mirror's token key, as an app's
        key_id = f"mirror:{source['id']}"
        try:
            data_key = ring.unwrap_data_key(source["wrapped_key"], key_id)
        except keyring.KeyringError:
            raise RotationError(
                f"the token key of mirror {source['name']} does not open with the loaded master "
                "keys; nothing was changed") from None
        mirror_store.set_wrapped_key(db, source["id"], ring.wrap_data_key(data_key, key_id))
    meta_store.put_blob(db, "master_key_check", ring.make_check_blob())
    return len(apps)


def dated_sibling(path: Path, label: str) -> Path:
    """A new name beside ``path``: ``<name>.<label>-<UTC time>``, numbered if already taken."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    sibling = path.with_name(f"{path.name}.{label}-{stamp}")
    suffix = 1
    while sibling.exists():
        suffix += 1
        sibling = path.with_name(f"{path.name}.{label}-{stamp}-{suffix}")
    return sibling


def retire_keys(key_file: Path, lines) -> Path:
    """Keep retired key lines in ``<key file>.retired-<UTC time>`` beside it (mode 0600), so
    that a backup made before the rotation can still be restored; return that file."""
    retired = dated_sibling(key_file, "retired")
    _write_key_file(retired, lines, changed="nothing was changed")
    return retired


def _confirm(db, ring: keyring.Keyring):
    """Check that the new key alone opens the check blob and wrapped every data key."""
    if not ring.verify_check_blob(meta_store.get_blob(db, "master_key_check")):
        raise RotationError("the new master key does not open the check blob")
    for app in app_store.all_apps(db):
        if ring.wrapped_key_id(app["wrapped_data_key"]) != ring.current_key_id:
            raise RotationError(f"the data key of app {app['id']} was not re-wrapped")
    for source in mirror_store.all_sources(db):
        if ring.wrapped_key_id(source["wrapped_key"]) != ring.current_key_id:
            raise RotationError(f"the token key of mirror {source['name']} was not re-wrapped")


def _write_key_file(path: Path, lines, *, changed: str):
    """Replace the key file atomically (write, fsync, rename, fsync the directory), mode 0600."""
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("".join(f"{line}\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise RotationError(f"cannot write {path} ({exc.strerror}); {changed}") from None
