"""The domain rules for secrets: validation with Phase's messages, writes, versions, audit.

Interface for other callers (the REST API, the client protocol, the console)
-----------------------------------------------------------------------------
Every function takes ``services`` (``app.Services``), the caller (``auth.Principal``; None
means the local operator, as in a bulk import), the environment row that
``Authenticator.resolve_scope`` returned (it carries ``version``) and, for writes, ``meta``
(``audit.RequestMeta``). No Flask.
Errors are ``errors.PhaseError`` subclasses carrying Phase's exact messages.

- ``list_secrets(services, env_row, *, key_digest=None, path=None, tags=None)``
  -> ``list[Secret]``: the live secrets, decrypted, values *not* reference-resolved, in
  Phase's order. Served from an in-memory snapshot keyed by (environment id, version).
- ``create_secrets(services, principal, env_row, entries: list[NewSecret], meta)``
  -> ``list[Secret]`` in entry order.
- ``update_secrets(services, principal, env_row, changes: list[SecretChange], meta)``
  -> ``list[Secret]`` in change order.
- ``delete_secrets(services, principal, env_row, ids: list[str], meta)`` -> number deleted.
  The three writes take ``expected_version`` (an ``If-Match``, see ``conditional``): 412 and
  nothing written unless the environment is still at that version.
- ``personal_overrides(services, principal, env_row, secret_ids)``
  -> ``{secret_id: PersonalOverride}`` (always empty for service accounts).
- ``render_secrets(services, principal, env_row, secrets)`` -> the REST JSON objects
  (references resolved, the caller's override attached); ``read_secrets`` is the REST GET
  (its encoded body and ETag, remembered for a database generation).
- ``require_permission(principal, env_row, method)``: Phase's view checks (unsupported method,
  environment required, the role's ``Secrets`` permission), 403 each.
- ``parse_body``, ``parse_new_secrets``, ``parse_secret_changes``, ``parse_secret_ids``: the
  REST body rules and messages.

Each write is one transaction: everything is validated first (400/404/409 leave the data
exactly as it was), then rows, tags, folders, personal overrides, one ``secret_versions``
snapshot per secret, one environment bump and one audit event are written together.

``NewSecret.key`` is stored as given: the REST parser upper-cases it, a client-protocol caller
passes the key its client sent. ``key_digest`` None means "compute Phase's digest of
``key.upper()``"; pass the client's digest to store that instead. ``wire`` (``Wire``) carries
``ph:v1`` ciphertexts to store in the ``wire_*`` columns; without it those columns are set to
NULL whenever the field they mirror changes (to be filled lazily by the client protocol).
``Override.wire_value`` does the same for ``personal_secrets.wire_value``.
"""

import dataclasses
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson

from . import audit, conditional, contract, phase_crypto, references
from .caches import GenerationCache, PerDatabase, kept_bytes
from .errors import DoesNotExist, Duplicate, InvalidRequest, PermissionDenied
from .paths import ROOT, folder_chain, normalize_path
from .store import new_id, now, render_time
from .store import apps as app_store
from .store import secrets as secret_store

CACHE_ENVIRONMENTS = 256
BODY_CACHE_ENTRIES = 1024              # encoded GET answers kept per database generation
BODY_CACHE_BYTES = 64 * 1024 * 1024    # their total size
BODY_CACHE_MAX_BODY = 8 * 1024 * 1024  # a larger answer (~17,000 secrets) is rebuilt each time

ACTIONS = {"GET": "read", "POST": "create", "PUT": "update", "DELETE": "delete"}
ENVIRONMENT_REQUIRED = (
    "Environment context required. Supply `app_id` and `env` as query parameters."
)
DUPLICATE = "Duplicate secret found"
SEALED = "Sealed secrets cannot be unsealed. Delete and recreate the secret instead."
LEASE_TTL_INVALID = "lease_ttl must be a valid integer (seconds)"

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


# -- what callers pass and get back ----------------------------------------------------------


