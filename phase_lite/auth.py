"""Who is calling and what they may touch: bearer parsing, token lookup, scope, permissions.

Follows Phase's authentication class: ``Authorization: Bearer <Type> <token>`` split on single
spaces; the token is looked up by its SHA-256 (only hashes are stored) and compared in constant
time; the environment comes from ``secret_id``, the ``Environment`` header or ``app_id`` +
``env``, always looked up inside the caller's organisation so a foreign id looks like a missing
one. No Flask here: callers pass plain dicts of headers and query arguments.
"""

import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field

from . import phase_crypto
from .caches import GenerationCache
from .errors import AuthenticationFailed, DoesNotExist, PermissionDenied
from .store import NotFound, StoreError, now
from .store import accounts as account_store
from .store import apps as app_store

log = logging.getLogger(__name__)

TOKEN_TYPES = {"User": "user", "ServiceAccount": "service", "Service": "legacy"}
NO_CREDENTIALS = "Authentication credentials were not provided."
INVALID_TOKEN = "Invalid token"
TOKEN_GONE = "Token expired or deleted"
LAST_USED_GRANULARITY = 60.0  # seconds between last_used_at writes for one token
PRINCIPAL_CACHE_SIZE = 1024    # tokens remembered per database generation
SCOPE_CACHE_SIZE = 4096        # (token, environment named) pairs remembered per generation


@dataclass(frozen=True)
class Principal:
    token_id: str
    token_name: str
    kind: str                  # "user", "service" (service account) or "operator" (local)
    account_id: str
    organisation_id: str
    role_id: str
    role_name: str
    permissions: dict = field(repr=False)      # organisation-level map
    app_permissions: dict = field(repr=False)  # app-level map
    global_access: bool
    display_name: str          # email or service-account name
    public_key: str = field(repr=False)
    wrapped_key_share: str = field(repr=False)

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    @property
    def sees_everything(self) -> bool:
        """An Owner or Admin user, or the local operator: every app and environment is theirs
        (a service account's role never gives it that, as on Phase)."""
        return self.global_access and self.kind != "service"

    def account_filter(self) -> dict:
        """Keyword arguments that name this account in the access store functions."""
        if self.is_user:
            return {"user_id": self.account_id}
        return {"service_account_id": self.account_id}

    def may(self, resource: str, action: str, *, app_level: bool = False) -> bool:
        perms = self.app_permissions if app_level else self.permissions
        return action in perms.get(resource, ())


def local_operator(org, owner_role, name: str) -> Principal:
    """The person running the ``phase-lite`` admin command on the server: an Owner without a
    token, named in audit events by ``name`` (their login)."""
    perms = json.loads(owner_role["permissions"])
    return Principal(
        token_id=None, token_name="", kind="operator", account_id=name,
        organisation_id=org["id"], role_id=owner_role["id"], role_name=owner_role["name"],
        permissions=perms.get("permissions", {}), app_permissions=perms.get("appPermissions", {}),
        global_access=True, display_name=name, public_key="", wrapped_key_share="",
    )


@dataclass(frozen=True)
class Scope:
    """What a request is about: an environment, an app, or just the organisation."""
    app: object = None          # store row
    environment: object = None  # store row (ENV_COLUMNS)


