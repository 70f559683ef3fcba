"""Secrets as the REST API renders them: references resolved, the caller's override
attached."""

import orjson

from .. import audit, conditional, phase_crypto, references
from ..caches import GenerationCache
from ..paths import normalize_path
from ..store import render_time
from ..store import apps as app_store
from ..store import secrets as secret_store
from .model import require_permission, secret_body
from .snapshots import environment_snapshot, personal_overrides, select

BODY_CACHE_ENTRIES = 1024              # encoded GET answers kept per database generation
BODY_CACHE_BYTES = 64 * 1024 * 1024    # their total size
BODY_CACHE_MAX_BODY = 8 * 1024 * 1024  # a larger answer (~17,000 secrets) is rebuilt each time


# -- responses -------------------------------------------------------------------------------


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
    require_permission(principal, env_row, "GET")
    if generation is None:
        generation = services.db.generation()
    cache = services.answers
    slot = (env_row["id"], env_row["version"], principal.token_id, key, path, tags)
    found = cache.get(generation, slot)
    if found is None:
        snapshot = environment_snapshot(services, env_row)
        env_keys = services.vault.environment_keys(env_row)
        selected = select(
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
    audit.record_read(services.read_log, principal, env_row, details, meta)
    return body, tag


def new_body_cache() -> GenerationCache:
    """A cache of encoded answers, tuples of (body, read-event details, ...), bounded in count
    and bytes."""
    return GenerationCache(BODY_CACHE_ENTRIES, BODY_CACHE_BYTES, BODY_CACHE_MAX_BODY,
                           size=lambda entry: len(entry[0]) + 64 * len(entry[1]["secrets"]),
                           name="answers")


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


REFERENCE_TOKEN = references.REFERENCE_TOKEN


def unresolved_references(services, principal, env_row, value, key, path) -> list[str]:
    """The ``${...}`` references of ``value`` (for the secret ``key`` at ``path``) that would
    stay as written for the caller: a missing key, environment or app, one the caller may not
    read, a cycle. In order, each once; what a form warns about before saving."""
    require_permission(principal, env_row, "GET")
    if "${" not in value:
        return []
    digest = services.vault.environment_keys(env_row).digest(key)
    resolver = references.Resolver(ReferenceLookups(services, principal, env_row))
    resolved = resolver.resolve(value, env_row,
                                (env_row["id"], normalize_path(path), digest))
    return [token for token in dict.fromkeys(REFERENCE_TOKEN.findall(value))
            if token in resolved]


class _Renderer:
    """The REST objects of one answer: overrides looked up once, references resolved with
    lookups shared across the answer."""

    def __init__(self, services, principal, env_row, secrets, snapshot):
        self.services, self.principal, self.env_row = services, principal, env_row
        self.snapshot = snapshot
        self.overrides = personal_overrides(
            services, principal, env_row,
            None if snapshot is not None else [secret.id for secret in secrets])
        self._resolver = None  # one per answer: shared lookups, memo and work bound

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
        if self._resolver is None:
            self._resolver = references.Resolver(ReferenceLookups(
                self.services, self.principal, self.env_row, self.snapshot))
        return self._resolver.resolve(value, self.env_row, secret.identity)


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
