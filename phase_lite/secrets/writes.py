"""Writes: create, update and delete secrets, each request one transaction with its audit
event. ``Writer`` is also how ``history`` writes a restore."""

import dataclasses

from .. import audit, conditional
from ..apps import refuse_if_mirrored
from ..errors import DoesNotExist, Duplicate, InvalidRequest
from ..paths import ROOT, folder_chain, normalize_path
from ..store import new_id, now
from ..store import apps as app_store
from ..store import secrets as secret_store
from .model import (DUPLICATE, SEALED, NewSecret, Override, Secret, SecretChange, Wire,
                    require_permission)
from .parsing import tag_names
from .snapshots import decrypt_row

NUL_IN_PATH = "A secret's path cannot contain a NUL character."


def stored_path(path) -> str:
    """The normal form of a path a write stores (``normalize_path``); 400 when it holds NUL,
    which PostgreSQL cannot store (refused on SQLite too, so both answer alike)."""
    path = normalize_path(path)
    if "\x00" in path:
        raise InvalidRequest(NUL_IN_PATH)
    return path


# -- writes ----------------------------------------------------------------------------------


def create_secrets(services, principal, env_row, entries, meta=None, *,
                   expected_version=None) -> list[Secret]:
    """Create secrets in one transaction; return them in entry order.

    409 ``Duplicate secret found`` when an entry's (path, key) is taken by a live secret or by
    another entry of the batch; tags are checked after that, as Phase does. With
    ``expected_version`` (an ``If-Match``), 412 unless the environment is still at it.
    """
    require_permission(principal, env_row, "POST")
    db, vault = services.db, services.vault
    env_id = env_row["id"]
    env_keys = vault.environment_keys(env_row)
    entries = [dataclasses.replace(entry, path=stored_path(entry.path)) for entry in entries]
    digests = [entry.key_digest or env_keys.digest(entry.key) for entry in entries]
    positions = [(entry.path, digest) for entry, digest in zip(entries, digests)]
    if len(set(positions)) != len(positions):
        raise Duplicate(DUPLICATE)
    with db.transaction():
        require_environment_version(db, env_id, expected_version)
        taken = {(row["path"], row["key_digest"])
                 for row in secret_store.live_positions(db, env_id, digests)}
        if taken.intersection(positions):
            raise Duplicate(DUPLICATE)
        names = [tag_names(entry.tags) for entry in entries]
        writer = Writer(services, principal, env_row)
        created = writer.insert(list(zip(entries, digests, names)))
        writer.finish("create", created, meta)
    return created


def update_secrets(services, principal, env_row, changes, meta=None, *,
                   expected_version=None) -> list[Secret]:
    """Apply partial updates in one transaction; return the secrets in change order.

    Addressed by id within the environment (404 ``Secret not found: <id>``); ``version`` goes up
    by one per change; a sealed secret keeps its value and type; the duplicate check uses the
    secret's own path when the change gives none, and looks at the batch as a whole.
    ``expected_version`` as for ``create_secrets``.
    """
    require_permission(principal, env_row, "PUT")
    db, vault = services.db, services.vault
    env_id = env_row["id"]
    env_keys = vault.environment_keys(env_row)
    changes = [change if change.path is None
               else dataclasses.replace(change, path=stored_path(change.path))
               for change in changes]
    with db.transaction():
        require_environment_version(db, env_id, expected_version)
        rows = secret_store.secrets_by_id(db, env_id, [c.id for c in changes])
        data_key = vault.data_key(env_row["app_id"]) if rows else None
        tags = secret_store.tag_names_of(db, rows)
        states = {
            secret_id: decrypt_row(vault, data_key, row, tags.get(secret_id, ()))
            for secret_id, row in rows.items()
        }
        targets = _planned_updates(changes, states, env_keys)
        _check_update_duplicates(db, env_id, changes, states, targets)
        writer = Writer(services, principal, env_row, data_key)
        updated = []
        for change in changes:
            current = states.get(change.id)
            if current is None:
                raise DoesNotExist(f"Secret not found: {change.id}")
            if current.type == "sealed" and change.type not in (None, "sealed"):
                raise InvalidRequest(SEALED)
            names = None if change.tags is None else tag_names(change.tags)
            states[change.id] = writer.update(current, change, names)
            updated.append(states[change.id])
        writer.finish("update", updated, meta)
    return updated


