"""Data for the bench: data directories, the bench app and token, secrets to send, 1M rows.

The measured environments are filled over HTTP (the real write path). The million secrets of
the large case are written directly through the domain layer (``secrets.create_secrets``: the
same validation, encryption, version rows and audit as a REST write, without HTTP), a thousand
per environment, an app's environments per transaction. That database is cached under
``bench/results/`` (gitignored) keyed by a hash of everything that decides its contents, and
copied for each run, so only the first run pays for seeding.
"""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
# The cache key: the schema, the encryption format and this file. The measured environment is
# written by the current code on every run; the million other rows only have to be valid
# rows of this schema (as an older phase_lite would have left them), so edits to the domain
# code do not force a new seeding.
CACHE_INPUTS = ("phase_lite/migrations.py", "phase_lite/keyring.py", "bench/seed.py")
SEED_CACHE_KIB = 512 * 1024  # SQLite page cache of the seeding connection only

SERVICES = ("API", "DB", "REDIS", "S3", "STRIPE", "SMTP", "AUTH", "SENTRY", "QUEUE", "CDN")
FIELDS = ("HOST", "PORT", "USER", "PASSWORD", "URL", "TOKEN", "KEY", "SECRET", "TIMEOUT",
          "REGION")
TAG_SETS = ((), (), (), ("db",), ("api", "prod"))
STAGING = {"DB_HOST": "staging-db.internal", "API_URL": "https://staging.example.com/api",
           "REDIS_HOST": "staging-redis.internal", "CDN_URL": "https://cdn.staging.example.com"}


# -- data directories and the bench account --------------------------------------------------


def init_data_dir(data_dir: Path, settings=None) -> dict:
    """``phase-lite init --json`` on a new data directory (and ``settings``, such as a
    PHASE_LITE_DATABASE_URL); return its JSON answer."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("PHASE_LITE_")}
    env.update(settings or {}, PHASE_LITE_DATA_DIR=str(data_dir))
    completed = subprocess.run([sys.executable, "-m", "phase_lite.cli", "init", "--json"],
                               env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"phase-lite init failed: {completed.stderr.strip()}")
    return json.loads(completed.stdout)


def open_services(data_dir: Path, settings=None):
    from phase_lite.app import open_services as open_phase_lite
    from phase_lite.config import load_config

    return open_phase_lite(load_config({**(settings or {}), "PHASE_LITE_DATA_DIR": str(data_dir)}))


@dataclass
class Layout:
    """The bench app: its id, environment ids by name, and a service-account bearer."""
    app_id: str
    environments: dict
    bearer: str  # "ServiceAccount <64 hex>"

    @property
    def authorization(self) -> str:
        return f"Bearer {self.bearer}"


def create_bench_app(data_dir: Path, env_names, settings=None) -> Layout:
    """The app ``bench`` with these environments and a service account granted all of them."""
    from phase_lite import accounts, apps, service_accounts
    from phase_lite.accounts import Grantee
    from phase_lite.audit import CLI_META

    services = open_services(data_dir, settings)
    try:
        operator = accounts.operator(services, "bench")
        app, env_rows = apps.create_app(services, operator,
                                        {"name": "bench", "environments": list(env_names)},
                                        CLI_META)
        role = accounts.role_by_name(services, operator, "Service")
        account, issued = service_accounts.create_service_account(
            services, operator, {"name": "bench", "role_id": role["id"]}, CLI_META)
        accounts.grant_environments(services, operator, Grantee.of_service_account(account),
                                    app, env_rows, CLI_META)
        return Layout(app["id"], {e["name"]: e["id"] for e in env_rows}, issued.bearer_token)
    finally:
        services.close()


# -- secrets to send -------------------------------------------------------------------------


def key_name(index: int) -> str:
    base = f"{SERVICES[index % 10]}_{FIELDS[(index // 10) % 10]}"
    return base if index < 100 else f"{base}_{index // 100}"


def make_secrets(count: int, *, seed: int = 7, prefix: str = "", references: bool = True):
    """``count`` REST entries of realistic sizes; one in twenty holds ``${...}`` references
    (a local key and a Staging key)."""
    rng = random.Random(seed)
    keys = [prefix + key_name(i) for i in range(count)]
    entries = []
    for i, key in enumerate(keys):
        entry = {"key": key, "value": _value(rng), "comment": "", "path": "/",
                 "tags": list(TAG_SETS[i % len(TAG_SETS)])}
        if i % 3 == 0:
            entry["comment"] = f"{key.lower().replace('_', ' ')}, rotated yearly"
        if references and i % 20 == 19:
            local = keys[(i * 7) % count]
            staging = list(STAGING)[i % len(STAGING)]
            entry["value"] = f"https://${{{local}}}@${{Staging.{staging}}}:5432/app"
        entries.append(entry)
    return entries


def staging_secrets():
    return [{"key": key, "value": value, "comment": "", "path": "/", "tags": []}
            for key, value in STAGING.items()]


def _value(rng):
    kind = rng.random()
    if kind < 0.4:
        return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789-.", k=rng.randint(8, 24)))
    if kind < 0.8:
        return rng.randbytes(rng.randint(16, 32)).hex()
    return "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                               k=rng.randint(100, 200)))


# -- the large database: 1,000,000 secrets in other environments -----------------------------


def cache_key(total: int) -> str:
    digest = hashlib.sha256(f"{total}\n".encode())
    for name in CACHE_INPUTS:
        path = REPO / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"(missing)")
    return digest.hexdigest()[:16]


def large_data_dir(total: int, log=print) -> tuple[Path, float | None]:
    """The cached data directory with ``total`` secrets in other apps; build it when missing.

    Return (directory, seconds spent seeding now, or None when it came from the cache).
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"large-{total}-{cache_key(total)}"
    if (target / "complete").exists():
        return target, None
    for stale in (*RESULTS.glob(f"large-{total}-*"), *RESULTS.glob("building-*")):
        shutil.rmtree(stale, ignore_errors=True)  # older schemas, interrupted builds
    building = RESULTS / f"building-{os.getpid()}"
    data_dir = building / "data"
    init_data_dir(data_dir)
    log(f"seeding {total:,} secrets through the domain layer (cached for later runs)...")
    started = time.perf_counter()
    seed_other_secrets(data_dir, total, log)
    seconds = time.perf_counter() - started
    (building / "complete").write_text(json.dumps({"secrets": total, "seconds": seconds}))
    building.rename(target)
    return target, seconds


