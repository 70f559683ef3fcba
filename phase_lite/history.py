"""Secret history, restore and deleted secrets: phase_lite extensions of Phase's API.

Every function takes ``services`` (``app.Services``), the caller (``auth.Principal``: a
token's account, or the admin command's local operator) and the environment row the request
is scoped to (from ``Authenticator.resolve_scope``), like the functions of ``secrets``, and
``meta`` (``audit.RequestMeta``: the channel, address and agent) for its audit event. Each
checks the role's ``Secrets`` permission (read for history and the deleted list, update for a
restore) and the caller's access to the environment, and records its audit event: reads as one
read event, a restore in the transaction that writes it. No Flask.

- ``secret_history(services, principal, env_row, secret_id, meta=None)``
  -> ``list[SecretVersion]``, newest first (a live or deleted secret of the environment);
  every value None once the secret is sealed.
- ``restore_secret(services, principal, env_row, secret_id, version, meta=None)``
  -> ``secrets.Secret``: the secret at a new version whose content (key, value, comment,
  tags, path, type) is that of ``version``; a deleted secret is undeleted. Old versions are
  never rewritten.
- ``deleted_secrets(services, principal, env_row, meta=None)`` -> ``list[DeletedSecret]``,
  most recently deleted first.
- ``find_secret(services, principal, env_row, key, path="/")`` -> the id of the secret at
  (path, key): the live one, else the one deleted last (for callers that name secrets by key).
- ``version_body``, ``deleted_body``: the JSON objects of the HTTP API.
"""

import dataclasses
import json
from dataclasses import dataclass, field

from . import audit, secrets
from .errors import DoesNotExist, Duplicate, InvalidRequest
from .paths import ROOT, normalize_path
from .secrets.snapshots import decrypt_row
from .secrets.writes import Writer, require_environment_version
from .store import render_time
from .store import history as history_store
from .store import secrets as secret_store

EVENTS = {"create": "created", "update": "updated", "delete": "deleted", "restore": "restored"}
SECRET_NOT_FOUND = "Secret not found"
VERSION_INVALID = "'version' must be a positive integer."


@dataclass(frozen=True, slots=True)
class Actor:
    """Who wrote a version: ``type`` and ``id`` are the audit log's (``audit.actor``); ``name``
    is the user's email, the service account's name or the operator's login (None for an
    account that is gone)."""
    type: str
    id: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class SecretVersion:
    """One write of a secret, decrypted as it was stored (references not resolved)."""
    secret_id: str
    version: int
    event: str                # created, updated, deleted, restored
    key: str = field(repr=False)
    value: str | None = field(repr=False)  # None: the secret is sealed (``secret_history``)
    comment: str = field(repr=False)
    tags: tuple
    path: str
    type: str
    actor: Actor | None       # None: written before actors were recorded, audit log pruned
    created_at: str
    restored_from: int | None = None


@dataclass(frozen=True, slots=True)
class DeletedSecret:
    id: str
    key: str = field(repr=False)
    path: str
    type: str
    version: int
    deleted_at: str
    deleted_by: Actor | None


# -- reading ---------------------------------------------------------------------------------


def secret_history(services, principal, env_row, secret_id, meta=None) -> list[SecretVersion]:
    """Every version of a secret of the environment (live or deleted), newest first."""
    _authorise(services, principal, env_row, "GET")
    db = services.db
    _secret_row(db, env_row, secret_id)
    rows = history_store.secret_versions(db, secret_id)
    data_key = services.vault.data_key(env_row["app_id"])
    history = [_version(services.vault, data_key, row) for row in rows]
    if any(version.type == "sealed" for version in history):
        # Sealed is for good (never unsealed, never restored to an unsealed version): no
        # version's value is shown again, those from before the sealing included. The
        # secrets API and the client protocol still give the current value, as Phase's do.
        history = [dataclasses.replace(version, value=None) for version in history]
    _record_read(services, principal, env_row, "secrets.read_history", [secret_id], meta)
    return history


def deleted_secrets(services, principal, env_row, meta=None) -> list[DeletedSecret]:
    """The environment's deleted secrets, most recently deleted first."""
    _authorise(services, principal, env_row, "GET")
    db, vault = services.db, services.vault
    rows = history_store.deleted_secrets(db, env_row["id"])
    data_key = vault.data_key(env_row["app_id"]) if rows else None
    found = [
        DeletedSecret(
            id=row["id"],
            key=vault.decrypt(data_key, "secrets", row["id"], "key", row["key_enc"]),
            path=row["path"], type=row["type"], version=row["version"],
            deleted_at=row["deleted_at"], deleted_by=_actor(row),
        )
        for row in rows
    ]
    _record_read(services, principal, env_row, "secrets.read_deleted", [d.id for d in found],
                 meta)
    return found


def find_secret(services, principal, env_row, key, path=ROOT) -> str:
    """The id of the secret at (path, key), live first, else the one deleted last; the key is
    matched as written, then upper-cased (the REST API stores keys upper-cased)."""
    _authorise(services, principal, env_row, "GET")
    env_keys = services.vault.environment_keys(env_row)
    path = normalize_path(path)
    for candidate in dict.fromkeys((key, key.upper())):
        found = history_store.find_secret_id(services.db, env_row["id"], path,
                                             env_keys.digest(candidate))
        if found is not None:
            return found
    raise DoesNotExist(f"No secret with this key at path {path} in this environment.")


