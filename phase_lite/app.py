"""The application factory: the one place where things are wired together."""

import os
from typing import TYPE_CHECKING

from flask import Flask
from flask.globals import request_ctx
from werkzeug.exceptions import NotFound
from werkzeug.routing import RequestRedirect

from . import __version__, accounts, audit, keyring
from .access_log import ROUTE_KEY
from .auth import Authenticator
from .caches import cache_statistics
from .client_protocol import ClientProtocol
from .config import Config, ConfigError, load_config
from .ratelimit import make_limiter
from .secrets import SnapshotCache, new_body_cache
from .store import SqliteDatabase, StoreError, open_database as open_store
from .store import meta as meta_store
from .vault import Vault

if TYPE_CHECKING:  # psycopg is an optional dependency
    from .store.postgres import PostgresDatabase


def open_keyring(config: Config) -> keyring.Keyring:
    """Load the master key(s) named by the config; ConfigError names the setting on failure."""
    setting, lines = config.read_master_key_lines()
    try:
        keys = [keyring.parse_master_key(line) for line in lines]
    except ValueError:
        raise ConfigError(
            f"{setting}: malformed master key (expected base64 of 32 bytes)") from None
    return keyring.Keyring(keys)


def open_database(config: Config, ring: keyring.Keyring) -> "SqliteDatabase | PostgresDatabase":
    """Open and migrate the database and check that the master key belongs to it."""
    setting = "PHASE_LITE_DATABASE_URL" if config.database_url else "PHASE_LITE_DATABASE"
    if not config.database_url and not config.database.exists():
        raise ConfigError(
            f"PHASE_LITE_DATABASE: no database at {config.database} (run 'phase-lite init')"
        )
    db = open_store(config.database_location)
    try:
        if not db.integrity_check():
            raise ConfigError(f"{setting}: {config.database_name} failed its integrity check")
        db.migrate()
        check = meta_store.get_blob(db, "master_key_check")
    except StoreError as exc:
        db.close()
        raise ConfigError(f"{setting}: {exc}") from None
    except ConfigError:
        db.close()
        raise
    if check is None:
        db.close()
        raise ConfigError(
            f"{setting}: {config.database_name} is not initialised (run 'phase-lite init')"
        )
    if not ring.verify_check_blob(check):
        db.close()
        raise ConfigError(
            f"{config.master_key_source()}: this master key does not match the database "
            f"{config.database_name} (wrong key?)"
        )
    return db


def init_data_dir(config: Config, owner_email: str):
    """Create the data directory, master key file, database and first Owner token.

    Idempotent: return the Owner's IssuedToken on a new data directory, None when it was
    already initialised. Never makes a new key for an existing database.
    """
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not config.master_key_env and not config.master_key_file.exists():
        if _holds_data(config):
            raise ConfigError(
                f"PHASE_LITE_MASTER_KEY_FILE: {config.master_key_file} is missing but the "
                f"database {config.database_name} exists; restore the key instead of making a "
                "new one"
            )
        _create_private_file(
            config.master_key_file,
            (keyring.encode_master_key(keyring.generate_master_key()) + "\n").encode(),
        )
    ring = open_keyring(config)
    if config.database_url is None and not config.database.exists():
        _create_private_file(config.database, b"")
    db = open_store(config.database_location)
    try:
        db.migrate()
        with db.transaction():
            check = meta_store.get_blob(db, "master_key_check")
            if check is None:
                meta_store.put_blob(db, "master_key_check", ring.make_check_blob())
            elif not ring.verify_check_blob(check):
                raise ConfigError(
                    f"{config.master_key_source()}: this master key does not match the database"
                )
            return accounts.initialise(db, owner_email)
    finally:
        db.close()


def _holds_data(config: Config) -> bool:
    """Whether the database exists (SQLite) or is initialised (PostgreSQL: the server and
    database exist whatever they hold)."""
    if config.database_url is None:
        return config.database.exists()
    db = open_store(config.database_url)
    try:
        db.migrate()
        return meta_store.get_blob(db, "master_key_check") is not None
    except StoreError as exc:
        raise ConfigError(f"PHASE_LITE_DATABASE_URL: {exc}") from None
    finally:
        db.close()


