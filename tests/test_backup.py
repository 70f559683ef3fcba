"""`phase-lite backup` / `restore`: online, checked copies; restores that check before touching."""

import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

import support
from live import LiveServer
from support import bearer_headers
from phase_lite import keyring
from phase_lite.backup import (
    BackupError,
    create_backup,
    exclusive_lock,
    hold_serving_lock,
    restore_backup,
    verify_backup,
)
from phase_lite.cli import main
from phase_lite.config import ConfigError
from phase_lite.store import SqliteDatabase


@pytest.fixture
def seeded(services, owner):
    return support.seed_app(services, support.principal_of(services, owner), "alpha")


def cli(data_dir, *args, env=None):
    return CliRunner().invoke(main, list(args),
                              env={"PHASE_LITE_DATA_DIR": str(data_dir), **(env or {})})


def file_bytes(path):
    return {suffix: Path(f"{path}{suffix}").read_bytes()
            for suffix in ("", "-wal") if os.path.exists(f"{path}{suffix}")}


# -- backup ------------------------------------------------------------------------------------


def test_backup_is_a_private_checked_copy(tmp_path, services, seeded):
    target = tmp_path / "backups" / "one.sqlite3"
    target.parent.mkdir()
    summary = create_backup(services.db, services.keyring, target)
    assert (summary.apps, summary.environments, summary.secrets) == (1, 2, 4)
    assert summary.fields > 0
    assert target.stat().st_mode & 0o777 == 0o600
    assert os.listdir(target.parent) == ["one.sqlite3"]  # no partial file left behind
    with sqlite3.connect(target) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert verify_backup(target, services.keyring) == summary


@pytest.mark.parametrize("existing", [b"", b"something"])
def test_backup_never_overwrites(tmp_path, services, seeded, existing):
    target = tmp_path / "exists.sqlite3"
    target.write_bytes(existing)
    with pytest.raises(BackupError, match="already exists"):
        create_backup(services.db, services.keyring, target)
    assert target.read_bytes() == existing


def test_backup_is_consistent_while_writes_go_on(tmp_path, config, owner, services, seeded):
    """Writers keep committing during the backup; the copy is one consistent state."""
    stop = threading.Event()
    errors = []

    def writer():
        db = SqliteDatabase(config.database)
        try:
            while not stop.is_set():
                with db.transaction():
                    db.execute("INSERT INTO audit_events (created_at, actor_type, action,"
                               " resource_type) VALUES ('2000-01-01T00:00:00.000000Z', 'cli',"
                               " 'load', 'test')")
                    db.execute("UPDATE meta SET value = value + 1 WHERE key = 'load_counter'")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            db.close()

    with services.db.transaction():
        services.db.execute("INSERT INTO meta (key, value) VALUES ('load_counter', 0)")
    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        targets = [tmp_path / f"b{n}.sqlite3" for n in range(3)]
        for target in targets:
            create_backup(services.db, services.keyring, target)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not errors
    for target in targets:
        with sqlite3.connect(target) as conn:
            counter = int(conn.execute(
                "SELECT value FROM meta WHERE key = 'load_counter'").fetchone()[0])
            rows = conn.execute(
                "SELECT count(*) FROM audit_events WHERE action = 'load'").fetchone()[0]
        assert counter == rows  # both writes of every transaction, or neither


# -- verification ------------------------------------------------------------------------------


def test_verify_refuses_another_master_key(tmp_path, services, seeded):
    target = tmp_path / "b.sqlite3"
    create_backup(services.db, services.keyring, target)
    stranger = keyring.Keyring([keyring.generate_master_key()])
    with pytest.raises(BackupError, match="made with another master key"):
        verify_backup(target, stranger)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "ciphertext"])
def test_verify_refuses_a_damaged_file(tmp_path, services, seeded, damage):
    target = tmp_path / "b.sqlite3"
    create_backup(services.db, services.keyring, target)
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[: 4096 * 3])
    elif damage == "garbage":
        target.write_bytes(b"not a database" * 100)
    else:
        with sqlite3.connect(target) as conn:
            secret_id, blob = conn.execute("SELECT id, value_enc FROM secrets LIMIT 1").fetchone()
            conn.execute("UPDATE secrets SET value_enc = ? WHERE id = ?",
                         (blob[:-1] + bytes([blob[-1] ^ 1]), secret_id))
        conn.close()
    with pytest.raises(BackupError) as caught:
        verify_backup(target, services.keyring)
    assert "\n" not in str(caught.value)
    if damage == "ciphertext":
        assert f"secrets.value of row {secret_id}" in str(caught.value)


def test_verify_refuses_a_database_that_is_not_phase_lite(tmp_path, services):
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(BackupError):
        verify_backup(other, services.keyring)


