"""Mirrors of Phase hosts: copy the apps a Phase token can read into this server, one-way.

A *source* is a Phase host (what a Phase client is given as PHASE_HOST) and a personal or
service-account token. A sync reads, through the client protocol the Phase CLI and SDKs speak
(``<host>/service/secrets/``, or ``<host>/secrets/`` on an API host such as Phase Cloud's), the
token's key share and environment keys, then each chosen environment's secrets as ``ph:v1``
ciphertexts, and opens them with the token's key as ``phase secrets export`` does. That one
path serves both kinds of Phase app, and it is the only one that gives a value as stored:
Phase's public REST API answers with secret references already resolved, which a mirror must
keep as written (they resolve here as at the source, cross-app ones when both apps are
mirrored).

Everything is read from the source before anything is written here; then each environment is
brought in step in one transaction (a reader sees the old copy or the new one): secrets the
source no longer has are deleted (kept in history), changed ones updated, new ones created;
unchanged ones are not touched (no new version, no cache churn). The source wins. A failed
sync changes nothing, keeps the last good copy and says why in one line (``last_error``, the
log, the audit event) without any secret in it.

Mirrored apps are read-only to every door (``apps.refuse_if_mirrored``); only the sync, as the
actor ``mirror`` (audit events name the source), writes them. The token is kept encrypted under
a data key of the source's own, wrapped by the master key (bound to ``mirror:<source id>``).
"""

import contextlib
import json
import logging
import re
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from . import __version__, accounts, apps, audit, keyring, phase_crypto
from . import secrets as secret_rules
from .errors import DoesNotExist, Duplicate, InvalidRequest, PhaseError
from .paths import normalize_path
from .secrets.writes import Writer
from .store import NotFound, StoreError, format_time, missing_as, new_id, now
from .store import accounts as account_store
from .store import apps as app_store
from .store import mirrors as mirror_store
from .store import secrets as secret_store

log = logging.getLogger("phase_lite.mirror")

TIMEOUT = 20  # seconds for one request to the source
MAX_ANSWER_BYTES = 64 * 1024 * 1024
MAX_BACKOFF = 3600  # seconds: the longest wait after failures
TICK = 5  # seconds between looks for a source that is due, while serving
MIRROR_META = audit.RequestMeta(ip_address=None, user_agent=f"phase-lite/{__version__} mirror",
                                channel=None)
