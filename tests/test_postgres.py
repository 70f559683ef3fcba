"""What only the PostgreSQL backend has: its configuration, migrations from several nodes at
once, the cluster generation, the advisory locks, and backups that move between the backends."""

import dataclasses
import importlib.util
import threading
import time

import pytest

from phase_lite import audit, backup, migrations
from phase_lite.app import create_app, init_data_dir
from phase_lite.config import ConfigError, load_config
from phase_lite.store.postgres import MIGRATIONS_TABLE, RATE_TABLE, PostgresDatabase
import support
from support import csrf_of, principal_of, read_with_fresh_app, seed_app


@pytest.fixture
def backend():
    return "postgresql"


def test_a_postgresql_url_without_psycopg_says_what_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "psycopg" else real(name, *args))
    with pytest.raises(ConfigError) as raised:
        load_config({"PHASE_LITE_DATA_DIR": str(tmp_path),
                     "PHASE_LITE_DATABASE_URL": "postgresql://u:secret@db/phase"})
    assert str(raised.value) == ("PHASE_LITE_DATABASE_URL: PostgreSQL needs psycopg: "
                                 "pip install 'phase_lite[postgres]'")


def test_only_postgresql_urls_are_accepted(tmp_path):
    with pytest.raises(ConfigError, match="expected a postgresql:// URL") as raised:
        load_config({"PHASE_LITE_DATA_DIR": str(tmp_path),
                     "PHASE_LITE_DATABASE_URL": "mysql://u:secret@db/phase"})
    assert "secret" not in str(raised.value)


def test_nodes_starting_together_migrate_once(postgres_server):
    url = postgres_server.create_database("migrate_together")
    nodes = [PostgresDatabase(url) for _ in range(4)]
    errors = []

    def start(db):
        try:
            db.migrate()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(db,)) for db in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    names = [row[0] for row in nodes[0].all(f"SELECT name FROM {MIGRATIONS_TABLE}")]
    assert names == [migration.name for migration in migrations.migrations._migrations]
    assert nodes[0].scalar("SELECT count(*) FROM apps") == 0
    for db in nodes:
        db.close()


def test_bookkeeping_writes_leave_the_generation_alone(client, services, db, sa_headers, demo):
    url = f"/v1/secrets/?app_id={demo[0]['id']}&env=Development"
    assert client.get(url, headers=sa_headers).status_code == 200
    services.read_log.flush()
    before = db.generation()
    assert client.get(url, headers=sa_headers).status_code == 200  # read audit + last_used_at
    services.read_log.flush()
    assert db.scalar("SELECT count(*) FROM audit_events WHERE action = 'secrets.read'") == 2
    assert db.generation() == before
    response = client.post(url, headers=sa_headers, json={"secrets": [{"key": "K", "value": "v"}]})
    assert response.status_code == 200
    assert db.generation() == before + 1


def test_writers_wait_for_each_other_across_connections(config, owner):
    first, second = PostgresDatabase(config.database_url), PostgresDatabase(config.database_url)
    order = []

    def write_second():
        with second.transaction():
            order.append("second began")

    try:
        with first.transaction():
            thread = threading.Thread(target=write_second)
            thread.start()
            time.sleep(0.3)
            order.append("first commits")
        thread.join()
    finally:
        first.close()
        second.close()
    assert order == ["first commits", "second began"]


# -- the serving lock --------------------------------------------------------------------------


def test_a_serving_node_keeps_restores_and_rotations_out(config, owner):
    serving = [backup.hold_serving_lock(config), backup.hold_serving_lock(config)]  # two nodes
    with pytest.raises(backup.BackupError, match="in use by a running phase-lite server"):
        with backup.exclusive_lock(config, action="key rotation"):
            pass
    with backup.exclusive_lock(config, force=True) as in_use:
        assert in_use
    for lock in serving:
        lock.close()
    with backup.exclusive_lock(config) as in_use:
        assert not in_use
        with pytest.raises(ConfigError, match="a restore or key rotation is running"):
            backup.hold_serving_lock(config)
    backup.hold_serving_lock(config).close()


# -- moving between the backends ---------------------------------------------------------------


def listings(config, issued):
    """Every environment's REST answer, as bytes, through a fresh app."""
    flask_app = create_app(config)
    try:
        client = flask_app.test_client()
        headers = {"Authorization": f"Bearer {issued.bearer_token}"}
        found = {}
        for app in client.get("/v1/apps/", headers=headers).json["data"]:
            envs = client.get(f"/v1/environments/?app_id={app['id']}", headers=headers)
            for env in envs.json["data"]:
                url = f"/v1/secrets/?app_id={app['id']}&env={env['name']}"
                found[app["name"], env["name"]] = client.get(url, headers=headers).data
        return found
    finally:
        flask_app.extensions["phase_lite"].close()