@dataclass(frozen=True)
class Wire:
    """``ph:v1`` ciphertexts a Phase client sent for a secret's fields (None: not sent)."""
    key: str | None = None
    value: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class Override:
    """A personal override to set (kept for personal access tokens only)."""
    value: str = field(repr=False)
    is_active: bool = True
    wire_value: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NewSecret:
    """One secret to create. ``tags`` are names as sent (cleaned and checked as Phase does)."""
    key: str = field(repr=False)
    value: str = field(repr=False)
    comment: str = field(default="", repr=False)
    path: str = ROOT
    tags: tuple | None = None
    type: str = "secret"
    override: Override | None = None
    key_digest: str | None = None
    wire: Wire | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SecretChange:
    """A partial update of the secret ``id``; None leaves a field as it is (``tags=()``
    clears the tags)."""
    id: str
    key: str | None = field(default=None, repr=False)
    value: str | None = field(default=None, repr=False)
    comment: str | None = field(default=None, repr=False)
    path: str | None = None
    tags: tuple | None = None
    type: str | None = None
    override: Override | None = None
    key_digest: str | None = None
    wire: Wire | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret as stored, decrypted (value not reference-resolved)."""
    id: str
    key: str = field(repr=False)
    value: str = field(repr=False)
    comment: str = field(repr=False)
    tags: tuple
    type: str
    path: str
    key_digest: str
    version: int
    created_at: str
    updated_at: str
    environment_id: str
    folder_id: str | None
    deleted_at: str | None = None
    order: tuple = (0, 0)  # (updated_at, rowid): Phase's observed listing order

    @property
    def identity(self):
        """What reference resolution calls this secret (Phase: environment, path, digest)."""
        return (self.environment_id, self.path, self.key_digest)


@dataclass(frozen=True, slots=True)
class PersonalOverride:
    """The caller's own override of a secret, decrypted."""
    id: str
    value: str = field(repr=False)
    is_active: bool
    created_at: str
    updated_at: str


# -- request bodies, checked with Phase's messages -------------------------------------------