_TOKEN = re.compile(r"pss_(service|user):v\d+(?::[0-9a-fA-F]{64}){4}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
WRONG_TOKEN = ("the token file does not hold a Phase personal access token or service account "
               "token (pss_user:... or pss_service:...)")


class MirrorError(PhaseError):
    """A source could not be read or copied; the message names the host, never a secret."""


# -- the source: Phase's client protocol, client side -----------------------------------------


@dataclass
class SourceSecret:
    key: str = field(repr=False)
    value: str = field(repr=False)
    comment: str = field(repr=False)
    tags: tuple
    path: str
    type: str
    override: tuple | None = field(default=None, repr=False)  # (value, active): the token's user's


@dataclass
class SourceEnvironment:
    id: str
    name: str
    env_type: str
    index: int
    public_key: str = field(repr=False)
    private_key: str = field(repr=False)
    secrets: list = field(default_factory=list)


@dataclass
class SourceApp:
    id: str
    name: str
    environments: list


def parse_token(text: str) -> tuple[str, str]:
    """(kind, token) of a token file's text; MirrorError for anything else."""
    token = (text or "").strip()
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise MirrorError(WRONG_TOKEN)
    return match.group(1), token


def clean_host(host: str) -> str:
    """The host as a base URL (scheme and authority, maybe a path), no trailing slash."""
    parts = urlsplit((host or "").strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment or parts.username or parts.password:
        raise MirrorError(f"--host: expected an http:// or https:// URL such as "
                          f"https://console.phase.dev, not {host!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class Source:
    """A Phase host read with one token."""

    def __init__(self, host: str, token: str, kind: str, api_base: str | None = None,
                 timeout: float = TIMEOUT):
        self.host = clean_host(host)
        self.token, self.kind = token, kind
        self.api_base = api_base
        self.timeout = timeout
        bearer = token.split(":")[2]
        self._headers = {"Authorization": f"Bearer {phase_crypto.bearer_type(kind)} {bearer}",
                         "Accept": "application/json",
                         "User-Agent": MIRROR_META.user_agent}

    def read(self, app_choices=(), env_choices=(), *, with_secrets=True, strict=True,
             known_env_ids=frozenset()) -> list[SourceApp]:
        """The chosen apps (names or ids; all when none) and environments (names, or source
        ids in ``known_env_ids``: those already copied, which a rename keeps; all when none)
        the token can read, with their secrets opened. ``strict``: a choice the source does not
        have is an error (when adding; a sync takes it as removed there)."""
        payload = self._token_keys()
        try:
            private = phase_crypto.recover_token_private_key(self.token,
                                                             payload["wrapped_key_share"])
        except phase_crypto.CryptoError:
            raise MirrorError(f"the token does not open the key share {self.host} sent "
                              "(a token of another host?)") from None
        public = self.token.split(":")[3]
        found = [self._app(entry, private, public) for entry in payload["apps"]]
        chosen = found
        if app_choices:
            chosen = []
            for choice in app_choices:
                matches = [app for app in found if app.id == choice
                           or app.name.lower() == choice.lower()]
                if not matches and strict:
                    raise MirrorError(f"the token cannot read an app {choice!r} at {self.host}")
                chosen.extend(app for app in matches if app not in chosen)
        wanted = {name.lower() for name in env_choices}
        for app in chosen:
            if wanted:
                app.environments = [env for env in app.environments
                                    if env.name.lower() in wanted or env.id in known_env_ids]
            if with_secrets:
                for env in app.environments:
                    env.secrets = self._secrets(app, env)
        if strict and wanted and not any(app.environments for app in chosen):
            raise MirrorError(f"the token cannot read an environment named "
                              f"{', '.join(sorted(env_choices))} at {self.host}")
        return chosen

    # -- requests -------------------------------------------------------------------------

    def _token_keys(self) -> dict:
        bases = [self.api_base] if self.api_base else [f"{self.host}/service", self.host]
        for base in bases:
            payload = self._get(base, "/secrets/tokens/", missing_ok=len(bases) > 1)
            if payload is not None:
                self.api_base = base
                break
        else:
            raise MirrorError(f"{self.host} has no Phase client API at /service/secrets/ or "
                              "/secrets/ (is it a Phase host?)")
        if not (isinstance(payload, dict) and isinstance(payload.get("wrapped_key_share"), str)
                and isinstance(payload.get("apps"), list)):
            raise self._malformed("/secrets/tokens/")
        return payload

    def _secrets(self, app, env) -> list[SourceSecret]:
        rows = self._get(self.api_base, "/secrets/", headers={"Environment": env.id})
        if not isinstance(rows, list):
            raise self._malformed("/secrets/")
        secrets = []
        try:
            for row in rows:
                comment = row.get("comment") or ""
                tags = row.get("tags") or []
                override = row.get("override") if self.kind == "user" else None
                if override is not None:
                    override = (self._open(env, override["value"]),
                                override.get("is_active", True) is not False)
                secrets.append(SourceSecret(
                    key=self._open(env, row["key"]),
                    value=self._open(env, row["value"]),
                    comment=self._open(env, comment) if comment else "",
                    tags=tuple(tag["name"] if isinstance(tag, dict) else str(tag)
                               for tag in tags),
                    path=normalize_path(row.get("path") or "/"),
                    type=row.get("type") or "secret",
                    override=override,
                ))
        except (KeyError, TypeError, AttributeError, InvalidRequest):
            raise self._malformed("/secrets/") from None
        return secrets

    def _app(self, entry, private, public) -> SourceApp:
        try:
            environments = []
            for env_key in entry["environment_keys"]:
                seed = phase_crypto.decrypt_asymmetric(env_key["wrapped_seed"], private, public)
                env_public, env_private = phase_crypto.env_keypair(seed)
                env = env_key["environment"]
                environments.append(SourceEnvironment(
                    id=str(env["id"]), name=str(env["name"]),
                    env_type=str(env.get("env_type") or "custom"),
                    index=int(env.get("index") or 0),
                    public_key=env_public, private_key=env_private))
            return SourceApp(str(entry["id"]), str(entry["name"]), environments)
        except phase_crypto.CryptoError:
            raise MirrorError(f"an environment key from {self.host} does not open with the "
                              "token's key") from None
        except (KeyError, TypeError, ValueError):
            raise self._malformed("/secrets/tokens/") from None

    def _open(self, env, ciphertext) -> str:
        try:
            return phase_crypto.decrypt_asymmetric(ciphertext, env.private_key, env.public_key)
        except phase_crypto.CryptoError:
            raise MirrorError(f"a secret of environment {env.name} from {self.host} does not "
                              "open with its environment key") from None

    def _malformed(self, route):
        return MirrorError(f"{self.host} answered {route} with something that is not what a "
                           "Phase host sends (malformed JSON)")

    def _get(self, base, route, headers=None, missing_ok=False):
        request = urllib.request.Request(base + route, headers={**self._headers,
                                                                **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                body = answer.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()  # its answer's connection
            if exc.code == 404 and missing_ok:
                return None
            if exc.code in (401, 403):
                raise MirrorError(f"{self.host} refused the token ({exc.code}): is it valid, "
                                  "unexpired and allowed to read these apps?") from None
            raise MirrorError(f"{self.host} answered {route} with status {exc.code}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise MirrorError(f"TLS failure with {self.host}: "
                                  f"{reason.verify_message or 'certificate not trusted'}") \
                    from None
            if isinstance(reason, ssl.SSLError):
                raise MirrorError(f"TLS failure with {self.host}: "
                                  f"{reason.reason or reason.__class__.__name__}") from None
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise MirrorError(f"{self.host} did not answer in {self.timeout:g} s") from None
            text = getattr(reason, "strerror", None) or str(reason)
            raise MirrorError(f"cannot reach {self.host}: {text}") from None
        except (TimeoutError, socket.timeout):
            raise MirrorError(f"{self.host} did not answer in {self.timeout:g} s") from None
        except (OSError, ValueError) as exc:
            raise MirrorError(f"cannot reach {self.host}: {exc.__class__.__name__}") from None
        if len(body) > MAX_ANSWER_BYTES:
            raise MirrorError(f"{self.host} answered {route} with more than "
                              f"{MAX_ANSWER_BYTES // 1048576} MB")
        try:
            return json.loads(body)
        except ValueError:
            raise self._malformed(route) from None


# -- sources here ---------------------------------------------------------------------------


def mirror_actor(services, source):
    """Who writes a mirrored app: the actor ``mirror``, named by its source."""
    return replace(accounts.operator(services), kind="mirror", account_id=source["name"],
                   display_name=f"mirror {source['name']}")


def _source_key_id(source_id):
    return f"mirror:{source_id}"


def open_token(ring, source) -> str:
    """A source's token, opened with the master key (keyring.KeyringError when it does not
    open: another master key, or a damaged row). Backup verification opens it too."""
    data_key = ring.unwrap_data_key(source["wrapped_key"], _source_key_id(source["id"]))
    return keyring.decrypt_text(data_key, source["token_enc"],
                                keyring.field_aad("mirror_sources", source["id"], "token"))


def source_token(services, source) -> str:
    try:
        return open_token(services.vault.keyring, source)
    except keyring.KeyringError:
        raise MirrorError(f"the stored token of mirror {source['name']} does not open with "
                          "the master key") from None


def add_source(services, principal, *, host, token_text, app_choices=(), env_choices=(),
               name=None, local_name=None, overrides_user=None, meta=audit.CLI_META,
               timeout=TIMEOUT):
    """Register a source after checking that it answers and that its apps can be mirrored
    here; return its row. Nothing is stored when anything is wrong.

    The chosen apps are kept as their source ids (a rename there keeps them chosen). A personal
    token brings its user's personal overrides, kept here as the overrides of the local user
    ``overrides_user`` (an email or id), by default the organisation's Owner when it has one
    only: the source names the token's user by an id of its own, never by an email."""
    apps.require(principal, "Apps", "create", "apps")
    kind, token = parse_token(token_text)
    host = clean_host(host)
    name = name or urlsplit(host).hostname
    if not _NAME.fullmatch(name):
        raise InvalidRequest("--name: letters, digits, '.', '_' or '-', at most 64")
    if local_name is not None and len(app_choices) != 1:
        raise InvalidRequest("--as names the local copy of one app: give exactly one --app")
    overrides_user_id = _overrides_user(services, principal, kind, overrides_user)
    db = services.db
    try:
        mirror_store.get_source(db, principal.organisation_id, name)
    except NotFound:
        pass
    else:
        raise Duplicate(f"A mirror named '{name}' already exists.")
    source = Source(host, token, kind, timeout=timeout)
    found = source.read(app_choices, env_choices, with_secrets=False)
    if not found:
        raise MirrorError(f"the token can read no app at {host}")
    source_id = new_id()
    _check_local_names(services, principal, source_id, host, found, local_name)
    data_key = services.vault.keyring.new_data_key()
    row = {
        "id": source_id, "organisation_id": principal.organisation_id, "name": name,
        "host": host, "api_base": source.api_base,
        "wrapped_key": services.vault.keyring.wrap_data_key(data_key,
                                                            _source_key_id(source_id)),
        "token_enc": keyring.encrypt_text(data_key, token,
                                          keyring.field_aad("mirror_sources", source_id,
                                                            "token")),
        "token_kind": kind, "overrides_user_id": overrides_user_id,
        "apps": json.dumps([app.id for app in found] if app_choices else []),
        "environments": json.dumps(list(env_choices)), "local_name": local_name,
        "created_at": now(),
    }
    with db.transaction():
        mirror_store.insert_source(db, row)
        audit.record(db, principal, meta, "create", "mirror_source", source_id,
                     details={"name": name, "host": host, "apiBase": source.api_base,
                              "apps": list(app_choices), "environments": list(env_choices)})
    return mirror_store.source_by_id(db, source_id)


def _overrides_user(services, principal, kind, chosen):
    """The id of the local user a personal token's overrides are kept for, or None."""
    db = services.db
    if kind != "user":
        if chosen:
            raise InvalidRequest("--user: a service account token has no personal overrides")
        return None
    if chosen:
        return accounts.user_by_email(services, principal, chosen)["id"]
    owners = [user for user in account_store.list_users(db, principal.organisation_id)
              if user["role_name"] == "Owner"]
    if len(owners) != 1:
        raise InvalidRequest(f"this server has {len(owners)} Owners: name the local user whose "
                             "personal overrides the token's are with --user EMAIL")
    return owners[0]["id"]


def _check_local_names(services, principal, source_id, host, found, local_name):
    """Refuse a source app whose name a local app that is not its mirror already has. A copy
    of this source whose app the source no longer gives is no conflict: it is taken up again
    (an app deleted and made anew there)."""
    found_ids = {app.id for app in found}
    db = services.db
    for app in found:
        wanted = local_name or app.name
        for row in app_store.find_apps_by_name(db, principal.organisation_id, wanted):
            if row["mirror_source_id"] == source_id and (row["mirror_app_id"] == app.id
                                                         or row["mirror_app_id"] not in found_ids):
                continue
            copy = mirror_store.copy_of_source_app(db, source_id, app.id)
            if copy is not None:
                raise MirrorError(
                    f"{host} renamed {copy['name']} to {app.name}, and an app named "
                    f"{row['name']} exists on this server and is not its copy: rename or "
                    "delete that app here, then sync again")
            raise MirrorError(
                f"an app named {row['name']} exists on this server and is not the copy of "
                f"{app.name} at {host}: rename the app here, or mirror {app.name} alone "
                "with --as NAME to name its copy")


def find_source(services, principal, name):
    with missing_as(DoesNotExist(f"No mirror named '{name}'.")):
        return mirror_store.get_source(services.db, principal.organisation_id, name)


def mirror_of_app(services, principal, app_row):
    """What the console shows on a mirrored app (source, host, last sync, last error, next
    run), or None for an app of this server."""
    if not app_row["mirror_source_id"]:
        return None
    source = mirror_store.source_by_id(services.db, app_row["mirror_source_id"])
    if source is None or source["organisation_id"] != principal.organisation_id:
        return None
    removed = [row["name"] for row in mirror_store.mirrored_environments(services.db,
                                                                        app_row["id"])
               if row["mirror_removed_at"] is not None]
    return {"name": source["name"], "host": source["host"],
            "removed_at": app_row["mirror_removed_at"], "removed_environments": removed,
            "last_success_at": source["last_success_at"],
            "last_attempt_at": source["last_attempt_at"],
            "last_error": source["last_error"], "next_run_at": source["next_run_at"]}


def sync_app_source(services, principal, app_row, meta):
    """Sync the source of a mirrored app now (the console's "Sync now"): for those who may
    update apps; return the SyncResult, or raise MirrorError (recorded, logged)."""
    apps.require(principal, "Apps", "update", "apps")
    source = app_row["mirror_source_id"] and mirror_store.source_by_id(
        services.db, app_row["mirror_source_id"])
    if not source or source["organisation_id"] != principal.organisation_id:
        raise InvalidRequest("This app is not a mirror.")
    with _one_node(services):
        return sync_source(services, source, interval=services.config.mirror_interval,
                           meta=meta)


BUSY = "another node is syncing the mirrors now; try again in a moment"


@contextlib.contextmanager
def _one_node(services):
    """Sync on one node at a time (a PostgreSQL advisory lock; on SQLite, the write lock
    already serialises): two nodes copying one new app would make it twice."""
    with services.db.task_lock("mirror sync") as held:
        if not held:
            raise MirrorError(BUSY)
        yield


def list_sources(services, principal) -> list[dict]:
    """Every source with its apps, environments, counts and state (no token)."""
    db = services.db
    listed = []
    emails = {user["id"]: user["email"]
              for user in account_store.list_users(db, principal.organisation_id)}
    for source in mirror_store.list_sources(db, principal.organisation_id):
        mirrored = mirror_store.mirrored_apps(db, source["id"])
        listed.append({
            "name": source["name"], "host": source["host"], "apiBase": source["api_base"],
            "tokenKind": source["token_kind"],
            "overridesFor": emails.get(source["overrides_user_id"]),
            "apps": [_listed_app(db, app) for app in mirrored],
            "chosenApps": json.loads(source["apps"]),
            "chosenEnvironments": json.loads(source["environments"]),
            "counts": json.loads(source["counts"]),
            "lastAttemptAt": source["last_attempt_at"],
            "lastSuccessAt": source["last_success_at"],
            "lastError": source["last_error"], "failures": source["failures"],
            "nextRunAt": source["next_run_at"],
        })
    return listed


def _listed_app(db, app):
    envs = mirror_store.mirrored_environments(db, app["id"])
    return {"id": app["id"], "name": app["name"],
            "environments": [env["name"] for env in envs],
            "removedAtSource": app["mirror_removed_at"],
            "environmentsRemovedAtSource": [env["name"] for env in envs
                                            if env["mirror_removed_at"] is not None]}


def remove_source(services, principal, name, *, keep_data=False, meta=audit.CLI_META):
    """Forget a source; its apps are deleted, or with ``keep_data`` become local apps."""
    apps.require(principal, "Apps", "delete", "apps")
    source = find_source(services, principal, name)
    db = services.db
    with db.transaction():
        mirrored = mirror_store.mirrored_apps(db, source["id"])
        if not keep_data:
            for app in mirrored:
                audit.record(db, principal, meta, "delete", "app", app["id"], app_id=app["id"],
                             details={"name": app["name"], "mirror": source["name"]})
                app_store.delete_app(db, app["id"])
        mirror_store.delete_source(db, source["id"])
        audit.record(db, principal, meta, "delete", "mirror_source", source["id"],
                     details={"name": source["name"], "host": source["host"],
                              "apps": len(mirrored), "keptData": keep_data})
    return len(mirrored)


# -- syncing --------------------------------------------------------------------------------


@dataclass
class SyncResult:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    overrides: int = 0  # personal overrides of the token's user set, changed or removed
    apps: int = 0
    environments: int = 0
    removed: list = field(default_factory=list)  # "app" or "app/env" the source stopped giving

    def as_dict(self):
        shown = {"created": self.created, "updated": self.updated, "deleted": self.deleted,
                 "overrides": self.overrides, "apps": self.apps,
                 "environments": self.environments}
        if self.removed:
            shown["removed"] = list(self.removed)
        return shown

    def add(self, counts):
        created, updated, deleted, overrides = counts
        self.created += created
        self.updated += updated
        self.deleted += deleted
        self.overrides += overrides


def sync_source(services, source, *, interval=None, meta=MIRROR_META,
                timeout=TIMEOUT) -> SyncResult:
    """Pull one source now; record the outcome (and the next run, ``interval`` seconds on or
    later after failures). Raise MirrorError when it failed (the last good copy stays).

    Apps and environments are matched by their source ids, so a rename there is a rename here.
    One the source no longer gives (deleted there, or no longer readable by the token) keeps
    its copy, read-only and marked as removed at the source, with its secrets deleted (kept in
    history); if the source gives it again, or a new one of its name, the copy is filled again.
    """
    db = services.db
    actor = mirror_actor(services, source)
    result = SyncResult()
    try:
        client = Source(source["host"], source_token(services, source), source["token_kind"],
                        api_base=source["api_base"], timeout=timeout)
        found = client.read(json.loads(source["apps"]), json.loads(source["environments"]),
                            strict=False,
                            known_env_ids=mirror_store.mirrored_environment_ids(db, source["id"]))
        _check_local_names(services, actor, source["id"], source["host"], found,
                           source["local_name"])
        user_id = _overrides_user_here(db, source)
        copies = [(_ensure_app(services, actor, source, app), app) for app in found]
        found_ids = {app.id for app in found}
        gone = [row for row in mirror_store.mirrored_apps(db, source["id"])
                if row["mirror_app_id"] not in found_ids]
        for local_app, app in copies:
            env_ids = mirror_store.source_environment_ids(db, local_app["id"])
            for env in app.environments:
                env_row = app_store.get_environment(db, actor.organisation_id,
                                                    env_ids[env.id])
                result.add(sync_environment(services, actor, env_row, env.secrets, meta,
                                            overrides_user_id=user_id))
                result.environments += 1
            live = {env.id for env in app.environments}
            for row in mirror_store.mirrored_environments(db, local_app["id"]):
                if row["mirror_env_id"] not in live:
                    _empty_removed(services, actor, source, local_app, row, meta, result)
            result.apps += 1
        for local_app in gone:
            _empty_removed(services, actor, source, local_app, None, meta, result)
    except (MirrorError, InvalidRequest, Duplicate) as exc:
        message = exc.message
        _record_failure(services, actor, source, message, interval, meta)
        raise MirrorError(message) from None
    with db.transaction():
        mirror_store.record_attempt(db, source["id"], counts=result.as_dict(),
                                    next_run_at=_later(interval))
        audit.record(db, actor, meta, "sync", "mirror_source", source["id"],
                     details={"source": source["name"], "host": source["host"],
                              **result.as_dict()})
    log.info("mirror %s synced from %s: %d created, %d updated, %d deleted",
             source["name"], source["host"], result.created, result.updated, result.deleted)
    return result


def _overrides_user_here(db, source):
    """The local user whose overrides a personal token brings, while that user is here."""
    user_id = source["overrides_user_id"]
    if user_id is None or source["token_kind"] != "user":
        return None
    try:
        return account_store.get_user(db, source["organisation_id"], user_id)["id"]
    except NotFound:
        return None  # deleted here since: their overrides went with them


def _empty_removed(services, actor, source, app_row, env_row, meta, result):
    """A copy (an environment, or with ``env_row`` None the whole app) that the source no
    longer gives: delete its secrets (kept in history), mark it, keep it read-only."""
    db = services.db
    rows = [env_row] if env_row is not None else \
        mirror_store.mirrored_environments(db, app_row["id"])
    for row in rows:
        env = app_store.get_environment(db, actor.organisation_id, row["id"])
        result.add(sync_environment(services, actor, env, [], meta))
    marked = env_row if env_row is not None else app_row
    if marked["mirror_removed_at"] is not None:
        return
    with db.transaction():
        if env_row is None:
            mirror_store.mark_app_removed(db, app_row["id"], now())
            audit.record(db, actor, MIRROR_META, "update", "app", app_row["id"],
                         app_id=app_row["id"], details={"name": app_row["name"],
                                                        "mirror": source["name"],
                                                        "removedAtSource": True})
            result.removed.append(app_row["name"])
        else:
            mirror_store.mark_environment_removed(db, env_row["id"], now())
            audit.record(db, actor, MIRROR_META, "update", "environment", env_row["id"],
                         app_id=app_row["id"], environment_id=env_row["id"],
                         details={"name": env_row["name"], "mirror": source["name"],
                                  "removedAtSource": True})
            result.removed.append(f"{app_row['name']}/{env_row['name']}")


def _record_failure(services, actor, source, message, interval, meta):
    db = services.db
    wait = None
    if interval:
        wait = min(max(interval, MAX_BACKOFF), interval * 2 ** min(source["failures"] + 1, 10))
    with db.transaction():
        mirror_store.record_attempt(db, source["id"], error=message, next_run_at=_later(wait))
        audit.record(db, actor, meta, "sync", "mirror_source", source["id"],
                     details={"source": source["name"], "host": source["host"],
                              "error": message})
    log.error("mirror %s sync from %s failed: %s", source["name"], source["host"], message)


def _later(seconds):
    if not seconds:
        return None
    return format_time(datetime.now(timezone.utc) + timedelta(seconds=seconds))


def _ensure_app(services, actor, source, app):
    """The local copy of a source app, made (with its environments) when missing, renamed
    as the source renamed it or its environments (matched by source id)."""
    db = services.db
    name = source["local_name"] or app.name
    with db.transaction():
        local = mirror_store.copy_of_source_app(db, source["id"], app.id)
        if local is None:
            # A copy of this source whose app the source no longer gives, of the same name:
            # the app was deleted and made anew there (_check_local_names allowed no other).
            local = next((row for row in app_store.find_apps_by_name(
                db, actor.organisation_id, name) if row["mirror_source_id"] == source["id"]),
                None)
        if local is None:
            local_id = new_id()
            app_store.insert_app(db, local_id, actor.organisation_id, name, "",
                                 services.vault.new_wrapped_data_key(local_id))
            mirror_store.mark_mirrored(db, local_id, source["id"], app.id)
            audit.record(db, actor, MIRROR_META, "create", "app", local_id, app_id=local_id,
                         details={"name": name, "mirror": source["name"]})
        else:
            local_id = local["id"]
            changed = []
            if local["mirror_app_id"] != app.id or local["mirror_removed_at"] is not None:
                mirror_store.mark_mirrored(db, local_id, source["id"], app.id)
                changed.append("source")
            if local["name"] != name:
                app_store.update_app(db, local_id, name=name)
                changed.append("name")
            if changed:
                audit.record(db, actor, MIRROR_META, "update", "app", local_id,
                             app_id=local_id, details={"fields": changed, "name": name,
                                                       "from": local["name"],
                                                       "mirror": source["name"]})
        _ensure_environments(services, actor, source, local_id, app)
        return app_store.get_app(db, actor.organisation_id, local_id)


def _ensure_environments(services, actor, source, app_id, app):
    """Rename, take up again or make the copies of the source app's environments."""
    db, vault = services.db, services.vault
    rows = mirror_store.mirrored_environments(db, app_id)
    by_source = {row["mirror_env_id"]: row for row in rows if row["mirror_env_id"]}
    live = {env.id for env in app.environments}
    stale = [row for row in rows if row["mirror_env_id"] not in live]
    taken_up = []
    for env in app.environments:
        if env.id in by_source:
            continue
        # One of the name the source no longer gives: deleted and made anew there.
        row = next((row for row in stale if row["name"].lower() == env.name.lower()), None)
        if row is not None:
            stale.remove(row)
            mirror_store.mark_environment(db, row["id"], env.id)
            by_source[env.id] = row
            taken_up.append(row["id"])
    renames = {by_source[env.id]["id"]: (by_source[env.id]["name"], env.name)
               for env in app.environments
               if env.id in by_source and by_source[env.id]["name"] != env.name}
    wanted = {new.lower() for _, new in renames.values()} | {
        env.name.lower() for env in app.environments if env.id not in by_source}
    for row in stale:  # a removed copy holding a name the source now gives another
        if row["name"].lower() in wanted:
            renames[row["id"]] = (row["name"], f"{row['name']}-removed-{row['id'][:8]}")
    for env_id in renames:  # two steps: names swapped at the source would collide
        app_store.rename_environment(db, env_id, f"~{env_id}")
    for env_id, (old, new) in renames.items():
        app_store.rename_environment(db, env_id, new)
        audit.record(db, actor, MIRROR_META, "update", "environment", env_id, app_id=app_id,
                     environment_id=env_id,
                     details={"from": old, "to": new, "mirror": source["name"]})
    for env_id in set(taken_up) - set(renames):
        audit.record(db, actor, MIRROR_META, "update", "environment", env_id, app_id=app_id,
                     environment_id=env_id, details={"fields": ["source"],
                                                     "mirror": source["name"]})
    missing = [env for env in app.environments if env.id not in by_source]
    if not missing:
        return
    data_key = vault.data_key(app_id)
    for env in missing:
        env_type = env.env_type if env.env_type in ("dev", "staging", "prod") else "custom"
        env_id = apps.insert_environment(db, vault, data_key, app_id, env.name, env_type,
                                         app_store.next_sort_index(db, app_id))
        mirror_store.mark_environment(db, env_id, env.id)
        audit.record(db, actor, MIRROR_META, "create", "environment", env_id,
                     app_id=app_id, environment_id=env_id,
                     details={"name": env.name, "mirror": source["name"]})


def sync_environment(services, actor, env_row, source_secrets, meta=MIRROR_META, *,
                     overrides_user_id=None):
    """Bring one environment in step with the source's secrets in one transaction; return
    (created, updated, deleted, overrides). Nothing is written when nothing changed. With
    ``overrides_user_id``, that local user's overrides become the source's (``override`` of
    each source secret; those it lacks are removed)."""
    db = services.db
    wanted = {}
    for secret in source_secrets:
        wanted[(secret.path, secret.key)] = secret
    written = []
    with db.transaction():
        env_row = app_store.get_environment(db, actor.organisation_id, env_row["id"])
        local = {(s.path, s.key): s for s in secret_rules.list_secrets(services, actor, env_row)}
        deletes = [s for position, s in local.items() if position not in wanted]
        creates, updates = [], []
        for position, source in wanted.items():
            current = local.get(position)
            names = secret_rules.tag_names(list(source.tags))
            if current is None:
                creates.append((source, names))
                continue
            if current.type == "sealed" and (source.type != "sealed"
                                             or source.value != current.value):
                deletes.append(current)  # a sealed value cannot change: made again
                creates.append((source, names))
                continue
            change = secret_rules.SecretChange(
                id=current.id,
                value=None if source.value == current.value else source.value,
                comment=None if source.comment == current.comment else source.comment,
                tags=None if set(names) == set(current.tags) else tuple(names),
                type=None if source.type == current.type else source.type)
            if (change.value, change.comment, change.tags, change.type) != (None,) * 4:
                updates.append((current, change, change.tags))
        if creates or updates or deletes:
            writer = Writer(services, actor, env_row, syncing=True)
            written = [writer.delete(current) for current in deletes]
            for current, change, names in updates:
                written.append(writer.update(current, change, names))
            keys = writer.env_keys
            made = writer.insert([
                (secret_rules.NewSecret(key=source.key, value=source.value,
                                        comment=source.comment, path=source.path,
                                        tags=source.tags, type=source.type),
                 keys.digest(source.key), names)
                for source, names in creates])
            written += made
            writer.finish("mirror", written, meta)
        overrides = 0
        if overrides_user_id is not None:
            gone = {current.id for current in deletes}
            ids = {position: s.id for position, s in local.items() if s.id not in gone}
            if creates:
                ids.update({(s.path, s.key): s.id for s in made})
            overrides = _sync_overrides(services, env_row, overrides_user_id, wanted, ids)
    return len(creates), len(updates), len(deletes), overrides


def _sync_overrides(services, env_row, user_id, wanted, ids) -> int:
    """Make the user's overrides of these secrets the source's; return how many changed.
    An override is the user's own layer: setting one makes no secret version."""
    db, vault = services.db, services.vault
    existing = secret_store.environment_personal_secrets(db, user_id, env_row["id"])
    data_key = vault.data_key(env_row["app_id"])
    stamp, changed, removed = now(), 0, []
    for position, source in wanted.items():
        secret_id = ids.get(position)
        row = existing.pop(secret_id, None)
        if source.override is None:
            if row is not None:
                removed.append(row["id"])
            continue
        value, active = source.override
        if row is not None and bool(row["is_active"]) == active and value == vault.decrypt(
                data_key, "personal_secrets", row["id"], "value", row["value_enc"]):
            continue
        personal_id = row["id"] if row is not None else new_id()
        value_enc = vault.encrypt(data_key, "personal_secrets", personal_id, "value", value)
        if row is not None:
            secret_store.update_personal_secret(db, personal_id, value_enc, None, active, stamp)
        else:
            secret_store.insert_personal_secret(db, {
                "id": personal_id, "secret_id": secret_id, "user_id": user_id,
                "value_enc": value_enc, "wire_value": None, "is_active": int(active),
                "created_at": stamp, "updated_at": stamp})
        changed += 1
    removed += [row["id"] for row in existing.values()]
    mirror_store.delete_personal_secrets(db, removed)
    return changed + len(removed)


def sync_named(services, principal, name=None, *, interval=None, meta=MIRROR_META):
    """Sync one source by name, or every source; return [(name, SyncResult or error)]."""
    if name is not None:
        sources = [find_source(services, principal, name)]
    else:
        sources = mirror_store.list_sources(services.db, principal.organisation_id)
    outcomes = []
    with _one_node(services):
        for source in sources:
            try:
                outcomes.append((source["name"], sync_source(services, source,
                                                             interval=interval, meta=meta)))
            except MirrorError as exc:
                outcomes.append((source["name"], exc))
    return outcomes


def _due(sources):
    stamp = now()
    return [source for source in sources
            if source["next_run_at"] is None or source["next_run_at"] <= stamp]


def sync_due(services, interval: int) -> int:
    """One look of the server's schedule: sync every source whose next run has come (one
    node at a time on PostgreSQL); return how many were synced."""
    db = services.db
    if not _due(mirror_store.all_sources(db)):
        return 0  # the usual case: no lock taken, no connection opened
    with db.task_lock("mirror sync") as held:
        if not held:
            return 0
        done = 0
        # Looked at again under the lock: another node may have synced some just now.
        for source in _due(mirror_store.all_sources(db)):
            try:
                sync_source(services, source, interval=interval)
            except MirrorError:
                pass  # recorded and logged; the last good copy stays
            except StoreError:
                raise  # the schedule logs it and tries again
            except Exception as exc:  # keep the schedule alive; the class names no secret
                log.error("mirror %s sync failed: %s", source["name"], exc.__class__.__name__)
                with db.transaction():
                    mirror_store.set_next_run(db, source["id"], _later(interval))
            done += 1
        return done
