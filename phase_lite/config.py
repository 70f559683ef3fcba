"""Settings from ``PHASE_LITE_*`` environment variables, typed and validated.

Nothing else in the package reads ``os.environ``. Key material has no default: the master key
comes from ``PHASE_LITE_MASTER_KEY`` or from the file named by ``PHASE_LITE_MASTER_KEY_FILE``
(``<data dir>/master.key``, written by ``phase-lite init``), and a missing, unreadable or
malformed key stops start-up with one line that names the setting.

The data directory is ``PHASE_LITE_DATA_DIR``, else ``$XDG_DATA_HOME/phase-lite``, else
``~/.local/share/phase-lite``: the same install whatever folder a command runs in.
"""

import difflib
import importlib.util
import ipaddress
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the setting, never its value."""


DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_THREADS = 4
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_STOP_TIMEOUT = 5
DEFAULT_MIRROR_INTERVAL = 300  # PHASE_LITE_MIRROR_INTERVAL: five minutes between mirror syncs
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
SWITCH_VALUES = {"1": True, "true": True, "yes": True, "on": True,
                 "0": False, "false": False, "no": False, "off": False}
DEFAULT_SESSION_IDLE_MINUTES = 60
DEFAULT_SESSION_MAX_HOURS = 12
RATE_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*([smhd])\w*\s*$", re.IGNORECASE)
RATE_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
PREFIX = "PHASE_LITE_"
# Every variable ``load_config`` reads (the README's Configuration table). A ``PHASE_LITE_*``
# name not listed here is a misspelling, warned about at start; ``PHASE_LITE_TEST_*`` names
# belong to the test suite.
SETTINGS = (
    "PHASE_LITE_DATA_DIR", "PHASE_LITE_DATABASE", "PHASE_LITE_DATABASE_URL",
    "PHASE_LITE_MASTER_KEY", "PHASE_LITE_MASTER_KEY_FILE", "PHASE_LITE_LISTEN",
    "PHASE_LITE_PUBLIC_URL", "PHASE_LITE_THREADS", "PHASE_LITE_MAX_BODY_BYTES",
    "RATE_LIMIT_DEFAULT", "PHASE_LITE_RATE_LIMIT_SCOPE", "PHASE_LITE_TRUSTED_PROXIES",
    "PHASE_LITE_AUDIT_RETENTION_DAYS", "PHASE_LITE_LOG_LEVEL", "PHASE_LITE_LOG_FORMAT",
    "PHASE_LITE_ACCESS_LOG", "PHASE_LITE_METRICS", "PHASE_LITE_METRICS_TOKEN",
    "PHASE_LITE_STOP_TIMEOUT", "PHASE_LITE_SESSION_IDLE_MINUTES",
    "PHASE_LITE_SESSION_MAX_HOURS", "PHASE_LITE_MIRROR_INTERVAL", "PHASE_LITE_PASSWORD_SIGN_IN",
    "PHASE_LITE_OIDC_ISSUER", "PHASE_LITE_OIDC_CLIENT_ID", "PHASE_LITE_OIDC_CLIENT_SECRET",
    "PHASE_LITE_OIDC_CLIENT_SECRET_FILE", "PHASE_LITE_OIDC_NAME", "PHASE_LITE_OIDC_SCOPES",
    "PHASE_LITE_OIDC_AUTO_JOIN_ROLE", "PHASE_LITE_OIDC_AUTO_JOIN_DOMAINS",
    "PHASE_LITE_OIDC_AUTO_JOIN_GROUPS", "PHASE_LITE_OIDC_GROUPS_CLAIM",
)
NOT_SETTINGS_PREFIX = "PHASE_LITE_TEST_"


@dataclass
class Config:
    data_dir: Path
    database: Path
    master_key_file: Path
    master_key_env: str | None = field(default=None, repr=False)
    database_url: str | None = field(default=None, repr=False)  # PostgreSQL; may hold a password
    listen: str = DEFAULT_LISTEN
    public_url: str | None = None  # how users reach the server: every printed link starts so
    threads: int = DEFAULT_THREADS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    rate_limit: tuple[int, int] | None = None  # (requests, period seconds)
    rate_limit_scope: str = "node"  # or "cluster": one window across nodes (PostgreSQL)
    trusted_proxies: tuple[str, ...] = ()
    audit_retention_days: int | None = None
    log_level: str = "INFO"
    log_format: str = "text"
    access_log: bool = True
    metrics: bool = True
    metrics_token: str | None = field(default=None, repr=False)
    stop_timeout: int = DEFAULT_STOP_TIMEOUT
    mirror_interval: int = DEFAULT_MIRROR_INTERVAL  # seconds between syncs; 0: never
    session_idle_minutes: int = DEFAULT_SESSION_IDLE_MINUTES  # console sign-in
    session_max_hours: int = DEFAULT_SESSION_MAX_HOURS
    # -- console sign-in through an OpenID provider (load_oidc_settings) --
    oidc: "OidcSettings | None" = None
    password_sign_in: bool = True
    testing: bool = False
    data_dir_is_default: bool = False  # PHASE_LITE_DATA_DIR unset

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def database_location(self):
        """What ``store.open_database`` opens: the PostgreSQL URL, else the SQLite file."""
        return self.database_url or self.database

    @property
    def database_name(self) -> str:
        """How messages name the database: the file, or the URL without user and password."""
        if not self.database_url:
            return str(self.database)
        parts = urllib.parse.urlsplit(self.database_url)
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            port = ""
        return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"

    def master_key_source(self) -> str:
        return "PHASE_LITE_MASTER_KEY" if self.master_key_env else "PHASE_LITE_MASTER_KEY_FILE"

    def retired_key_files(self) -> list[Path]:
        """The files beside the key file that hold keys ``keys rotate-master`` retired
        (``<key file>.retired-<UTC time>``, mode 0600), newest first."""
        folder, name = self.master_key_file.parent, self.master_key_file.name
        return sorted(folder.glob(f"{name}.retired-*"), reverse=True) if folder.is_dir() else []

    def read_master_key_lines(self) -> tuple[str, list[str]]:
        """Return (setting name, base64 key lines): the current key first, then previous ones.

        The key file holds one base64 key per line; extra lines are previous keys kept while a
        rotation completes. Raise ConfigError naming the setting when the source is unusable.
        """
        if self.master_key_env:
            return "PHASE_LITE_MASTER_KEY", [self.master_key_env.strip()]
        setting = "PHASE_LITE_MASTER_KEY_FILE"
        try:
            lines = self.master_key_file.read_text().split()
        except FileNotFoundError:
            if old := old_default_install(self):
                raise moved_install_error(self, old) from None
            raise ConfigError(
                f"{setting}: no master key at {self.master_key_file} "
                "(run 'phase-lite init' or set PHASE_LITE_MASTER_KEY)"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"{setting}: cannot read {self.master_key_file} ({exc.strerror})"
            ) from None
        if not lines:
            raise ConfigError(f"{setting}: {self.master_key_file} is empty")
        return setting, lines


def _int(env, name, default, minimum=1):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}")
    return value


def _switch(env, name, default: bool) -> bool:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return SWITCH_VALUES[raw.strip().lower()]
    except KeyError:
        raise ConfigError(f"{name}: expected on or off") from None


def _choice(env, name, choices, default) -> str:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    value = raw.strip()
    value = value.upper() if choices == LOG_LEVELS else value.lower()
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}")
    return value


def parse_rate(text: str) -> tuple[int, int]:
    """Parse Phase's ``N/period`` rate (period judged by its first letter: s, m, h, d)."""
    match = RATE_PATTERN.match(text)
    if not match or int(match.group(1)) < 1:
        raise ConfigError("RATE_LIMIT_DEFAULT: expected N/second, N/minute, N/hour or N/day")
    return int(match.group(1)), RATE_PERIODS[match.group(2).lower()]