def parse_body(raw: bytes) -> dict:
    """Decode a request body as Phase's secrets view does, whatever the Content-Type."""
    if not raw:
        raise InvalidRequest("Request body is required.")
    try:
        body = json.loads(raw)
        if _SURROGATE_ESCAPE.search(raw):
            # A lone surrogate escape decodes but can never be stored as UTF-8 text.
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):
        raise InvalidRequest("Request body must be valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    return body


def parse_new_secrets(body: dict) -> list[NewSecret]:
    """The entries of a POST body; every entry is checked before anything is written."""
    entries = _entry_list(body)
    parsed = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidRequest("Each entry in 'secrets' must be an object.")
        key, value = entry.get("key"), entry.get("value")
        if not isinstance(key, str) or not key.strip():
            raise InvalidRequest("Each secret requires a non-empty 'key'.")
        if not isinstance(value, str):
            raise InvalidRequest("Each secret requires a 'value' string.")
        secret_type = _checked_type(entry.get("type"))
        override = _checked_override(entry["override"]) if "override" in entry else None
        parsed.append(NewSecret(
            key=key.upper(),
            value=value,
            comment=_checked_comment(entry.get("comment")),
            path=normalize_path(entry.get("path")),
            tags=_tag_input(entry["tags"]) if "tags" in entry else None,
            type=secret_type or "secret",
            override=override,
        ))
    return parsed


def parse_secret_changes(body: dict) -> list[SecretChange]:
    """The entries of a PUT body (partial updates addressed by ``id``)."""
    entries = _entry_list(body)
    parsed = []
    for entry in entries:
        if not isinstance(entry, dict) or "id" not in entry:
            raise InvalidRequest("Secret ID not provided")
        secret_type = _checked_type(entry.get("type"))
        override = _checked_override(entry["override"]) if "override" in entry else None
        key = entry.get("key")
        if key is not None and not isinstance(key, str):
            raise InvalidRequest("Each secret requires a non-empty 'key'.")
        value = entry.get("value")
        if value is not None and not isinstance(value, str):
            raise InvalidRequest("Each secret requires a 'value' string.")
        path = entry.get("path")
        parsed.append(SecretChange(
            id=str(entry["id"]),
            key=None if key is None else key.upper(),
            value=value,
            comment=_checked_comment(entry["comment"]) if "comment" in entry else None,
            # Phase ignores a path it cannot normalise (the secret stays where it is).
            path=normalize_path(path) if isinstance(path, str) else None,
            tags=_tag_input(entry["tags"]) if "tags" in entry else None,
            type=secret_type,
            override=override,
        ))
    return parsed


def parse_secret_ids(body: dict) -> list[str]:
    """The ids of a DELETE body."""
    ids = body.get("secrets") or []
    if not isinstance(ids, list) or not ids:
        raise InvalidRequest("'secrets' must be a non-empty list of secret IDs.")
    return [str(secret_id) for secret_id in ids]


def check_dynamic_arguments(args: dict) -> None:
    """Validate the dynamic-secret parameters of a GET (no dynamic secret is ever returned)."""
    wants_dynamic = any(
        name in args and args[name].lower() != "false" for name in ("dynamic", "include_dynamic")
    )
    lease_ttl = args.get("lease_ttl")
    if wants_dynamic and lease_ttl:
        try:
            int(lease_ttl)
        except ValueError:
            raise InvalidRequest(LEASE_TTL_INVALID) from None


def _entry_list(body):
    entries = body.get("secrets")
    if not isinstance(entries, list) or not entries:
        raise InvalidRequest("'secrets' must be a non-empty list.")
    return entries


def _checked_type(secret_type):
    if secret_type is None:
        return None
    if not isinstance(secret_type, str) or secret_type not in contract.SECRET_TYPES:
        raise InvalidRequest(
            f"Invalid 'type': {secret_type!r}. Must be one of {sorted(contract.SECRET_TYPES)}."
        )
    return secret_type


def _checked_override(override) -> Override:
    if not isinstance(override, dict):
        raise InvalidRequest("'override' must be a JSON object.")
    if not isinstance(override.get("value"), str):
        raise InvalidRequest("'override.value' must be a string.")
    if not isinstance(override.get("isActive"), bool):
        raise InvalidRequest("'override.isActive' must be a boolean.")
    return Override(value=override["value"], is_active=override["isActive"])


def _checked_comment(comment):
    if comment is None:
        return ""
    if not isinstance(comment, str):
        raise InvalidRequest("'comment' must be a string.")
    return comment


def _tag_input(tags) -> tuple:
    # Phase iterates whatever it is given (a string gives its characters); null means none.
    if isinstance(tags, (list, str, dict)):
        return tuple(tags)
    return ()


def tag_names(tags) -> tuple:
    """Phase's tag clean-up: non-strings skipped, names trimmed, blanks dropped, duplicates
    once; a name over 64 characters is refused."""
    names = []
    for raw in tags or ():
        if not isinstance(raw, str):
            continue
        name = raw.strip()
        if not name:
            continue
        if len(name) > contract.TAG_NAME_MAX:
            raise InvalidRequest(
                f"Tag name exceeds {contract.TAG_NAME_MAX} characters: {name[:32]!r}\u2026"
            )
        if name not in names:
            names.append(name)
    return tuple(names)


# -- permissions -----------------------------------------------------------------------------


def require_permission(principal, env_row, method: str) -> str:
    """Apply Phase's secrets-view checks after authentication and scope; return the action."""
    action = ACTIONS.get(method)
    if action is None:
        raise PermissionDenied(f"Unsupported HTTP method: {method}")
    if env_row is None:
        raise PermissionDenied(ENVIRONMENT_REQUIRED)
    if not principal.may("Secrets", action, app_level=True):
        raise PermissionDenied(
            f"You don't have permission to {action} secrets in this environment."
        )
    return action


# -- reading: a decrypted snapshot per environment version -----------------------------------


class Snapshot:
    """An environment's live secrets at one version, decrypted, with lookup indexes."""

    __slots__ = ("version", "secrets", "by_digest", "by_position", "_encoded")

    def __init__(self, version, secrets):
        self.version = version
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
        self.put(env_id, Snapshot(to_version, kept))


_snapshot_caches = PerDatabase(lambda db: SnapshotCache())


def snapshot_cache(services) -> SnapshotCache:
    """The snapshot cache of a database (one per open ``Database``)."""
    return _snapshot_caches(services.db)


def environment_snapshot(services, env_row) -> Snapshot:
    """The environment's live secrets at ``env_row``'s version or later."""
    cache = snapshot_cache(services)
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
        _decrypt_row(services.vault, data_key, row, tags.get(row["id"], ())) for row in rows
    ])
    if before == after and after is not None:
        # No write committed while reading: the rows are exactly that version.
        cache.put(env_id, snapshot)
    return snapshot