def test_verify_never_writes_to_the_backup(tmp_path, services, seeded):
    target = tmp_path / "b.sqlite3"
    create_backup(services.db, services.keyring, target)
    before = target.read_bytes()
    verify_backup(target, services.keyring)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["b.sqlite3", "data"]


# -- restore -----------------------------------------------------------------------------------


def test_restore_round_trip_brings_back_secrets_and_tokens(tmp_path, config, owner, services,
                                                          seeded, sa_token):
    target = tmp_path / "b.sqlite3"
    create_backup(services.db, services.keyring, target)
    principal = support.principal_of(services, owner)
    later = support.seed_app(services, principal, "later")
    assert support.read_everything(services, principal) == seeded | later
    services.close()

    result = restore_backup(config, services.keyring, target)

    assert not result.was_in_use and result.set_aside is None
    assert support.read_with_fresh_app(config, owner) == seeded
    for issued in (owner, sa_token):
        assert cli(config.data_dir, "apps", "list").exit_code == 0
        db = SqliteDatabase(config.database)
        from phase_lite.auth import Authenticator
        assert Authenticator(db).authenticate(f"Bearer {issued.bearer_token}")
        db.close()
    db = SqliteDatabase(config.database)
    event = db.one("SELECT * FROM audit_events ORDER BY id DESC LIMIT 1")
    db.close()
    assert (event["action"], event["resource_type"]) == ("restore", "database")


def test_restore_refuses_another_master_key_and_touches_nothing(tmp_path, config, owner,
                                                                services, seeded):
    target = tmp_path / "b.sqlite3"
    create_backup(services.db, services.keyring, target)
    services.close()
    before = file_bytes(config.database)
    stranger = keyring.Keyring([keyring.generate_master_key()])
    with pytest.raises(BackupError, match="another master key"):
        restore_backup(config, stranger, target)
    assert file_bytes(config.database) == before


def test_restore_refuses_a_database_in_use_unless_forced(tmp_path, config, owner, services,
                                                         seeded):
    target = tmp_path / "b.sqlite3"
    create_backup(services.db, services.keyring, target)
    support.seed_app(services, support.principal_of(services, owner), "later")
    lock = hold_serving_lock(config)
    try:
        with pytest.raises(BackupError, match="in use by a running phase-lite server"):
            restore_backup(config, services.keyring, target)
        assert support.read_with_fresh_app(config, owner) != seeded
        result = restore_backup(config, services.keyring, target, force=True)
        assert result.was_in_use
    finally:
        lock.close()
    assert support.read_with_fresh_app(config, owner) == seeded


def test_a_server_does_not_start_during_a_restore(config, owner):
    with exclusive_lock(config):
        with pytest.raises(ConfigError, match="a restore or key rotation is running"):
            hold_serving_lock(config)
    hold_serving_lock(config).close()


def test_servers_share_the_lock(config, owner):
    first, second = hold_serving_lock(config), hold_serving_lock(config)
    with pytest.raises(BackupError):
        with exclusive_lock(config):
            pass
    first.close()
    second.close()
    with exclusive_lock(config) as in_use:
        assert not in_use


def test_restore_into_an_empty_data_directory(tmp_path, config, owner, services, seeded):
    target = tmp_path / "b.sqlite3"
    create_backup(services.db, services.keyring, target)
    services.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{config.database}{suffix}"):
            os.unlink(f"{config.database}{suffix}")
    restore_backup(config, services.keyring, target)
    assert config.database.stat().st_mode & 0o777 == 0o600
    assert support.read_with_fresh_app(config, owner) == seeded


def test_restore_sets_a_damaged_database_aside(tmp_path, config, owner, services, seeded):
    target = tmp_path / "b.sqlite3"
    create_backup(services.db, services.keyring, target)
    services.close()
    config.database.write_bytes(b"\x00" * 8192)
    result = restore_backup(config, services.keyring, target)
    assert result.set_aside is not None
    assert result.set_aside.read_bytes() == b"\x00" * 8192
    assert support.read_with_fresh_app(config, owner) == seeded


# -- the commands ------------------------------------------------------------------------------


