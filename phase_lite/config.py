"""Settings from ``PHASE_LITE_*`` environment variables, typed and validated.

Nothing else in the package reads ``os.environ``. Key material has no default: the master key
comes from ``PHASE_LITE_MASTER_KEY`` or from the file named by ``PHASE_LITE_MASTER_KEY_FILE``
(``<data dir>/master.key``, written by ``phase-lite init``), and a missing, unreadable or
malformed key stops start-up with one line that names the setting.
"""

import importlib.util
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


@dataclass
class Config:
    data_dir: Path
    database: Path
    master_key_file: Path
    master_key_env: str | None = field(default=None, repr=False)
    database_url: str | None = field(default=None, repr=False)  # PostgreSQL; may hold a password
    listen: str = DEFAULT_LISTEN
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
    testing: bool = False

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


def load_config(environ=None, **overrides) -> Config:
    """Build a Config from the environment (``os.environ`` by default) plus overrides."""
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("PHASE_LITE_DATA_DIR") or "data").resolve()
    listen = env.get("PHASE_LITE_LISTEN") or DEFAULT_LISTEN
    if not re.fullmatch(r"[^\s:]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", listen) or not (
            0 < int(listen.rsplit(":", 1)[1]) < 65536):
        raise ConfigError("PHASE_LITE_LISTEN: expected HOST:PORT (port 1 to 65535)")
    rate = env.get("RATE_LIMIT_DEFAULT")
    proxies = tuple(
        p.strip() for p in (env.get("PHASE_LITE_TRUSTED_PROXIES") or "").split(",") if p.strip()
    )
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
    )
    for name, value in overrides.items():
        setattr(config, name, value)
    return config