def list_secrets(services, env_row, *, key_digest=None, path=None, tags=None) -> list[Secret]:
    """The environment's live secrets, filtered: keyDigest (every path unless ``path``),
    normalised ``path`` (exact, not recursive), ``tags`` (any of these names; each secret
    once)."""
    return _select(environment_snapshot(services, env_row), key_digest, path, tags)


def _select(snapshot, key_digest, path, tags):
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


def read_secrets(services, principal, env_row, *, key=None, path=None, tags=None,
                 meta=None, generation=None) -> tuple[bytes, str]:
    """Phase's GET: filter by ``key`` (any case), ``path``, comma-separated ``tags``; return the
    JSON body of the REST objects with its ETag (``conditional.entity_tag``) and record one
    read event naming them.

    The body is remembered for the database ``generation`` (``db.generation()`` taken before
    the request read anything; taken here when None), per token (overrides and the access
    that reference resolution checks are the caller's). Any commit moves the generation,
    including writes to environments that references point into.
    """
    if generation is None:
        generation = services.db.generation()
    cache = read_cache(services)
    slot = (env_row["id"], env_row["version"], principal.token_id, key, path, tags)
    found = cache.get(generation, slot)
    if found is None:
        snapshot = environment_snapshot(services, env_row)
        env_keys = services.vault.environment_keys(env_row)
        selected = _select(
            snapshot,
            env_keys.digest(key) if key else None,
            normalize_path(path) if path else None,
            tags.split(",") if tags else None,
        )
        body = encode_secrets(services, principal, env_row, selected, snapshot)
        found = (body, audit.read_details(secret.id for secret in selected),
                 conditional.entity_tag(env_row["id"], snapshot.version, env_keys.salt, body))
        cache.put(generation, slot, found)
    body, details, tag = found
    audit.record_read(services.db, principal, env_row, details, meta)
    return body, tag


_read_caches = PerDatabase(lambda db: new_body_cache())


def read_cache(services) -> GenerationCache:
    """Encoded GET answers of a database (one per open ``Database``)."""
    return _read_caches(services.db)


def new_body_cache() -> GenerationCache:
    """A cache of encoded answers, tuples of (body, read-event details, ...), bounded in count
    and bytes."""
    return GenerationCache(BODY_CACHE_ENTRIES, BODY_CACHE_BYTES, BODY_CACHE_MAX_BODY,
                           size=lambda entry: len(entry[0]) + 64 * len(entry[1]["secrets"]))


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


def _decrypt_row(vault, data_key, row, tags) -> Secret:
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


# -- responses -------------------------------------------------------------------------------


def secret_body(secret: Secret) -> dict:
    """The REST object of a secret, fields in Phase's order (raw value, no override)."""
    return {
        "id": secret.id,
        "key": secret.key,
        "value": secret.value,
        "comment": secret.comment,
        "tags": list(secret.tags),
        "override": None,
        "type": secret.type,
        "lifecycle": "static",
        "path": secret.path,
        "keyDigest": secret.key_digest,
        "version": secret.version,
        "createdAt": render_time(secret.created_at),
        "updatedAt": render_time(secret.updated_at),
        "environment": secret.environment_id,
        "folder": secret.folder_id,
    }