def seed_other_secrets(data_dir: Path, total: int, log=print, per_env: int = 1000,
                       envs_per_app: int = 10):
    """Write ``total`` secrets: apps of ``envs_per_app`` environments of ``per_env`` secrets."""
    from phase_lite import accounts, apps
    from phase_lite import secrets as domain
    from phase_lite.audit import CLI_META

    services = open_services(data_dir)
    try:
        db = services.db
        # Random UUID keys touch pages all over the indexes; a large page cache keeps them in.
        db.execute(f"PRAGMA cache_size = -{SEED_CACHE_KIB}")
        operator = accounts.operator(services, "bench")
        written, app_number, started = 0, 0, time.perf_counter()
        while written < total:
            app_number += 1
            names = [f"env{n:02d}" for n in range(envs_per_app)]
            _, env_rows = apps.create_app(
                services, operator, {"name": f"other-{app_number:04d}", "environments": names},
                CLI_META)
            with db.transaction():
                for env_row in env_rows:
                    count = min(per_env, total - written)
                    if count <= 0:
                        break
                    entries = [_new_secret(domain, i) for i in range(count)]
                    domain.create_secrets(services, None, env_row, entries)
                    written += count
            if app_number % 10 == 0:
                rate = written / (time.perf_counter() - started)
                log(f"  {written:,} secrets ({rate:,.0f}/s)")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        services.close()


def _new_secret(domain, index):
    value = os.urandom(12 + index % 24).hex()
    comment = "seeded" if index % 3 == 0 else ""
    return domain.NewSecret(key=f"OTHER_{key_name(index)}", value=value, comment=comment)


def copy_data_dir(source: Path, target: Path):
    """Copy a cached data directory (database and master key) for one run."""
    shutil.copytree(source / "data", target)
