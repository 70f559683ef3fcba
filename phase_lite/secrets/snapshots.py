"""Reading: one decrypted snapshot per environment version, and the caches of reads."""

import threading
from collections import OrderedDict

import orjson

from ..caches import kept_bytes
from ..store import apps as app_store
from ..store import secrets as secret_store
from .model import PersonalOverride, Secret, require_permission, secret_body

CACHE_ENVIRONMENTS = 256


# -- reading: a decrypted snapshot per environment version -----------------------------------


class Snapshot:
    """An environment's live secrets at one version, decrypted, with lookup indexes.

    ``wire`` maps a secret id to the ``ph:v1`` ciphertexts the clients are served,
    (version, key, value, comment), filled by the client protocol as it serves them.
    """

    __slots__ = ("version", "secrets", "by_digest", "by_position", "wire", "_encoded")

    def __init__(self, version, secrets, wire=None):
        self.version = version
        self.wire = dict(wire or ())
        self.secrets = tuple(secrets)
        self.by_digest = {}
        self.by_position = {}
        for secret in self.secrets:
            self.by_digest.setdefault(secret.key_digest, []).append(secret)
            self.by_position.setdefault((secret.path, secret.key_digest), secret)
        self._encoded = {}

    def encoded(self, secret) -> bytes:
        """The secret's response object, JSON-encoded, without override and with its raw
        value (kept: a listing is then mostly a join of these)."""
        found = self._encoded.get(secret.id)
        if found is None:
            found = self._encoded[secret.id] = kept_bytes(orjson.dumps(secret_body(secret)))
        return found


class SnapshotCache:
    """The most recently used environment snapshots, in memory only."""

    def __init__(self, size=CACHE_ENVIRONMENTS):
        self.size = size
        self._items = OrderedDict()
        self._lock = threading.Lock()

    def get(self, env_id, version):
        """The snapshot of ``env_id`` at ``version`` or later, or None."""
        with self._lock:
            found = self._items.get(env_id)
            if found is None or found.version < version:
                return None
            self._items.move_to_end(env_id)
            return found

    def put(self, env_id, snapshot):
        with self._lock:
            current = self._items.get(env_id)
            if current is not None and current.version > snapshot.version:
                return
            self._items[env_id] = snapshot
            self._items.move_to_end(env_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self):
        with self._lock:
            self._items.clear()

    def advance(self, env_id, from_version, to_version, written):
        """Apply a committed write (the secrets' new states) to a cached snapshot that was
        exactly ``from_version``."""
        with self._lock:
            current = self._items.get(env_id)
        if current is None or current.version != from_version:
            return
        gone = {secret.id for secret in written}
        kept = [secret for secret in current.secrets if secret.id not in gone]
        kept.extend(secret for secret in _latest(written) if secret.deleted_at is None)
        kept.sort(key=lambda secret: secret.order)
        self.put(env_id, Snapshot(to_version, kept, current.wire))


def environment_snapshot(services, env_row) -> Snapshot:
    """The environment's live secrets at ``env_row``'s version or later."""
    cache = services.snapshots
    env_id = env_row["id"]
    found = cache.get(env_id, env_row["version"])
    if found is not None:
        return found
    db = services.db
    before = app_store.environment_versions(db, [env_id]).get(env_id)
    rows = secret_store.live_secrets(db, env_id)
    tags = {}
    for secret_id, name in secret_store.live_secret_tags(db, env_id):
        tags.setdefault(secret_id, []).append(name)
    after = app_store.environment_versions(db, [env_id]).get(env_id)
    data_key = services.vault.data_key(env_row["app_id"]) if rows else None
    snapshot = Snapshot(after or 0, [
        decrypt_row(services.vault, data_key, row, tags.get(row["id"], ())) for row in rows
    ])
    if before == after and after is not None:
        # No write committed while reading: the rows are exactly that version.
        cache.put(env_id, snapshot)
    return snapshot


def list_secrets(services, principal, env_row, *, key_digest=None, path=None,
                 tags=None) -> list[Secret]:
    """The environment's live secrets, filtered: keyDigest (every path unless ``path``),
    normalised ``path`` (exact, not recursive), ``tags`` (any of these names; each secret
    once). The caller's role must allow reading them."""
    require_permission(principal, env_row, "GET")
    return select(environment_snapshot(services, env_row), key_digest, path, tags)


def select(snapshot, key_digest, path, tags):
    if key_digest is not None:
        selected = snapshot.by_digest.get(key_digest, ())
    else:
        selected = snapshot.secrets
    if path is not None:
        selected = [secret for secret in selected if secret.path == path]
    if tags is not None:
        wanted = set(tags)
        selected = [secret for secret in selected if not wanted.isdisjoint(secret.tags)]
    return list(selected)


def personal_overrides(services, principal, env_row, secret_ids=None) -> dict:
    """{secret id: PersonalOverride} of the caller (personal access tokens only)."""
    if principal is None or not principal.is_user:
        return {}
    db = services.db
    if secret_ids is None:
        rows = secret_store.environment_personal_secrets(db, principal.account_id, env_row["id"])
    else:
        rows = secret_store.personal_secrets(db, principal.account_id, secret_ids)
    if not rows:
        return {}
    data_key = services.vault.data_key(env_row["app_id"])
    return {
        secret_id: PersonalOverride(
            id=row["id"],
            value=services.vault.decrypt(data_key, "personal_secrets", row["id"], "value",
                                         row["value_enc"]),
            is_active=bool(row["is_active"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
        for secret_id, row in rows.items()
    }


def decrypt_row(vault, data_key, row, tags) -> Secret:
    secret_id = row["id"]
    return Secret(
        id=secret_id,
        key=vault.decrypt(data_key, "secrets", secret_id, "key", row["key_enc"]),
        value=vault.decrypt(data_key, "secrets", secret_id, "value", row["value_enc"]),
        comment=vault.decrypt(data_key, "secrets", secret_id, "comment", row["comment_enc"]),
        tags=tuple(tags),
        type=row["type"],
        path=row["path"],
        key_digest=row["key_digest"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        environment_id=row["environment_id"],
        folder_id=row["folder_id"],
        deleted_at=row["deleted_at"],
        order=(row["updated_at"], row["row_order"]),
    )


def _latest(written):
    """The last state of each secret in a list of written states, in write order."""
    last = {}
    for secret in written:
        last.pop(secret.id, None)
        last[secret.id] = secret
    return list(last.values())