def delete_secrets(services, principal, env_row, ids, meta=None, *,
                   expected_version=None) -> int:
    """Soft-delete secrets of the environment in one transaction; return how many.

    Any id that is not a live secret of this environment gives 404 and deletes nothing.
    ``expected_version`` as for ``create_secrets``.
    """
    require_permission(principal, env_row, "DELETE")
    db, vault = services.db, services.vault
    env_id = env_row["id"]
    with db.transaction():
        require_environment_version(db, env_id, expected_version)
        rows = secret_store.secrets_by_id(db, env_id, ids)
        missing = [secret_id for secret_id in ids if secret_id not in rows]
        if missing:
            raise DoesNotExist(
                f"Secret(s) not found in this environment: {', '.join(missing)}"
            )
        data_key = vault.data_key(env_row["app_id"])
        tags = secret_store.tag_names_of(db, rows)
        writer = Writer(services, principal, env_row, data_key)
        deleted = [
            writer.delete(decrypt_row(vault, data_key, rows[secret_id], tags.get(secret_id, ())))
            for secret_id in dict.fromkeys(ids)
        ]
        writer.finish("delete", deleted, meta)
    return len(deleted)


def require_environment_version(db, env_id, expected_version):
    """An ``If-Match`` checked under the write lock: no write can slip in between."""
    if expected_version is not None:
        conditional.require_version(
            app_store.environment_versions(db, [env_id])[env_id], expected_version)


def _planned_updates(changes, states, env_keys):
    """{secret id: (final path, final digest)} after the whole batch (unknown ids skipped)."""
    targets = {}
    for change in changes:
        current = states.get(change.id)
        if current is None:
            continue
        path, digest = targets.get(change.id, (current.path, current.key_digest))
        if change.key is not None:
            digest = change.key_digest or env_keys.digest(change.key)
        if change.path is not None:
            path = change.path
        targets[change.id] = (path, digest)
    return targets


def _check_update_duplicates(db, env_id, changes, states, targets):
    moved = {
        change.id for change in changes
        if change.id in targets and (change.key is not None or change.path is not None)
        and states[change.id].deleted_at is None
    }
    if not moved:
        return
    final = {secret_id: targets[secret_id] for secret_id in moved}
    for row in secret_store.live_positions(db, env_id, {digest for _, digest in final.values()}):
        if row["id"] not in final:
            final[row["id"]] = (row["path"], row["key_digest"])
    if len(set(final.values())) != len(final):
        raise Duplicate(DUPLICATE)