def test_a_backup_moves_a_deployment_to_sqlite_and_back(tmp_path, config, owner, services,
                                                        postgres_server):
    principal = principal_of(services, owner)
    expected = seed_app(services, principal, "alpha") | seed_app(services, principal, "beta")
    on_postgres = listings(config, owner)
    backup_file = tmp_path / "from-postgres.sqlite3"
    summary = backup.create_backup(services.db, services.keyring, backup_file)
    assert (summary.apps, summary.environments, summary.secrets) == (2, 4, 8)
    assert backup_file.stat().st_mode & 0o777 == 0o600

    sqlite_config = load_config({"PHASE_LITE_DATA_DIR": str(config.data_dir),
                                 "PHASE_LITE_DATABASE": str(tmp_path / "moved.sqlite3")})
    backup.restore_backup(sqlite_config, services.keyring, backup_file)
    assert read_with_fresh_app(sqlite_config, owner) == expected
    assert listings(sqlite_config, owner) == on_postgres  # same ids, times, order

    second_backup = tmp_path / "from-sqlite.sqlite3"
    flask_app = create_app(sqlite_config)
    try:
        sqlite_services = flask_app.extensions["phase_lite"]
        backup.create_backup(sqlite_services.db, sqlite_services.keyring, second_backup)
    finally:
        flask_app.extensions["phase_lite"].close()
    url = postgres_server.create_database("moved_back")
    back_config = load_config({"PHASE_LITE_DATA_DIR": str(config.data_dir),
                               "PHASE_LITE_DATABASE_URL": url})
    assert backup.restore_backup(back_config, services.keyring, second_backup).kept is None  # empty
    assert read_with_fresh_app(back_config, owner) == expected
    kept = backup.restore_backup(back_config, services.keyring, second_backup).kept
    assert kept.stat().st_mode & 0o777 == 0o600
    assert backup.verify_backup(kept, services.keyring).secrets == 8  # what was replaced, checked
    assert listings(back_config, owner) == on_postgres

    # The restored database goes on: new rows come after the restored ones.
    flask_app = create_app(back_config)
    try:
        client = flask_app.test_client()
        headers = {"Authorization": f"Bearer {owner.bearer_token}"}
        app_id = client.get("/v1/apps/", headers=headers).json["data"][0]["id"]
        url = f"/v1/secrets/?app_id={app_id}&env=Development"
        response = client.post(url, headers=headers,
                               json={"secrets": [{"key": "NEW", "value": "n"}]})
        assert response.status_code == 200, response.json
        assert [item["key"] for item in client.get(url, headers=headers).json][-1] == "NEW"
    finally:
        flask_app.extensions["phase_lite"].close()


def test_a_restore_into_postgresql_checks_the_key_first(tmp_path, config, owner, services):
    seed_app(services, principal_of(services, owner), "alpha")
    backup_file = tmp_path / "b.sqlite3"
    backup.create_backup(services.db, services.keyring, backup_file)
    other = tmp_path / "other"
    other.mkdir()
    stranger = load_config({"PHASE_LITE_DATA_DIR": str(other)})
    init_data_dir(stranger, "someone@example.com")
    from phase_lite.app import open_keyring

    with pytest.raises(backup.BackupError, match="another master key"):
        backup.restore_backup(config, open_keyring(stranger), backup_file)
    assert services.db.scalar("SELECT count(*) FROM apps") == 1


def test_retention_prunes_on_one_node_at_a_time(config, owner, db):
    other = PostgresDatabase(config.database_url)
    try:
        with other.transaction(bookkeeping=True):
            assert other.take_turn("audit retention")
            assert audit.prune(db, 1) == 0  # that node is pruning: this one does not
            assert db.scalar("SELECT count(*) FROM audit_events WHERE action = 'prune'") == 0
    finally:
        other.close()
    db.execute("INSERT INTO audit_events (created_at, actor_type, action, resource_type)"
               " VALUES ('2000-01-01T00:00:00.000000Z', 'cli', 'old', 'x')")
    assert audit.prune(db, 1) == 1


# -- rate limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("scope, statuses", [
    ("node", [200, 200, 200, 200, 429, 429]),  # each node counts its own requests
    ("cluster", [200, 200, 429, 429, 429, 429]),  # one window for the account on every node
])
def test_the_rate_limit_is_per_node_unless_shared(config, owner, sa_headers, demo, scope,
                                                  statuses):
    shared = dataclasses.replace(config, rate_limit=(2, 60), rate_limit_scope=scope)
    nodes = [create_app(shared), create_app(shared)]
    try:
        url = f"/v1/secrets/?app_id={demo[0]['id']}&env=Development"
        clients = [node.test_client() for node in nodes]
        seen = [clients[n].get(url, headers=sa_headers) for n in (0, 1, 0, 1, 0, 1)]
    finally:
        for node in nodes:
            node.extensions["phase_lite"].close()
    assert [response.status_code for response in seen] == statuses
    refused = seen[statuses.index(429)]
    assert refused.json["error"].startswith("Request was throttled. Expected available in ")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