def render_secrets(services, principal, env_row, secrets, *, snapshot=None) -> list[dict]:
    """The REST objects of ``secrets``: references resolved as the caller may, the caller's
    own override attached (personal access tokens only)."""
    renderer = _Renderer(services, principal, env_row, secrets, snapshot)
    return [renderer.item(secret) for secret in secrets]


def encode_secrets(services, principal, env_row, secrets, snapshot) -> bytes:
    """``render_secrets`` of secrets from ``snapshot``, JSON-encoded: a secret with neither a
    reference nor an override is the snapshot's encoded object as it is."""
    renderer = _Renderer(services, principal, env_row, secrets, snapshot)
    return b"[" + b",".join([renderer.encoded(secret) for secret in secrets]) + b"]"


class _Renderer:
    """The REST objects of one answer: overrides looked up once, references resolved with
    lookups shared across the answer."""

    def __init__(self, services, principal, env_row, secrets, snapshot):
        self.services, self.principal, self.env_row = services, principal, env_row
        self.snapshot = snapshot
        self.overrides = personal_overrides(
            services, principal, env_row,
            None if snapshot is not None else [secret.id for secret in secrets])
        self._lookups = None

    def encoded(self, secret) -> bytes:
        if "${" not in secret.value and secret.id not in self.overrides:
            return self.snapshot.encoded(secret)
        return orjson.dumps(self.item(secret))

    def item(self, secret) -> dict:
        item = secret_body(secret)
        if "${" in secret.value:
            item["value"] = self._resolve(secret, secret.value)
        override = self.overrides.get(secret.id)
        if override is not None:
            value = override.value
            if "${" in value:
                value = self._resolve(secret, value)
            item["override"] = {
                "id": override.id,
                "value": value,
                "isActive": override.is_active,
                "createdAt": render_time(override.created_at),
                "updatedAt": render_time(override.updated_at),
            }
        return item

    def _resolve(self, secret, value):
        if self._lookups is None:
            self._lookups = ReferenceLookups(self.services, self.principal, self.env_row,
                                             self.snapshot)
        return references.resolve(value, self.env_row, secret.identity, self._lookups)


class ReferenceLookups:
    """Per-request lookups for reference resolution: each referenced environment's snapshot
    is loaded once, names and access are looked up once."""

    def __init__(self, services, principal, env_row, snapshot=None):
        self.services = services
        self.principal = principal
        self.home = env_row
        self._snapshots = {env_row["id"]: snapshot} if snapshot is not None else {}
        self._salts = {}
        self._environments = {}
        self._apps = {}
        self._readable = {}
        self._organisation_id = principal.organisation_id if principal is not None else None

    def app_environment(self, env, app_name, env_name):
        if app_name not in self._apps:
            org_id = self._organisation_id or secret_store.organisation_of_environment(
                self.services.db, env["id"])
            found = app_store.find_apps_by_name(self.services.db, org_id, app_name)
            # Two apps of one name make the reference ambiguous: left verbatim, as on Phase.
            self._apps[app_name] = found[0]["id"] if len(found) == 1 else None
        app_id = self._apps[app_name]
        return None if app_id is None else self._environment(app_id, env_name)

    def sibling_environment(self, env, env_name):
        return self._environment(env["app_id"], env_name)

    def _environment(self, app_id, env_name):
        slot = (app_id, env_name)
        if slot not in self._environments:
            self._environments[slot] = app_store.find_environment(
                self.services.db, app_id, env_name)
        return self._environments[slot]

    def may_read(self, env):
        if self.principal is None:
            return True
        env_id = env["id"]
        if env_id not in self._readable:
            self._readable[env_id] = self.services.auth.can_access_environment(
                self.principal, env_id)
        return self._readable[env_id]

    def find(self, env, path, key_name):
        env_id = env["id"]
        snapshot = self._snapshots.get(env_id)
        if snapshot is None:
            if env_id == self.home["id"]:
                # The caller's row predates this request's own write: read at least the
                # version that write committed.
                current = app_store.environment_versions(self.services.db, [env_id])
                env = dict(env, version=current.get(env_id, env["version"]))
            snapshot = self._snapshots[env_id] = environment_snapshot(self.services, env)
        salt = self._salts.get(env_id)
        if salt is None:
            salt = self._salts[env_id] = self.services.vault.environment_keys(env).salt
        # Phase digests the name as written: references must spell keys in upper case.
        digest = phase_crypto.key_digest(key_name, salt)
        secret = snapshot.by_position.get((path, digest))
        if secret is None:
            return None
        return secret.identity, secret.value