# -- restoring -------------------------------------------------------------------------------


def parse_restore(body: dict) -> int:
    """The version a restore body ``{"version": N}`` names."""
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2 ** 63:
        raise InvalidRequest(VERSION_INVALID)  # (past 2**63 SQLite cannot compare it)
    return version


def restore_secret(services, principal, env_row, secret_id, version, meta=None, *,
                   expected_version=None) -> secrets.Secret:
    """Write a new version of the secret with the content of ``version``, in one transaction.

    404 for a secret not in the environment or an unknown version; 409 ``Duplicate secret
    found`` when the restored (path, key) belongs to another live secret; a sealed secret
    cannot be restored to a version that was not sealed (Phase's rule for PUT). With
    ``expected_version`` (an ``If-Match``), 412 unless the environment is still at it, as for
    the other writes of secrets.
    """
    _authorise(services, principal, env_row, "PUT")
    db, vault = services.db, services.vault
    env_id = env_row["id"]
    with db.transaction():
        require_environment_version(db, env_id, expected_version)
        row = _secret_row(db, env_row, secret_id)
        target_row = history_store.secret_version(db, secret_id, version)
        if target_row is None:
            raise DoesNotExist(f"Version {version} of this secret not found")
        data_key = vault.data_key(env_row["app_id"])
        tags = secret_store.tag_names_of(db, [secret_id]).get(secret_id, ())
        current = decrypt_row(vault, data_key, row, tags)
        target = _version(vault, data_key, target_row)
        if current.type == "sealed" and target.type != "sealed":
            raise InvalidRequest(secrets.SEALED)
        for taken in secret_store.live_positions(db, env_id, [target_row["key_digest"]]):
            if taken["id"] != secret_id and taken["path"] == target.path:
                raise Duplicate(secrets.DUPLICATE)
        if current.deleted_at is not None:
            history_store.undelete_secret(db, secret_id)
            current = dataclasses.replace(current, deleted_at=None)
        writer = Writer(services, principal, env_row, data_key)
        restored = writer.update(current, secrets.SecretChange(
            id=secret_id, key=target.key, value=target.value, comment=target.comment,
            path=target.path, tags=target.tags, type=target.type,
            key_digest=target_row["key_digest"],
        ), secrets.tag_names(target.tags), restored_from=version)
        writer.finish("restore", [restored], meta)
    return restored


# -- responses -------------------------------------------------------------------------------


def actor_body(actor: Actor | None) -> dict | None:
    if actor is None:
        return None
    return {"type": actor.type, "id": actor.id, "name": actor.name}


def version_body(version: SecretVersion) -> dict:
    """The history object of one version."""
    return {
        "version": version.version,
        "event": version.event,
        "key": version.key,
        "value": version.value,
        "comment": version.comment,
        "tags": list(version.tags),
        "path": version.path,
        "type": version.type,
        "restoredFrom": version.restored_from,
        "actor": actor_body(version.actor),
        "createdAt": render_time(version.created_at),
    }


def deleted_body(deleted: DeletedSecret) -> dict:
    return {
        "id": deleted.id,
        "key": deleted.key,
        "path": deleted.path,
        "type": deleted.type,
        "version": deleted.version,
        "deletedAt": render_time(deleted.deleted_at),
        "deletedBy": actor_body(deleted.deleted_by),
    }


# -- shared steps ----------------------------------------------------------------------------


def _authorise(services, principal, env_row, method):
    """The environment requirement and the role's permission, then access to the
    environment (None, a bulk job's local operator, may do anything)."""
    if principal is None:
        return
    secrets.require_permission(principal, env_row, method)
    services.auth.check_environment_access(principal, env_row)


def _secret_row(db, env_row, secret_id):
    row = secret_store.secrets_by_id(db, env_row["id"], [secret_id], live_only=False).get(
        secret_id)
    if row is None:
        raise DoesNotExist(SECRET_NOT_FOUND)
    return row


def _version(vault, data_key, row) -> SecretVersion:
    version_id = row["id"]
    return SecretVersion(
        secret_id=row["secret_id"],
        version=row["version"],
        event=EVENTS[row["event"]],
        key=vault.decrypt(data_key, "secret_versions", version_id, "key", row["key_enc"]),
        value=vault.decrypt(data_key, "secret_versions", version_id, "value", row["value_enc"]),
        comment=vault.decrypt(data_key, "secret_versions", version_id, "comment",
                              row["comment_enc"]),
        tags=tuple(json.loads(row["tags"])),
        path=row["path"],
        type=row["type"],
        actor=_actor(row) if "actor_name" in row.keys() else None,
        created_at=row["created_at"],
        restored_from=row["restored_from"],
    )


def _actor(row) -> Actor | None:
    actor_type = row["actor_type"]
    if actor_type is None:
        return None
    name = row["actor_id"] if actor_type == "operator" else row["actor_name"]
    return Actor(type=actor_type, id=row["actor_id"], name=name)


def _record_read(services, principal, env_row, action, secret_ids, meta):
    services.read_log.add(audit.event(
        principal, action, "secret", app_id=env_row["app_id"], environment_id=env_row["id"],
        details=audit.read_details(secret_ids), meta=meta,
    ))