@pytest.mark.parametrize("scope, statuses", [
    ("node", [401] * 20),  # each node allows 10 attempts per email
    ("cluster", [401] * 10 + [429] * 10),
])
def test_console_sign_in_attempts_are_counted_per_node_unless_shared(config, owner, scope,
                                                                     statuses):
    shared = dataclasses.replace(config, rate_limit_scope=scope)
    nodes = [create_app(shared), create_app(shared)]
    try:
        clients = [node.test_client() for node in nodes]
        seen = []
        for attempt in range(20):
            client = clients[attempt % 2]
            token = csrf_of(client.get("/console/sign-in"))
            seen.append(client.post("/console/sign-in", data={
                "email": "Owner@Example.com ", "password": "not the password",
                "csrf_token": token}).status_code)
        rows = nodes[0].extensions["phase_lite"].db.all(f"SELECT key FROM {RATE_TABLE}")
    finally:
        for node in nodes:
            node.extensions["phase_lite"].close()
    assert seen == statuses
    keys = sorted(row["key"] for row in rows)
    if scope == "cluster":  # the address, and the email as its hash only
        assert keys[0] == "sign-in:address:127.0.0.1"
        assert keys[1].startswith("sign-in:email:") and "example" not in keys[1].lower()
    assert len(keys) == (2 if scope == "cluster" else 0)


def test_each_kind_of_shared_window_is_swept_with_its_own_duration(db):
    db.count_request("api:user_1", 5, 60)
    db.count_request("sign-in:address:10.0.0.1", 20, 900)

    def keys():
        return sorted(row["key"] for row in db.all(f"SELECT key FROM {RATE_TABLE}"))

    db.forget_idle_requests(-1, "api:")  # every api: window is idle by then
    assert keys() == ["sign-in:address:10.0.0.1"]
    db.forget_idle_requests(900, "sign-in:")  # not idle for that long
    assert keys() == ["sign-in:address:10.0.0.1"]
    db.forget_idle_requests(-1, "sign-in:")
    assert keys() == []


def test_a_shared_sign_in_that_succeeded_is_taken_back(config, owner):
    shared = dataclasses.replace(config, rate_limit_scope="cluster")
    node = create_app(shared)
    try:
        db = node.extensions["phase_lite"].db
        support.set_console_password(node.extensions["phase_lite"], "owner@example.com",
                                     support.CONSOLE_PASSWORD)
        for _ in range(12):  # more than an email's ten attempts, each one right
            client = node.test_client()
            token = csrf_of(client.get("/console/sign-in"))
            assert client.post("/console/sign-in", data={
                "email": "owner@example.com", "password": support.CONSOLE_PASSWORD,
                "csrf_token": token}).status_code == 303
        hits = [len(row["hits"]) for row in db.all(f"SELECT hits FROM {RATE_TABLE}")]
        assert hits == [0, 0]
        db.forget_idle_requests(900, "sign-in:")  # an emptied window is swept at once
        assert db.all(f"SELECT key FROM {RATE_TABLE}") == []
    finally:
        node.extensions["phase_lite"].close()


def test_a_cluster_rate_limit_needs_postgresql(tmp_path):
    with pytest.raises(ConfigError, match="cluster needs PHASE_LITE_DATABASE_URL"):
        load_config({"PHASE_LITE_DATA_DIR": str(tmp_path), "RATE_LIMIT_DEFAULT": "5/minute",
                     "PHASE_LITE_RATE_LIMIT_SCOPE": "cluster"})


def test_init_never_makes_a_new_key_for_an_initialised_database(config, owner):
    config.master_key_file.rename(config.master_key_file.with_name("kept.key"))
    with pytest.raises(ConfigError, match="is missing but the database postgresql:///"
                                          "phase_lite_test exists"):
        init_data_dir(config, "owner@example.com")
    assert not config.master_key_file.exists()


def test_a_write_joining_a_bookkeeping_transaction_moves_the_generation(db, owner):
    before = db.generation()
    with db.transaction(bookkeeping=True):
        db.execute("UPDATE tokens SET last_used_at = created_at")
        with db.transaction():
            db.execute("UPDATE organisations SET name = name || '.'")
    assert db.generation() == before + 1


def test_an_unreachable_server_is_one_line_without_the_password(tmp_path):
    from click.testing import CliRunner

    from phase_lite.cli import main

    result = CliRunner().invoke(main, ["apps", "list"], env={
        "PHASE_LITE_DATA_DIR": str(tmp_path), "PHASE_LITE_MASTER_KEY": "A" * 43 + "=",
        "PHASE_LITE_DATABASE_URL": "postgresql://phase:hunter2@127.0.0.1:1/phase"})
    assert result.exit_code != 0
    assert "Connection refused" in result.output and "hunter2" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_node_with_its_key_in_the_environment_needs_no_data_directory(tmp_path, config,
                                                                        owner):
    from live import free_port
    from phase_lite import serve

    key = config.master_key_file.read_text().strip()
    node = load_config({"PHASE_LITE_DATA_DIR": str(tmp_path / "absent"),
                        "PHASE_LITE_MASTER_KEY": key,
                        "PHASE_LITE_LISTEN": f"127.0.0.1:{free_port()}",
                        "PHASE_LITE_DATABASE_URL": config.database_url})
    serving = serve.start(node)
    try:
        assert not (tmp_path / "absent").exists()
    finally:
        serving.app.extensions["phase_lite"].close()
        serving.server.close()
        serving.lock.close()