def parse_database_url(url: str) -> str:
    """Check a ``PHASE_LITE_DATABASE_URL``: PostgreSQL only, and its driver installed."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("PHASE_LITE_DATABASE_URL: expected a postgresql:// URL")
    if importlib.util.find_spec("psycopg") is None:
        raise ConfigError(
            "PHASE_LITE_DATABASE_URL: PostgreSQL needs psycopg: pip install 'phase_lite[postgres]'"
        )
    return url


def parse_trusted_proxies(text: str) -> tuple[str, ...]:
    """Check ``PHASE_LITE_TRUSTED_PROXIES``: comma-separated IP addresses or networks."""
    entries = tuple(p.strip() for p in text.split(",") if p.strip())
    for number, entry in enumerate(entries, 1):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"PHASE_LITE_TRUSTED_PROXIES: entry {number} is not an IP address or network "
                "(expected e.g. 127.0.0.1, 10.0.0.0/8 or ::1, separated by commas)") from None
    return entries


def parse_public_url(text: str) -> str:
    """Check ``PHASE_LITE_PUBLIC_URL``: an absolute http(s) URL, no query or fragment; returned
    without its trailing slash (links append their own path)."""
    problem = "expected an absolute http:// or https:// URL, e.g. https://secrets.example.com"
    try:
        parts = urllib.parse.urlsplit(text.strip())
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise ConfigError(f"PHASE_LITE_PUBLIC_URL: {problem}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"PHASE_LITE_PUBLIC_URL: {problem}")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ConfigError("PHASE_LITE_PUBLIC_URL: a query or fragment has no place in it")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("PHASE_LITE_PUBLIC_URL: a user name or password has no place in it")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def unknown_settings(environ=None) -> list[str]:
    """One warning per ``PHASE_LITE_*`` variable that is no setting, naming the nearest
    setting (a misspelt name would otherwise be ignored without a word)."""
    env = os.environ if environ is None else environ
    lines = []
    for name in sorted(env):
        if (not name.startswith(PREFIX) or name in SETTINGS
                or name.startswith(NOT_SETTINGS_PREFIX)):
            continue
        # Compared without the prefix that every name shares (it would make all look alike).
        known = {setting.removeprefix(PREFIX): setting for setting in SETTINGS}
        nearest = difflib.get_close_matches(name.removeprefix(PREFIX), known, n=1, cutoff=0.6)
        hint = f"; did you mean {known[nearest[0]]}?" if nearest else ""
        lines.append(f"{name} is not a phase_lite setting and is ignored{hint}")
    return lines


def default_data_dir(env) -> Path:
    """``$XDG_DATA_HOME/phase-lite``, else ``~/.local/share/phase-lite`` (XDG's base directories:
    a relative ``XDG_DATA_HOME`` is ignored). Never the working directory."""
    xdg = env.get("XDG_DATA_HOME") or ""
    if os.path.isabs(xdg):
        return Path(xdg) / "phase-lite"
    home = env.get("HOME")
    return (Path(home) if home and os.path.isabs(home) else Path.home()) / ".local/share/phase-lite"


# The default data directory before it moved to ``default_data_dir``: ``./data``.
OLD_DEFAULT_DATA_DIR = "data"


def old_default_install(config: Config) -> Path | None:
    """``./data`` when it holds an install made while it was the default and no
    PHASE_LITE_DATA_DIR is set: what ``init`` and ``serve`` point at instead of the new place."""
    old = Path(OLD_DEFAULT_DATA_DIR).resolve()
    if not config.data_dir_is_default or old == config.data_dir:
        return None
    held = any((old / name).exists() for name in ("master.key", "phase_lite.sqlite3"))
    return old if held else None


def moved_install_error(config: Config, old: Path) -> ConfigError:
    """The refusal to start a second, empty install while ``old`` holds the first."""
    return ConfigError(
        f"PHASE_LITE_DATA_DIR: {old} holds an install made when ./data was the default data "
        f"directory, which is now {config.data_dir}; set PHASE_LITE_DATA_DIR={old}, or move "
        f"its files to {config.data_dir}")


def load_config(environ=None, **overrides) -> Config:
    """Build a Config from the environment (``os.environ`` by default) plus overrides."""
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("PHASE_LITE_DATA_DIR") or default_data_dir(env)).resolve()
    listen = env.get("PHASE_LITE_LISTEN") or DEFAULT_LISTEN
    if not re.fullmatch(r"[^\s:]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", listen) or not (
            0 < int(listen.rsplit(":", 1)[1]) < 65536):
        raise ConfigError("PHASE_LITE_LISTEN: expected HOST:PORT (port 1 to 65535)")
    public_url = env.get("PHASE_LITE_PUBLIC_URL")
    rate = env.get("RATE_LIMIT_DEFAULT")
    proxies = parse_trusted_proxies(env.get("PHASE_LITE_TRUSTED_PROXIES") or "")
    retention = env.get("PHASE_LITE_AUDIT_RETENTION_DAYS")
    database_url = env.get("PHASE_LITE_DATABASE_URL")
    rate_scope = (env.get("PHASE_LITE_RATE_LIMIT_SCOPE") or "node").lower()
    if rate_scope not in ("node", "cluster"):
        raise ConfigError("PHASE_LITE_RATE_LIMIT_SCOPE: expected node or cluster")
    if rate_scope == "cluster" and not database_url:
        raise ConfigError("PHASE_LITE_RATE_LIMIT_SCOPE: cluster needs PHASE_LITE_DATABASE_URL "
                          "(one SQLite server is one node)")
    config = Config(
        data_dir=data_dir,
        database=Path(env.get("PHASE_LITE_DATABASE") or data_dir / "phase_lite.sqlite3"),
        master_key_file=Path(env.get("PHASE_LITE_MASTER_KEY_FILE") or data_dir / "master.key"),
        master_key_env=env.get("PHASE_LITE_MASTER_KEY") or None,
        database_url=parse_database_url(database_url) if database_url else None,
        listen=listen,
        public_url=parse_public_url(public_url) if public_url else None,
        threads=_int(env, "PHASE_LITE_THREADS", DEFAULT_THREADS),
        max_body_bytes=_int(env, "PHASE_LITE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        rate_limit=parse_rate(rate) if rate else None,
        rate_limit_scope=rate_scope,
        trusted_proxies=proxies,
        audit_retention_days=_int(env, "PHASE_LITE_AUDIT_RETENTION_DAYS", None)
        if retention
        else None,
        log_level=_choice(env, "PHASE_LITE_LOG_LEVEL", LOG_LEVELS, "INFO"),
        log_format=_choice(env, "PHASE_LITE_LOG_FORMAT", LOG_FORMATS, "text"),
        access_log=_switch(env, "PHASE_LITE_ACCESS_LOG", True),
        metrics=_switch(env, "PHASE_LITE_METRICS", True),
        metrics_token=(env.get("PHASE_LITE_METRICS_TOKEN") or "").strip() or None,
        stop_timeout=_int(env, "PHASE_LITE_STOP_TIMEOUT", DEFAULT_STOP_TIMEOUT, minimum=0),
        mirror_interval=_int(env, "PHASE_LITE_MIRROR_INTERVAL", DEFAULT_MIRROR_INTERVAL,
                             minimum=0),
        session_idle_minutes=_int(env, "PHASE_LITE_SESSION_IDLE_MINUTES",
                                  DEFAULT_SESSION_IDLE_MINUTES),
        session_max_hours=_int(env, "PHASE_LITE_SESSION_MAX_HOURS", DEFAULT_SESSION_MAX_HOURS),
        data_dir_is_default=not env.get("PHASE_LITE_DATA_DIR"),
    )
    config.oidc, config.password_sign_in = load_oidc_settings(env)
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


# -- console sign-in through an OpenID provider ---------------------------------------------

DEFAULT_OIDC_SCOPES = ("openid", "email", "profile")
# Auto-joining gives at most the Developer role: a provider's account never becomes a Manager,
# Admin or Owner by itself (Service is for service accounts).
OIDC_AUTO_JOIN_ROLES = ("Developer",)
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class OidcSettings:
    """The console's OpenID provider (``PHASE_LITE_OIDC_*``)."""
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    display_name: str
    scopes: tuple[str, ...] = DEFAULT_OIDC_SCOPES
    auto_join_role: str | None = None  # None: an unknown email is refused
    auto_join_domains: tuple[str, ...] = ()  # lower case, without "@"
    auto_join_groups: tuple[str, ...] = ()
    groups_claim: str = "groups"