# -- writes ----------------------------------------------------------------------------------


def create_secrets(services, principal, env_row, entries, meta=None, *,
                   expected_version=None) -> list[Secret]:
    """Create secrets in one transaction; return them in entry order.

    409 ``Duplicate secret found`` when an entry's (path, key) is taken by a live secret or by
    another entry of the batch; tags are checked after that, as Phase does. With
    ``expected_version`` (an ``If-Match``), 412 unless the environment is still at it.
    """
    db, vault = services.db, services.vault
    env_id = env_row["id"]
    env_keys = vault.environment_keys(env_row)
    entries = [dataclasses.replace(entry, path=normalize_path(entry.path)) for entry in entries]
    digests = [entry.key_digest or env_keys.digest(entry.key) for entry in entries]
    positions = [(entry.path, digest) for entry, digest in zip(entries, digests)]
    if len(set(positions)) != len(positions):
        raise Duplicate(DUPLICATE)
    with db.transaction():
        _require_version(db, env_id, expected_version)
        taken = {(row["path"], row["key_digest"])
                 for row in secret_store.live_positions(db, env_id, digests)}
        if taken.intersection(positions):
            raise Duplicate(DUPLICATE)
        names = [tag_names(entry.tags) for entry in entries]
        writer = _Writer(services, principal, env_row)
        created = [
            writer.insert(entry, digest, entry_tags)
            for entry, digest, entry_tags in zip(entries, digests, names)
        ]
        writer.finish("create", created, meta)
    writer.publish(created)
    return created


def update_secrets(services, principal, env_row, changes, meta=None, *,
                   expected_version=None) -> list[Secret]:
    """Apply partial updates in one transaction; return the secrets in change order.

    Addressed by id within the environment (404 ``Secret not found: <id>``); ``version`` goes up
    by one per change; a sealed secret keeps its value and type; the duplicate check uses the
    secret's own path when the change gives none, and looks at the batch as a whole.
    ``expected_version`` as for ``create_secrets``.
    """
    db, vault = services.db, services.vault
    env_id = env_row["id"]
    env_keys = vault.environment_keys(env_row)
    changes = [change if change.path is None
               else dataclasses.replace(change, path=normalize_path(change.path))
               for change in changes]
    with db.transaction():
        _require_version(db, env_id, expected_version)
        rows = secret_store.secrets_by_id(db, env_id, [c.id for c in changes], live_only=False)
        data_key = vault.data_key(env_row["app_id"]) if rows else None
        tags = secret_store.tag_names_of(db, rows)
        states = {
            secret_id: _decrypt_row(vault, data_key, row, tags.get(secret_id, ()))
            for secret_id, row in rows.items()
        }
        targets = _planned_updates(changes, states, env_keys)
        _check_update_duplicates(db, env_id, changes, states, targets)
        writer = _Writer(services, principal, env_row, data_key)
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
    writer.publish(updated)
    return updated