def test_cli_backup_and_restore(tmp_path, config, owner, services, seeded):
    target = tmp_path / "cli.sqlite3"
    result = cli(config.data_dir, "backup", str(target), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["path"] == str(target) and payload["secrets"] == 4
    again = cli(config.data_dir, "backup", str(target))
    assert again.exit_code == 1
    assert again.output.strip().splitlines() == [
        f"Error: {target} already exists; choose a new file name"]
    support.seed_app(services, support.principal_of(services, owner), "later")
    services.close()

    restored = cli(config.data_dir, "restore", "--yes", str(target))
    assert restored.exit_code == 0, restored.output
    assert restored.output.startswith("Restored 1 apps, 2 environments and 4 secrets")
    assert support.read_with_fresh_app(config, owner) == seeded


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_a_backup_made_before_a_master_key_rotation_restores_with_the_retired_key(
        tmp_path, config, owner, services, seeded, run):
    target = tmp_path / "before-rotation.sqlite3"
    run("backup", str(target))
    services.close()
    old_line = config.master_key_file.read_text().split()[0]
    run("keys", "rotate-master")
    retired, = config.retired_key_files()
    old_id = keyring.master_key_id(keyring.parse_master_key(old_line))

    restored = run("restore", "--yes", str(target))
    assert "Restored 1 apps, 2 environments and 4 secrets" in restored.output
    assert f"retired key {old_id} kept in {retired}" in restored.output
    payload = json.loads(run("restore", "--yes", str(target), "--json").output)
    assert (payload["retiredKeyId"], payload["retiredKeyFile"]) == (old_id, str(retired))
    # The current key alone opens the restored database: the retired file is not needed.
    retired.rename(tmp_path / "retired-elsewhere")
    assert support.read_with_fresh_app(config, owner) == seeded
    event = json.loads(run("audit", "list", "--json", "--limit", "1").output)[0]
    assert (event["action"], event["details"]["retiredKeyId"]) == ("restore", old_id)
    again = run("restore", "--yes", str(target), ok=False)
    assert again.exit_code == 1 and old_id in again.output
    assert len(again.output.strip().splitlines()) == 1


def test_cli_restore_in_use_is_one_line_and_force_goes_on(tmp_path, config, owner, services,
                                                          seeded):
    target = tmp_path / "cli.sqlite3"
    assert cli(config.data_dir, "backup", str(target)).exit_code == 0
    lock = hold_serving_lock(config)
    try:
        refused = cli(config.data_dir, "restore", "--yes", str(target))
        forced = cli(config.data_dir, "restore", "--yes", str(target), "--force")
    finally:
        lock.close()
    assert refused.exit_code == 1
    assert len(refused.output.strip().splitlines()) == 1
    assert "stop it before the restore, or pass --force" in refused.output
    assert forced.exit_code == 0, forced.output
    assert "restart it now" in forced.output


def test_restore_refuses_the_database_itself(config, owner, services):
    with pytest.raises(BackupError, match="is the database itself"):
        restore_backup(config, services.keyring, config.database)


def test_cli_restore_of_a_missing_file(tmp_path, config, owner):
    result = cli(config.data_dir, "restore", "--yes", str(tmp_path / "nope.sqlite3"))
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {tmp_path / 'nope.sqlite3'} is not a file"


# -- against a served process ------------------------------------------------------------------


@pytest.mark.slow
def test_backup_while_serving_and_restore_round_trip(tmp_path, config, owner, demo, sa_token):
    app_row, _ = demo
    server = LiveServer(config.data_dir).start()
    url = f"{server.url}/v1/secrets/?app_id={app_row['id']}&env=Development"
    headers = bearer_headers(owner)

    def write(prefix, count):
        written = {}
        for number in range(count):
            key, value = f"{prefix}_{number}", f"{prefix}-value-{number}"
            response = requests.post(url, headers=headers, timeout=10,
                                     json={"secrets": [{"key": key, "value": value}]})
            assert response.status_code == 200, response.text
            written[key] = value
        return written

    def served():
        response = requests.get(url, headers=headers, timeout=10)
        assert response.status_code == 200
        return {s["key"]: s["value"] for s in response.json()}

    try:
        before = write("BEFORE", 20)
        during = threading.Thread(target=write, args=("DURING", 20))
        during.start()
        target = tmp_path / "live.sqlite3"
        made = cli(config.data_dir, "backup", str(target))
        during.join(60)
        assert made.exit_code == 0, made.output
        after = write("AFTER", 5)
        assert served().items() >= (before | after).items()

        refused = cli(config.data_dir, "restore", "--yes", str(target))
        assert refused.exit_code == 1
        assert "in use by a running phase-lite server" in refused.output
    finally:
        server.stop()

    restored = cli(config.data_dir, "restore", "--yes", str(target))
    assert restored.exit_code == 0, restored.output
    server.start()  # same port, so ``url`` still points at it
    try:
        state = served()
        assert state.items() >= before.items()
        assert not set(after) & set(state)
        sa_read = requests.get(url, headers=bearer_headers(sa_token), timeout=10)
        assert sa_read.status_code == 200
        assert {s["key"]: s["value"] for s in sa_read.json()} == state
    finally:
        server.stop()
