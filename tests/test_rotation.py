"""Key rotation: a new master key (data keys re-wrapped) and a new app data key (fields
re-encrypted), each in one transaction, leaving every secret readable and every token valid."""

import json

import pytest
import requests
from click.testing import CliRunner

import support
from live import LiveServer
from support import bearer_headers
from phase_lite import keyring, rotation
from phase_lite.app import create_app
from phase_lite.backup import hold_serving_lock
from phase_lite.cli import main
from phase_lite.config import ConfigError, load_config
from phase_lite.store import ciphertexts as cipher_store
from phase_lite.store import meta as meta_store
from phase_lite.store import SqliteDatabase
from phase_lite.vault import DecryptionFailed


@pytest.fixture
def seeded(services, owner):
    principal = support.principal_of(services, owner)
    expected = support.seed_app(services, principal, "alpha")
    expected |= support.seed_app(services, principal, "beta", ["Staging"])
    assert support.read_everything(services, principal) == expected
    return expected


def ciphertexts(db, app_name):
    app_id = db.scalar("SELECT id FROM apps WHERE name = ?", (app_name,))
    return {(table, column, row_id): blob
            for table, column, _, row_id, blob in cipher_store.app_ciphertexts(db, app_id)}


def wrapped_keys(db):
    return {row["name"]: row["wrapped_data_key"] for row in db.all("SELECT * FROM apps")}


def key_lines(config):
    return config.master_key_file.read_text().split()


def cli(data_dir, *args, env=None):
    return CliRunner().invoke(main, list(args),
                              env={"PHASE_LITE_DATA_DIR": str(data_dir), **(env or {})})


# -- rotate-app --------------------------------------------------------------------------------


def test_rotate_app_re_encrypts_every_field_of_that_app_only(config, owner, services, seeded):
    db = services.db
    before_demo, before_other = ciphertexts(db, "alpha"), ciphertexts(db, "beta")
    keys_before = wrapped_keys(db)
    tables = {table for table, _, _ in before_demo}
    assert tables == {"environments", "secrets", "secret_versions", "personal_secrets"}
    app_id = db.scalar("SELECT id FROM apps WHERE name = 'alpha'")
    old_data_key = services.vault.data_key(app_id)

    count = rotation.rotate_app_key(db, services.vault, app_id)

    after_demo = ciphertexts(db, "alpha")
    assert count == len(before_demo) == len(after_demo)
    assert all(after_demo[ref] != blob for ref, blob in before_demo.items())
    assert ciphertexts(db, "beta") == before_other
    keys_after = wrapped_keys(db)
    assert keys_after["alpha"] != keys_before["alpha"]
    assert keys_after["beta"] == keys_before["beta"]
    (table, _, row_id), blob = next(iter(after_demo.items()))
    with pytest.raises(keyring.KeyringError):
        keyring.decrypt_text(old_data_key, blob, keyring.field_aad(table, row_id, "seed"))
    assert support.read_everything(services, support.principal_of(services, owner)) == seeded
    assert support.read_with_fresh_app(config, owner) == seeded


def test_rotate_app_is_all_or_nothing(config, owner, services, seeded):
    db = services.db
    app_id = db.scalar("SELECT id FROM apps WHERE name = 'alpha'")
    victim = db.one("SELECT s.id, s.comment_enc FROM secrets s JOIN environments e"
                    " ON e.id = s.environment_id WHERE e.app_id = ? LIMIT 1", (app_id,))
    damaged = bytearray(victim["comment_enc"])
    damaged[-1] ^= 1
    db.execute("UPDATE secrets SET comment_enc = ? WHERE id = ?", (bytes(damaged), victim["id"]))
    before, keys_before = ciphertexts(db, "alpha"), wrapped_keys(db)

    with pytest.raises(DecryptionFailed) as caught:
        rotation.rotate_app_key(db, services.vault, app_id)

    assert (caught.value.table, caught.value.row_id, caught.value.field) == (
        "secrets", victim["id"], "comment")
    assert ciphertexts(db, "alpha") == before
    assert wrapped_keys(db) == keys_before


