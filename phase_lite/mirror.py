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
from .store import StoreError, format_time, missing_as, new_id, now
from .store import apps as app_store
from .store import mirrors as mirror_store

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

    def read(self, app_choices=(), env_choices=(), *, with_secrets=True) -> list[SourceApp]:
        """The chosen apps (names or ids; all when none) and environments (names; all when
        none) the token can read, with their secrets opened."""
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
                if not matches:
                    raise MirrorError(f"the token cannot read an app {choice!r} at {self.host}")
                chosen.extend(app for app in matches if app not in chosen)
        wanted = {name.lower() for name in env_choices}
        for app in chosen:
            if wanted:
                app.environments = [env for env in app.environments
                                    if env.name.lower() in wanted]
            if with_secrets:
                for env in app.environments:
                    env.secrets = self._secrets(app, env)
        if wanted and not any(app.environments for app in chosen):
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
                secrets.append(SourceSecret(
                    key=self._open(env, row["key"]),
                    value=self._open(env, row["value"]),
                    comment=self._open(env, comment) if comment else "",
                    tags=tuple(tag["name"] if isinstance(tag, dict) else str(tag)
                               for tag in tags),
                    path=normalize_path(row.get("path") or "/"),
                    type=row.get("type") or "secret",
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


def source_token(services, source) -> str:
    ring = services.vault.keyring
    try:
        data_key = ring.unwrap_data_key(source["wrapped_key"], _source_key_id(source["id"]))
        return keyring.decrypt_text(data_key, source["token_enc"],
                                    keyring.field_aad("mirror_sources", source["id"], "token"))
    except keyring.KeyringError:
        raise MirrorError(f"the stored token of mirror {source['name']} does not open with "
                          "the master key") from None


def add_source(services, principal, *, host, token_text, app_choices=(), env_choices=(),
               name=None, local_name=None, meta=audit.CLI_META, timeout=TIMEOUT):
    """Register a source after checking that it answers and that its apps can be mirrored
    here; return its row. Nothing is stored when anything is wrong."""
    apps.require(principal, "Apps", "create", "apps")
    kind, token = parse_token(token_text)
    host = clean_host(host)
    name = name or urlsplit(host).hostname
    if not _NAME.fullmatch(name):
        raise InvalidRequest("--name: letters, digits, '.', '_' or '-', at most 64")
    if local_name is not None and len(app_choices) != 1:
        raise InvalidRequest("--as names the local copy of one app: give exactly one --app")
    db = services.db
    if db.one("SELECT 1 FROM mirror_sources WHERE organisation_id = ? AND name = ?",
              (principal.organisation_id, name)):
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
        "token_kind": kind, "apps": json.dumps(list(app_choices)),
        "environments": json.dumps(list(env_choices)), "local_name": local_name,
        "created_at": now(),
    }
    with db.transaction():
        mirror_store.insert_source(db, row)
        audit.record(db, principal, meta, "create", "mirror_source", source_id,
                     details={"name": name, "host": host, "apiBase": source.api_base,
                              "apps": list(app_choices), "environments": list(env_choices)})
    return mirror_store.source_by_id(db, source_id)


def _check_local_names(services, principal, source_id, host, found, local_name):
    """Refuse a source app whose name a local app that is not its mirror already has."""
    for app in found:
        wanted = local_name or app.name
        for row in app_store.find_apps_by_name(services.db, principal.organisation_id, wanted):
            if row["mirror_source_id"] == source_id and row["mirror_app_id"] == app.id:
                continue
            raise MirrorError(
                f"an app named {row['name']} exists on this server and is not this mirror of "
                f"{host}: rename it, or give --as NAME to name the copy")


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
    return {"name": source["name"], "host": source["host"],
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
    return sync_source(services, source, interval=services.config.mirror_interval, meta=meta)


def list_sources(services, principal) -> list[dict]:
    """Every source with its apps, environments, counts and state (no token)."""
    db = services.db
    listed = []
    for source in mirror_store.list_sources(db, principal.organisation_id):
        mirrored = mirror_store.mirrored_apps(db, source["id"])
        listed.append({
            "name": source["name"], "host": source["host"], "apiBase": source["api_base"],
            "tokenKind": source["token_kind"],
            "apps": [{"id": app["id"], "name": app["name"],
                      "environments": [env["name"] for env in
                                       app_store.list_environments(db, app["id"])]}
                     for app in mirrored],
            "chosenApps": json.loads(source["apps"]),
            "chosenEnvironments": json.loads(source["environments"]),
            "counts": json.loads(source["counts"]),
            "lastAttemptAt": source["last_attempt_at"],
            "lastSuccessAt": source["last_success_at"],
            "lastError": source["last_error"], "failures": source["failures"],
            "nextRunAt": source["next_run_at"],
        })
    return listed


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
    apps: int = 0
    environments: int = 0

    def as_dict(self):
        return {"created": self.created, "updated": self.updated, "deleted": self.deleted,
                "apps": self.apps, "environments": self.environments}


def sync_source(services, source, *, interval=None, meta=MIRROR_META,
                timeout=TIMEOUT) -> SyncResult:
    """Pull one source now; record the outcome (and the next run, ``interval`` seconds on or
    later after failures). Raise MirrorError when it failed (the last good copy stays)."""
    db = services.db
    actor = mirror_actor(services, source)
    result = SyncResult()
    try:
        client = Source(source["host"], source_token(services, source), source["token_kind"],
                        api_base=source["api_base"], timeout=timeout)
        found = client.read(json.loads(source["apps"]), json.loads(source["environments"]))
        _check_local_names(services, actor, source["id"], source["host"], found,
                           source["local_name"])
        for app in found:
            local_app = _ensure_app(services, actor, source, app)
            result.apps += 1
            env_ids = mirror_store.source_environment_ids(db, local_app["id"])
            for env in app.environments:
                env_row = app_store.get_environment(db, actor.organisation_id,
                                                    env_ids[env.id])
                created, updated, deleted = sync_environment(services, actor, env_row,
                                                             env.secrets, meta)
                result.created += created
                result.updated += updated
                result.deleted += deleted
                result.environments += 1
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
    """The local copy of a source app, made (with its environments) when missing."""
    db, vault = services.db, services.vault
    with db.transaction():
        local = db.one("SELECT * FROM apps WHERE mirror_source_id = ? AND mirror_app_id = ?",
                       (source["id"], app.id))
        if local is None:
            local_id = new_id()
            name = source["local_name"] or app.name
            app_store.insert_app(db, local_id, actor.organisation_id, name, "",
                                 vault.new_wrapped_data_key(local_id))
            mirror_store.mark_mirrored(db, local_id, source["id"], app.id)
            audit.record(db, actor, MIRROR_META, "create", "app", local_id, app_id=local_id,
                         details={"name": name, "mirror": source["name"]})
            local = app_store.get_app(db, actor.organisation_id, local_id)
        known = mirror_store.source_environment_ids(db, local["id"])
        missing = [env for env in app.environments if env.id not in known]
        if missing:
            data_key = vault.data_key(local["id"])
            for env in missing:
                row = app_store.find_environment(db, local["id"], env.name)
                if row is not None:
                    mirror_store.mark_environment(db, row["id"], env.id)
                    continue
                env_type = env.env_type if env.env_type in ("dev", "staging", "prod") \
                    else "custom"
                env_id = apps.insert_environment(db, vault, data_key, local["id"], env.name,
                                                 env_type, app_store.next_sort_index(
                                                     db, local["id"]))
                mirror_store.mark_environment(db, env_id, env.id)
                audit.record(db, actor, MIRROR_META, "create", "environment", env_id,
                             app_id=local["id"], environment_id=env_id,
                             details={"name": env.name, "mirror": source["name"]})
    return local


def sync_environment(services, actor, env_row, source_secrets, meta=MIRROR_META):
    """Bring one environment in step with the source's secrets in one transaction; return
    (created, updated, deleted). Nothing is written when nothing changed."""
    db = services.db
    wanted = {}
    for secret in source_secrets:
        wanted[(secret.path, secret.key)] = secret
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
        if not (creates or updates or deletes):
            return 0, 0, 0
        writer = Writer(services, actor, env_row, syncing=True)
        written = [writer.delete(current) for current in deletes]
        for current, change, names in updates:
            written.append(writer.update(current, change, names))
        keys = writer.env_keys
        written += writer.insert([
            (secret_rules.NewSecret(key=source.key, value=source.value,
                                    comment=source.comment, path=source.path,
                                    tags=source.tags, type=source.type),
             keys.digest(source.key), names)
            for source, names in creates])
        writer.finish("mirror", written, meta)
    return len(creates), len(updates), len(deletes)


def sync_named(services, principal, name=None, *, interval=None, meta=MIRROR_META):
    """Sync one source by name, or every source; return [(name, SyncResult or error)]."""
    if name is not None:
        sources = [find_source(services, principal, name)]
    else:
        sources = mirror_store.list_sources(services.db, principal.organisation_id)
    outcomes = []
    for source in sources:
        try:
            outcomes.append((source["name"], sync_source(services, source, interval=interval,
                                                         meta=meta)))
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