class Writer:
    """The writes of one request, inside its transaction: rows, folders, tags, overrides,
    version snapshots; then one environment bump and one audit event. Every door's write
    comes here, so a mirrored app is refused here (only ``mirror``'s sync says ``syncing``)."""

    def __init__(self, services, principal, env_row, data_key=None, *, syncing=False):
        self.services, self.db, self.vault = services, services.db, services.vault
        if not syncing:
            refuse_if_mirrored(self.db, env_row["app_id"])
        self.principal = principal
        self.env_row = env_row
        self.env_id = env_row["id"]
        self.env_keys = self.vault.environment_keys(env_row)
        self.data_key = data_key or self.vault.data_key(env_row["app_id"])
        self.version_before = app_store.environment_versions(self.db, [self.env_id])[self.env_id]
        self.keeps_overrides = principal is not None and principal.is_user
        self._versions = []
        self._folders = {ROOT: None}
        self._tags = {}  # name: (tag id, listing order)

    def insert(self, items) -> list[Secret]:
        """Insert new secrets, ``items`` being (NewSecret, key digest, tag names): the rows and
        their tags each in one batch (one round trip on PostgreSQL)."""
        rows = [self._new_row(entry, digest) for entry, digest, _ in items]
        rowids = secret_store.insert_secrets(self.db, rows)
        created, tagged = [], []
        for (entry, digest, names), row, rowid in zip(items, rows, rowids):
            secret_id, stamp = row["id"], row["created_at"]
            if names:
                names = self._ordered(names)
                tagged.extend((secret_id, tag_id) for tag_id in self._ids(names))
            if entry.override is not None:
                # Phase validates isActive on create but always stores an active override.
                self._set_override(secret_id, entry.override, True, stamp)
            secret = Secret(
                id=secret_id, key=entry.key, value=entry.value, comment=entry.comment,
                tags=names, type=entry.type, path=entry.path, key_digest=digest, version=1,
                created_at=stamp, updated_at=stamp, environment_id=self.env_id,
                folder_id=row["folder_id"], order=(stamp, rowid),
            )
            self._keep_version(secret, "create")
            created.append(secret)
        secret_store.insert_secret_tags(self.db, tagged)
        return created

    def _new_row(self, entry: NewSecret, digest: str) -> dict:
        secret_id, stamp = new_id(), now()
        wire = entry.wire or Wire()
        return {
            "id": secret_id,
            "environment_id": self.env_id,
            "folder_id": self._folder(entry.path),
            "path": entry.path,
            "key_digest": digest,
            "key_enc": self._encrypt("secrets", secret_id, "key", entry.key),
            "value_enc": self._encrypt("secrets", secret_id, "value", entry.value),
            "comment_enc": self._encrypt("secrets", secret_id, "comment", entry.comment),
            "wire_key": self._seal_wire("secrets", secret_id, "wire_key", wire.key),
            "wire_value": self._seal_wire("secrets", secret_id, "wire_value", wire.value),
            "wire_comment": self._seal_wire("secrets", secret_id, "wire_comment",
                                            wire.comment),
            "type": entry.type,
            "version": 1,
            "created_at": stamp,
            "updated_at": stamp,
        }

    def update(self, current: Secret, change: SecretChange, names, *,
               restored_from=None) -> Secret:
        """Apply ``change``; with ``restored_from`` (a version number), it is a restore."""
        stamp = now()
        wire = change.wire or Wire()
        fields = {"version": current.version + 1, "updated_at": stamp}
        key, value, comment = current.key, current.value, current.comment
        path, folder_id, digest = current.path, current.folder_id, current.key_digest
        if change.key is not None:
            key = change.key
            digest = change.key_digest or self.env_keys.digest(key)
            fields.update(key_digest=digest,
                          wire_key=self._seal_wire("secrets", current.id, "wire_key", wire.key),
                          key_enc=self._encrypt("secrets", current.id, "key", key))
        if change.value is not None and current.type != "sealed":
            value = change.value
            fields.update(wire_value=self._seal_wire("secrets", current.id, "wire_value",
                                                     wire.value),
                          value_enc=self._encrypt("secrets", current.id, "value", value))
        if change.comment is not None:
            comment = change.comment
            fields.update(wire_comment=self._seal_wire("secrets", current.id, "wire_comment",
                                                       wire.comment),
                          comment_enc=self._encrypt("secrets", current.id, "comment", comment))
        if change.type is not None:
            fields["type"] = change.type
        if change.path is not None:
            path, folder_id = change.path, self._folder(change.path)
            fields.update(path=path, folder_id=folder_id)
        tags = current.tags
        if names is not None:
            tags = self._ordered(names)
            secret_store.replace_secret_tags(self.db, current.id, self._ids(tags))
        secret_store.update_secret(self.db, current.id, fields)
        if change.override is not None:
            self._set_override(current.id, change.override, change.override.is_active, stamp)
        secret = Secret(
            id=current.id, key=key, value=value, comment=comment, tags=tags,
            type=fields.get("type", current.type), path=path, key_digest=digest,
            version=fields["version"], created_at=current.created_at, updated_at=stamp,
            environment_id=self.env_id, folder_id=folder_id, deleted_at=current.deleted_at,
            order=(stamp, current.order[1]),
        )
        self._keep_version(secret, "update" if restored_from is None else "restore",
                           restored_from)
        return secret

    def delete(self, current: Secret) -> Secret:
        stamp = now()
        secret_store.soft_delete_secrets(self.db, [current.id], stamp)
        secret = dataclasses.replace(current, deleted_at=stamp, updated_at=stamp,
                                     order=(stamp, current.order[1]))
        self._keep_version(secret, "delete")
        return secret

    def finish(self, action: str, secrets, meta):
        """Write the versions, bump the environment, record the audit event; once the
        transaction commits (never if it rolls back), move the cached snapshot on to the new
        version."""
        secret_store.insert_versions(self.db, self._versions)
        app_store.bump_environment(self.db, self.env_id)
        audit.record_secret_write(
            self.db, self.principal, action, self.env_row,
            [(secret.id, secret.version) for secret in secrets], meta,
        )
        self.db.on_commit(lambda: self.services.snapshots.advance(
            self.env_id, self.version_before, self.version_before + 1, secrets))

    def _encrypt(self, table, row_id, field_name, text):
        return self.vault.encrypt(self.data_key, table, row_id, field_name, text)

    def _seal_wire(self, table, row_id, column, ciphertext):
        """A client's ph:v1 ciphertext as stored: sealed under the data key (None stays None)."""
        return None if ciphertext is None else self._encrypt(table, row_id, column, ciphertext)

    def _folder(self, path):
        if path not in self._folders:
            self._folders[path] = secret_store.ensure_folders(
                self.db, self.env_id, folder_chain(path))
        return self._folders[path]

    def _ordered(self, names) -> tuple:
        """The names (tags created where missing) in the order listings show them."""
        missing = [name for name in names if name not in self._tags]
        if missing:
            org_id = secret_store.organisation_of_environment(self.db, self.env_id)
            self._tags.update(secret_store.ensure_tags(self.db, org_id, missing))
        return tuple(sorted(names, key=lambda name: self._tags[name][1]))

    def _ids(self, names):
        return [self._tags[name][0] for name in names]

    def _set_override(self, secret_id, override: Override, is_active: bool, stamp):
        if not self.keeps_overrides:
            return
        user_id = self.principal.account_id
        existing = secret_store.personal_secrets(self.db, user_id, [secret_id]).get(secret_id)
        personal_id = existing["id"] if existing is not None else new_id()
        value_enc = self._encrypt("personal_secrets", personal_id, "value", override.value)
        wire_value = self._seal_wire("personal_secrets", personal_id, "wire_value",
                                     override.wire_value)
        if existing is not None:
            secret_store.update_personal_secret(
                self.db, personal_id, value_enc, wire_value, is_active, stamp)
            return
        secret_store.insert_personal_secret(self.db, {
            "id": personal_id, "secret_id": secret_id, "user_id": user_id,
            "value_enc": value_enc, "wire_value": wire_value,
            "is_active": int(is_active), "created_at": stamp, "updated_at": stamp,
        })

    def _keep_version(self, secret: Secret, event: str, restored_from=None):
        version_id = new_id()
        actor_type, actor_id = audit.actor(self.principal)
        self._versions.append({
            "id": version_id,
            "secret_id": secret.id,
            "version": secret.version,
            "event": event,
            "restored_from": restored_from,
            "actor_type": actor_type,
            "actor_id": actor_id,
            "path": secret.path,
            "key_digest": secret.key_digest,
            "key_enc": self._encrypt("secret_versions", version_id, "key", secret.key),
            "value_enc": self._encrypt("secret_versions", version_id, "value", secret.value),
            "comment_enc": self._encrypt("secret_versions", version_id, "comment",
                                         secret.comment),
            "type": secret.type,
            "tags": secret.tags,
            "created_at": secret.updated_at,
        })