class Authenticator:
    """Authenticate tokens and resolve scopes, remembering both for one database generation.

    A cached token is still checked against the clock on every request; anything that could
    change the answer (a revocation, a grant, a role, from this process or the admin command)
    is a commit, which moves the generation and empties the caches. Recording a token's last
    use is a bookkeeping commit: it leaves them (and every other read cache) as they are.
    """

    def __init__(self, db):
        self.db = db
        self._touched = {}
        self._lock = threading.Lock()
        # token hash: (Principal, expiry)
        self._principals = GenerationCache(PRINCIPAL_CACHE_SIZE, name="principals")
        self._scopes = GenerationCache(SCOPE_CACHE_SIZE, name="scopes")
        self.caches = (self._principals, self._scopes)  # for the metrics

    def authenticate(self, authorization: str | None, generation: int | None = None) -> Principal:
        """The caller a bearer header names, or AuthenticationFailed/DoesNotExist.

        ``generation`` is ``db.generation()`` taken at the start of the request (taken here
        when None).
        """
        if not authorization:
            raise AuthenticationFailed(NO_CREDENTIALS)
        parts = authorization.split(" ")
        if len(parts) < 3 or parts[0].lower() != "bearer" or not parts[1] or not parts[2]:
            raise AuthenticationFailed(INVALID_TOKEN)
        kind = TOKEN_TYPES.get(parts[1])
        if kind is None:
            raise AuthenticationFailed(INVALID_TOKEN)
        token_hash = phase_crypto.hash_bearer(parts[2])
        if generation is None:
            generation = self.db.generation()
        cached = self._principals.get(generation, token_hash)
        if cached is None:
            cached = self._load_principal(kind, token_hash)
            self._principals.put(generation, token_hash, cached)
        principal, expires_at = cached
        if principal.kind != kind or (expires_at is not None and expires_at <= now()):
            raise AuthenticationFailed(TOKEN_GONE)
        self._touch(principal.token_id)
        return principal

    def _load_principal(self, kind, token_hash):
        """(Principal, expires_at) of a live token of a live account, else raise."""
        row = account_store.find_token_by_hash(self.db, token_hash)
        if (
            row is None
            or row["kind"] != kind
            or not hmac.compare_digest(row["token_hash"], token_hash)
            or row["revoked_at"] is not None
            or (row["expires_at"] is not None and row["expires_at"] <= now())
        ):
            raise AuthenticationFailed(TOKEN_GONE)
        if row["account_deleted_at"] is not None:
            if kind == "user":
                raise DoesNotExist("User not found")
            raise AuthenticationFailed(TOKEN_GONE)
        perms = json.loads(row["role_permissions"])
        return Principal(
            token_id=row["id"],
            token_name=row["name"],
            kind=kind,
            account_id=row["user_id"] or row["service_account_id"],
            organisation_id=row["organisation_id"],
            role_id=row["role_id"],
            role_name=row["role_name"],
            permissions=perms.get("permissions", {}),
            app_permissions=perms.get("appPermissions", {}),
            global_access=bool(row["global_access"]),
            display_name=row["email"] or row["service_account_name"],
            public_key=row["public_key"],
            wrapped_key_share=row["wrapped_key_share"],
        ), row["expires_at"]

    def _touch(self, token_id):
        """Record the token's last use, at most once a minute per token (a write costs a sync).

        Best effort: a database that cannot be written just now never fails the request.
        """
        moment = time.monotonic()
        with self._lock:
            last = self._touched.get(token_id)
            if last is not None and moment - last < LAST_USED_GRANULARITY:
                return
            self._touched[token_id] = moment
        try:
            with self.db.transaction(bookkeeping=True):
                account_store.touch_token(self.db, token_id, now())
        except StoreError:
            with self._lock:
                self._touched.pop(token_id, None)  # try again on the next request
            log.warning("could not record a token's last use: the database refused the write")

    # -- scope -----------------------------------------------------------------------------

    def resolve_scope(self, principal: Principal, args: dict, headers: dict,
                      generation: int | None = None) -> Scope:
        """Find the environment or app a request names, as Phase's auth class does.

        ``args`` holds the query parameters with names already normalised to snake_case;
        ``headers`` is case-insensitive (werkzeug Headers or a dict with Title-Case keys).
        A scope found (access granted) is remembered per token for the ``generation``
        (``db.generation()``, taken here when None); refusals are worked out every time.
        """
        secret_id = headers.get("Secret-Id") or args.get("secret_id")
        env_header = headers.get("Environment")
        app_id = args.get("app_id")
        env_name = args.get("env")
        if generation is None:
            generation = self.db.generation()
        slot = (principal.token_id, secret_id, env_header, app_id, env_name)
        found = self._scopes.get(generation, slot)
        if found is None:
            found = self._find_scope(principal, secret_id, env_header, app_id, env_name)
            self._scopes.put(generation, slot, found)
        return found

    def _find_scope(self, principal, secret_id, env_header, app_id, env_name) -> Scope:
        org_id = principal.organisation_id
        if secret_id:
            env = app_store.environment_of_secret(self.db, org_id, secret_id)
            if env is None:
                raise DoesNotExist("Secret not found")
            return self._environment_scope(principal, env)
        if env_header:
            try:
                env = app_store.get_environment(self.db, org_id, env_header)
            except NotFound:
                raise AuthenticationFailed("Environment not found") from None
            return self._environment_scope(principal, env)
        if app_id:
            try:
                app = app_store.get_app(self.db, org_id, app_id)
            except NotFound:
                raise DoesNotExist(f"App with ID {app_id} not found") from None
            if env_name:
                env = app_store.find_environment(self.db, app["id"], env_name)
                if env is None:
                    raise DoesNotExist(f"Environment '{env_name}' not found in App {app_id}")
                return self._environment_scope(principal, env, app)
            self.check_app_access(principal, app)
            return Scope(app=app)
        return Scope()

    def _environment_scope(self, principal, env, app=None):
        self.check_environment_access(principal, env)
        if app is None:
            app = app_store.get_app(self.db, principal.organisation_id, env["app_id"])
        return Scope(app=app, environment=env)

    def can_access_environment(self, principal: Principal, env_id: str) -> bool:
        if principal.sees_everything:
            return True
        return env_id in self.accessible_environment_ids(principal)

    def accessible_environment_ids(self, principal: Principal) -> set:
        return account_store.granted_environment_ids(self.db, **principal.account_filter())

    def check_environment_access(self, principal: Principal, env):
        if not self.can_access_environment(principal, env["id"]):
            _refuse_access(principal, "environment")

    def can_access_app(self, principal: Principal, app_id: str) -> bool:
        if principal.sees_everything:
            return True
        env_ids = {env["id"] for env in app_store.list_environments(self.db, app_id)}
        return bool(env_ids & self.accessible_environment_ids(principal))

    def check_app_access(self, principal: Principal, app):
        if not self.can_access_app(principal, app["id"]):
            _refuse_access(principal, "app")


def _refuse_access(principal: Principal, what: str):
    """Phase's refusal of an app or environment the caller does not hold: 403 for a user,
    401 for a service account."""
    if principal.is_user:
        raise PermissionDenied(f"User cannot access this {what}")
    raise AuthenticationFailed(f"Service account cannot access this {what}")