def delete_secrets(services, principal, env_row, ids, meta=None, *,
                   expected_version=None) -> int:
    """Soft-delete secrets of the environment in one transaction; return how many.

    Any id that is not a live secret of this environment gives 404 and deletes nothing.
    ``expected_version`` as for ``create_secrets``.
    """
    db, vault = services.db, services.vault
    env_id = env_row["id"]
    with db.transaction():
        _require_version(db, env_id, expected_version)
        rows = secret_store.secrets_by_id(db, env_id, ids)
        missing = [secret_id for secret_id in ids if secret_id not in rows]
        if missing:
            raise DoesNotExist(
                f"Secret(s) not found in this environment: {', '.join(missing)}"
            )
        data_key = vault.data_key(env_row["app_id"])
        tags = secret_store.tag_names_of(db, rows)
        writer = _Writer(services, principal, env_row, data_key)
        deleted = [
            writer.delete(_decrypt_row(vault, data_key, rows[secret_id], tags.get(secret_id, ())))
            for secret_id in dict.fromkeys(ids)
        ]
        writer.finish("delete", deleted, meta)
    writer.publish(deleted)
    return len(deleted)


def _require_version(db, env_id, expected_version):
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


class _Writer:
    """The writes of one request, inside its transaction: rows, folders, tags, overrides,
    version snapshots; then one environment bump and one audit event."""

    def __init__(self, services, principal, env_row, data_key=None):
        self.services, self.db, self.vault = services, services.db, services.vault
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

    def insert(self, entry: NewSecret, digest: str, names: tuple) -> Secret:
        secret_id, stamp = new_id(), now()
        folder_id = self._folder(entry.path)
        wire = entry.wire or Wire()
        rowid = secret_store.insert_secret(self.db, {
            "id": secret_id,
            "environment_id": self.env_id,
            "folder_id": folder_id,
            "path": entry.path,
            "key_digest": digest,
            "key_enc": self._encrypt("secrets", secret_id, "key", entry.key),
            "value_enc": self._encrypt("secrets", secret_id, "value", entry.value),
            "comment_enc": self._encrypt("secrets", secret_id, "comment", entry.comment),
            "wire_key": wire.key,
            "wire_value": wire.value,
            "wire_comment": wire.comment,
            "type": entry.type,
            "version": 1,
            "created_at": stamp,
            "updated_at": stamp,
        })
        if names:
            names = self._ordered(names)
            secret_store.replace_secret_tags(self.db, secret_id, self._ids(names))
        if entry.override is not None:
            # Phase validates isActive on create but always stores an active override.
            self._set_override(secret_id, entry.override, True, stamp)
        secret = Secret(
            id=secret_id, key=entry.key, value=entry.value, comment=entry.comment, tags=names,
            type=entry.type, path=entry.path, key_digest=digest, version=1, created_at=stamp,
            updated_at=stamp, environment_id=self.env_id, folder_id=folder_id,
            order=(stamp, rowid),
        )
        self._keep_version(secret, "create")
        return secret

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
            fields.update(key_digest=digest, wire_key=wire.key,
                          key_enc=self._encrypt("secrets", current.id, "key", key))
        if change.value is not None and current.type != "sealed":
            value = change.value
            fields.update(wire_value=wire.value,
                          value_enc=self._encrypt("secrets", current.id, "value", value))
        if change.comment is not None:
            comment = change.comment
            fields.update(wire_comment=wire.comment,
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
        secret_store.insert_versions(self.db, self._versions)
        app_store.bump_environment(self.db, self.env_id)
        audit.record_secret_write(
            self.db, self.principal, action, self.env_row,
            [(secret.id, secret.version) for secret in secrets], meta,
        )

    def publish(self, written):
        """After commit: move the cached snapshot on to the new version."""
        snapshot_cache(self.services).advance(
            self.env_id, self.version_before, self.version_before + 1, written
        )

    def _encrypt(self, table, row_id, field_name, text):
        return self.vault.encrypt(self.data_key, table, row_id, field_name, text)

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
        if existing is not None:
            secret_store.update_personal_secret(
                self.db, personal_id, value_enc, override.wire_value, is_active, stamp)
            return
        secret_store.insert_personal_secret(self.db, {
            "id": personal_id, "secret_id": secret_id, "user_id": user_id,
            "value_enc": value_enc, "wire_value": override.wire_value,
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