def _create_private_file(path, content: bytes):
    """Create a file readable by its owner only (0600), durably."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def open_services(config: Config) -> "Services":
    """Validate the key and the database and build the shared services (no Flask)."""
    ring = open_keyring(config)
    return Services(config, open_database(config, ring), ring)


def create_app(config: Config | None = None) -> Flask:
    """Build the WSGI app: validate config, open the store, register the HTTP surfaces."""
    config = config or load_config()
    services = open_services(config)

    app = PhaseFlask("phase_lite")
    app.config.update(
        MAX_CONTENT_LENGTH=config.max_body_bytes,
        TESTING=config.testing,
        JSON_SORT_KEYS=False,
        PHASE_LITE=config,
        API_TITLE="phase_lite",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
    )
    app.json.sort_keys = False
    app.extensions["phase_lite"] = services

    from .api import register_api
    from .console import register_console

    register_console(app, services)
    register_api(app)
    build_middleware(app, config, services)
    return app


def build_middleware(app: Flask, config: Config, services) -> None:
    """The WSGI stack around Flask, in the order a request meets it:

    1. ``access_log.AccessLog`` (``PHASE_LITE_ACCESS_LOG`` or the metrics): times every
       request and queues its line and figures, the fast path's and ``/metrics``'s included;
    2. ``metrics.MetricsEndpoint`` (``PHASE_LITE_METRICS``): answers ``/metrics``;
    3. ``api.PrefixMiddleware``: strips ``/service`` and ``/public``, attaches the services,
       refuses a declared body over the limit (413), adds the security headers, and answers
       the secrets GETs directly (the fast path; anything else goes on);
    4. ``console.web.ConsoleRootMiddleware``: a browser opening ``/`` is shown the console;
    5. Flask.

    Built from the inside out, after every blueprint and hook is registered: the fast path
    then knows the app's own request hooks (``PrefixMiddleware.seal``).
    """
    from .access_log import AccessLog, AccessLogWriter
    from .api import PrefixMiddleware, direct_gets
    from .console.web import ConsoleRootMiddleware
    from .metrics import PATH, Metrics, MetricsEndpoint

    prefixes = PrefixMiddleware(ConsoleRootMiddleware(app.wsgi_app), app, services,
                                direct_gets())
    prefixes.seal()
    app.wsgi_app = prefixes
    metrics = None
    if config.metrics:
        metrics = app.extensions["phase_lite_metrics"] = Metrics(services)
        app.wsgi_app = MetricsEndpoint(app.wsgi_app, metrics, config.metrics_token)
    if not config.access_log and metrics is None:
        return
    # Requests answered before Flask routes them carry no URL rule: their path (once the
    # prefixes are stripped) is their route label when it is a rule without variables.
    plain_rules = frozenset(rule.rule for rule in app.url_map.iter_rules()
                            if not rule.arguments)
    recorder = AccessLogWriter(config.log_format, lines=config.access_log,
                               observe=metrics.requests.observe_all if metrics else None,
                               plain_rules=plain_rules.union((PATH,) if metrics else ()))
    if config.access_log:
        app.extensions["phase_lite_access_log"] = recorder
    if metrics is not None:
        metrics.pending = recorder.count_waiting
    services.on_close.append(recorder.close)
    app.wsgi_app = AccessLog(app.wsgi_app, app, recorder)


class PhaseFlask(Flask):
    """Flask with Phase's routing: a path without its trailing slash is a 404, never a redirect.

    Each dispatched request notes its URL rule in the environ for the metrics: Flask takes its
    request object out of the environ when it is done.
    """

    def dispatch_request(self):
        rule = request_ctx.request.url_rule
        if rule is not None:
            request_ctx.request.environ[ROUTE_KEY] = rule.rule
        return super().dispatch_request()

    def raise_routing_exception(self, request):
        if isinstance(request.routing_exception, RequestRedirect):
            raise NotFound()
        super().raise_routing_exception(request)


class Services:
    """The objects a request needs, built once per app: every cache, buffer and limiter of
    the process is one of these or belongs to one."""

    def __init__(self, config, db, ring):
        self.config = config
        self.db = db
        self.keyring = ring
        self.vault = Vault(db, ring)
        self.auth = Authenticator(db)
        self.limiter = make_limiter(config, db)
        self.snapshots = SnapshotCache()  # decrypted environments, for every secrets read
        self.answers = new_body_cache()  # encoded GET /v1/secrets/ answers
        self.wire_answers = new_body_cache()  # encoded GET /service/secrets/ answers
        self.read_log = audit.ReadLog(db)  # read events waiting to be written
        self.client_protocol = ClientProtocol(self)
        self.on_close = []  # what the app added that must stop first (the access log)

    def cache_statistics(self) -> dict[str, tuple[int, int]]:
        """{cache name: (hits, misses)} of the caches that count them."""
        return cache_statistics((self.answers, self.wire_answers, *self.auth.caches))

    def close(self):
        for close in self.on_close:
            close()
        self.read_log.close()
        self.db.close()