def test_rotate_app_is_audited(services, seeded):
    app_id = services.db.scalar("SELECT id FROM apps WHERE name = 'beta'")
    count = rotation.rotate_app_key(services.db, services.vault, app_id)
    event = services.db.one("SELECT * FROM audit_events ORDER BY id DESC LIMIT 1")
    assert (event["action"], event["resource_id"], event["app_id"]) == (
        "rotate_data_key", app_id, app_id)
    assert json.loads(event["details"]) == {"fields": count}


def test_cli_rotate_app_by_name_keeps_tokens_and_secrets(config, owner, data_dir, services,
                                                         seeded, sa_token, client):
    result = cli(data_dir, "keys", "rotate-app", "alpha", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["name"] == "alpha" and payload["encryptedFields"] > 0
    assert support.read_with_fresh_app(config, owner) == seeded
    for issued in (owner, sa_token):
        assert services.auth.authenticate(bearer_headers(issued)["Authorization"])


def test_cli_rotate_app_unknown_app_is_one_line(data_dir, owner):
    result = cli(data_dir, "keys", "rotate-app", "nope")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: No app with the name or id 'nope' (")


# -- rotate-master -----------------------------------------------------------------------------


def test_rotate_master_rewraps_every_data_key_and_leaves_one_key_line(config, owner, services,
                                                                      seeded, sa_token):
    db = services.db
    old_line, = key_lines(config)
    old_id = keyring.master_key_id(keyring.parse_master_key(old_line))
    fields_before = ciphertexts(db, "alpha") | ciphertexts(db, "beta")
    keys_before = wrapped_keys(db)

    result = rotation.rotate_master_key(config, db, services.vault)

    new_line, = key_lines(config)
    assert new_line != old_line
    assert config.master_key_file.stat().st_mode & 0o777 == 0o600
    new_ring = keyring.Keyring([keyring.parse_master_key(new_line)])
    assert result.previous_key_ids == [old_id]
    assert result.new_key_id == new_ring.current_key_id
    assert result.apps == len(keys_before) == 3  # alpha, beta and the fixture's demo
    assert result.key_file == config.master_key_file
    assert result.new_key is None
    for name, wrapped in wrapped_keys(db).items():
        assert wrapped != keys_before[name]
        assert new_ring.wrapped_key_id(wrapped) == new_ring.current_key_id
    assert new_ring.verify_check_blob(meta_store.get_blob(db, "master_key_check"))
    # Data keys were re-wrapped, not changed: the fields are exactly as they were.
    assert ciphertexts(db, "alpha") | ciphertexts(db, "beta") == fields_before
    assert support.read_with_fresh_app(config, owner) == seeded
    fresh = create_app(config)
    try:
        alpha = db.scalar("SELECT id FROM apps WHERE name = 'alpha'")
        demo = db.scalar("SELECT id FROM apps WHERE name = 'demo'")
        for issued, app_id in ((owner, alpha), (sa_token, demo)):
            response = fresh.test_client().get(
                f"/v1/secrets/?app_id={app_id}&env=Development", headers=bearer_headers(issued))
            assert response.status_code == 200
        listed = fresh.test_client().get(f"/v1/secrets/?app_id={alpha}&env=Development",
                                         headers=bearer_headers(owner)).get_json()
        assert {s["key"]: s["value"] for s in listed} == {
            key: value for (app, env, _, key), (value, _, _) in seeded.items()
            if (app, env) == ("alpha", "Development")}
    finally:
        fresh.extensions["phase_lite"].close()


def test_previous_master_key_no_longer_opens_the_database(config, owner, services, seeded):
    old_line, = key_lines(config)
    rotation.rotate_master_key(config, services.db, services.vault)
    stale = load_config({"PHASE_LITE_DATA_DIR": str(config.data_dir),
                         "PHASE_LITE_MASTER_KEY": old_line})
    with pytest.raises(ConfigError) as caught:
        create_app(stale)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("PHASE_LITE_MASTER_KEY: this master key does not match")
    assert old_line not in message


def test_key_file_with_both_keys_opens_before_and_after_the_commit(config, owner, services,
                                                                  seeded):
    """The two states a rotation can stop in: [new, old] with the database on either key."""
    old_line, = key_lines(config)
    fresh_line = keyring.encode_master_key(keyring.generate_master_key())
    config.master_key_file.write_text(f"{fresh_line}\n{old_line}\n")  # before the commit
    assert support.read_with_fresh_app(config, owner) == seeded

    config.master_key_file.write_text(f"{old_line}\n")
    rotation.rotate_master_key(config, services.db, services.vault)
    new_line, = key_lines(config)
    config.master_key_file.write_text(f"{new_line}\n{old_line}\n")  # after, old line not dropped
    assert support.read_with_fresh_app(config, owner) == seeded

    rotation.rotate_master_key(config, services.db, services.vault)  # cleans up
    assert len(key_lines(config)) == 1
    assert support.read_with_fresh_app(config, owner) == seeded


def test_failed_rotate_master_changes_nothing(config, owner, services, seeded):
    db = services.db
    old_lines = key_lines(config)
    app_id = db.scalar("SELECT id FROM apps WHERE name = 'beta'")
    wrapped = bytearray(db.scalar("SELECT wrapped_data_key FROM apps WHERE id = ?", (app_id,)))
    wrapped[-1] ^= 1
    db.execute("UPDATE apps SET wrapped_data_key = ? WHERE id = ?", (bytes(wrapped), app_id))
    keys_before = wrapped_keys(db)
    check_before = meta_store.get(db, "master_key_check")

    with pytest.raises(rotation.RotationError) as caught:
        rotation.rotate_master_key(config, db, services.vault)

    assert "nothing was changed" in str(caught.value)
    assert key_lines(config) == old_lines
    assert wrapped_keys(db) == keys_before
    assert meta_store.get(db, "master_key_check") == check_before


def test_rotate_master_from_environment_publishes_the_key_before_changing_anything(
        data_dir, owner):
    key_file = data_dir / "master.key"
    old_line = key_file.read_text().strip()
    key_file.unlink()
    config = load_config({"PHASE_LITE_DATA_DIR": str(data_dir),
                          "PHASE_LITE_MASTER_KEY": old_line})
    flask_app = create_app(config)
    services = flask_app.extensions["phase_lite"]
    seeded = support.seed_app(services, support.principal_of(services, owner), "alpha")
    published = []

    def publish(new_key):
        # At this moment the database still opens with the old key only.
        probe = SqliteDatabase(config.database)
        blob = meta_store.get_blob(probe, "master_key_check")
        probe.close()
        assert keyring.Keyring([keyring.parse_master_key(old_line)]).verify_check_blob(blob)
        published.append(new_key)

    result = rotation.rotate_master_key(config, services.db, services.vault, publish=publish)
    services.close()

    assert published == [result.new_key]
    assert result.key_file is None
    assert not key_file.exists()
    new_config = load_config({"PHASE_LITE_DATA_DIR": str(data_dir),
                              "PHASE_LITE_MASTER_KEY": result.new_key})
    assert support.read_with_fresh_app(new_config, owner) == seeded
    with pytest.raises(ConfigError):
        create_app(config)


def test_cli_rotate_master_says_where_the_key_went(data_dir, config, owner, seeded):
    result = cli(data_dir, "keys", "rotate-master")
    assert result.exit_code == 0, result.output
    new_line, = key_lines(config)
    assert str(config.master_key_file) in result.output
    assert new_line not in result.output  # the file holds it; it is not printed
    assert support.read_with_fresh_app(config, owner) == seeded


def test_rotate_master_keeps_the_retired_key_in_a_private_file_and_warns_first(
        data_dir, config, owner, seeded):
    old_line, = key_lines(config)
    result = cli(data_dir, "keys", "rotate-master")
    assert result.exit_code == 0, result.output
    retired, = config.retired_key_files()
    assert retired.parent == config.master_key_file.parent
    assert retired.name.startswith("master.key.retired-20")
    assert retired.read_text().split() == [old_line]
    assert retired.stat().st_mode & 0o777 == 0o600
    warning = result.output.index("Rotating the master key")
    assert warning < result.output.index("Rotated the master key")
    assert "master.key.retired-" in result.output[warning:result.output.index("Rotated")]
    assert str(retired) in result.output
    assert old_line not in result.output
    assert cli(data_dir, "keys", "rotate-master").exit_code == 0
    newest, oldest = config.retired_key_files()
    assert oldest == retired and newest.read_text().split() != [old_line]


def test_cli_rotate_master_with_environment_key_prints_it_alone_on_stdout(data_dir, owner):
    key_file = data_dir / "master.key"
    old_line = key_file.read_text().strip()
    key_file.unlink()
    runner = CliRunner()
    result = runner.invoke(main, ["keys", "rotate-master"],
                           env={"PHASE_LITE_DATA_DIR": str(data_dir),
                                "PHASE_LITE_MASTER_KEY": old_line})
    assert result.exit_code == 0, result.output
    new_line = result.stdout.strip()
    keyring.parse_master_key(new_line)
    assert "Set PHASE_LITE_MASTER_KEY" in result.stderr
    assert not key_file.exists()
    config = load_config({"PHASE_LITE_DATA_DIR": str(data_dir),
                          "PHASE_LITE_MASTER_KEY": new_line})
    create_app(config).extensions["phase_lite"].close()


def test_cli_rotate_master_refuses_while_a_server_runs(data_dir, config, owner):
    lock = hold_serving_lock(config)
    try:
        result = cli(data_dir, "keys", "rotate-master")
    finally:
        lock.close()
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "in use by a running phase-lite server" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert len(key_lines(config)) == 1


def test_serve_refuses_to_start_with_the_previous_key(data_dir, config, owner):
    old_line, = key_lines(config)
    assert cli(data_dir, "keys", "rotate-master").exit_code == 0
    result = cli(data_dir, "serve", env={"PHASE_LITE_MASTER_KEY": old_line})
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: PHASE_LITE_MASTER_KEY: this master key does not match")


@pytest.mark.slow
@pytest.mark.parametrize("command", [["keys", "rotate-app", "demo"], ["keys", "rotate-master"]])
def test_rotations_wait_for_the_server_and_keep_everything_readable(config, owner, demo,
                                                                    sa_token, command):
    app_row, _ = demo
    server = LiveServer(config.data_dir).start()
    url = f"{server.url}/v1/secrets/?app_id={app_row['id']}&env=Development"
    created = requests.post(url, headers=bearer_headers(owner), timeout=10, json={"secrets": [
        {"key": f"K{n}", "value": f"v{n}", "comment": f"c{n}",
         "override": {"value": f"o{n}", "isActive": True}} for n in range(5)]})
    assert created.status_code == 200, created.text

    def listing(issued):
        response = requests.get(url, headers=bearer_headers(issued), timeout=10)
        assert response.status_code == 200, response.text
        return sorted((s["key"], s["value"], s["comment"], (s["override"] or {}).get("value"))
                      for s in response.json())

    before = {"owner": listing(owner), "sa": listing(sa_token)}
    try:
        refused = cli(config.data_dir, *command)
        assert refused.exit_code == 1
        assert "in use by a running phase-lite server" in refused.output
        assert listing(owner) == before["owner"]
    finally:
        server.stop()
    done = cli(config.data_dir, *command)
    assert done.exit_code == 0, done.output
    server.start()
    try:
        assert {"owner": listing(owner), "sa": listing(sa_token)} == before
    finally:
        server.stop()