def _words(env, name) -> tuple[str, ...]:
    return tuple(w for w in re.split(r"[\s,]+", env.get(name) or "") if w)


def load_oidc_settings(env) -> tuple[OidcSettings | None, bool]:
    """(the OpenID provider or None, whether password sign-in is on)."""
    password_sign_in = _switch(env, "PHASE_LITE_PASSWORD_SIGN_IN", True)
    issuer = (env.get("PHASE_LITE_OIDC_ISSUER") or "").strip()
    if not issuer:
        if not password_sign_in:
            raise ConfigError("PHASE_LITE_PASSWORD_SIGN_IN: off needs PHASE_LITE_OIDC_ISSUER "
                              "(nobody could sign in to the console)")
        return None, True
    parts = urllib.parse.urlsplit(issuer)
    if (parts.scheme not in ("https", "http") or not parts.hostname or parts.query
            or parts.fragment):
        raise ConfigError("PHASE_LITE_OIDC_ISSUER: expected an https:// URL")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError("PHASE_LITE_OIDC_ISSUER: expected an https:// URL "
                          "(plain http only on loopback)")
    client_id = (env.get("PHASE_LITE_OIDC_CLIENT_ID") or "").strip()
    if not client_id:
        raise ConfigError("PHASE_LITE_OIDC_CLIENT_ID: needed with PHASE_LITE_OIDC_ISSUER")
    secret = env.get("PHASE_LITE_OIDC_CLIENT_SECRET") or ""
    secret_file = env.get("PHASE_LITE_OIDC_CLIENT_SECRET_FILE")
    if secret_file and not secret:
        try:
            secret = Path(secret_file).read_text()
        except OSError as exc:
            raise ConfigError(f"PHASE_LITE_OIDC_CLIENT_SECRET_FILE: cannot read {secret_file} "
                              f"({exc.strerror})") from None
    secret = secret.strip()
    if not secret:
        raise ConfigError("PHASE_LITE_OIDC_CLIENT_SECRET: needed with PHASE_LITE_OIDC_ISSUER "
                          "(or PHASE_LITE_OIDC_CLIENT_SECRET_FILE)")
    scopes = _words(env, "PHASE_LITE_OIDC_SCOPES") or DEFAULT_OIDC_SCOPES
    if "openid" not in scopes or "email" not in scopes:
        raise ConfigError("PHASE_LITE_OIDC_SCOPES: must include openid and email")
    role = (env.get("PHASE_LITE_OIDC_AUTO_JOIN_ROLE") or "").strip()
    if role:
        role = next((r for r in OIDC_AUTO_JOIN_ROLES if r.lower() == role.lower()), "")
        if not role:
            raise ConfigError("PHASE_LITE_OIDC_AUTO_JOIN_ROLE: expected "
                              f"{' or '.join(OIDC_AUTO_JOIN_ROLES)} (never above Developer)")
    domains = tuple(d.lower().lstrip("@") for d in _words(env, "PHASE_LITE_OIDC_AUTO_JOIN_DOMAINS"))
    groups = _words(env, "PHASE_LITE_OIDC_AUTO_JOIN_GROUPS")
    if (domains or groups) and not role:
        raise ConfigError("PHASE_LITE_OIDC_AUTO_JOIN_ROLE: needed with "
                          "PHASE_LITE_OIDC_AUTO_JOIN_DOMAINS or _GROUPS")
    settings = OidcSettings(
        issuer=issuer,
        client_id=client_id, client_secret=secret,
        display_name=(env.get("PHASE_LITE_OIDC_NAME") or "").strip() or parts.hostname,
        scopes=scopes, auto_join_role=role or None, auto_join_domains=domains,
        auto_join_groups=groups,
        groups_claim=(env.get("PHASE_LITE_OIDC_GROUPS_CLAIM") or "").strip() or "groups")
    return settings, password_sign_in
