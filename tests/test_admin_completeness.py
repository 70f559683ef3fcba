"""The admin command's later additions: version, deletes that stop tokens at once, messages
that say what changed, confirmed restores that keep the replaced database, the advice for a
backup made under another master key, and ``init --token-file``."""

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import support
from phase_lite import __version__, accounts
from phase_lite.cli import main
from phase_lite.errors import PermissionDenied
from phase_lite.store import SqliteDatabase
from support import run_json
from support import TOKEN_PATTERN, principal_of


def newest_event(run):
    return run_json(run, "audit", "list", "--limit", "1")[0]


def test_version(run):
    assert run("version").output == f"phase-lite {__version__}\n"
    assert run_json(run, "version") == {"version": __version__}
    assert run("--version").output == f"phase-lite, version {__version__}\n"


# -- deletes ---------------------------------------------------------------------------------


def test_users_delete_stops_their_tokens_at_once(run, client, demo):
    app_row, envs = demo
    run("users", "create", "--email", "dev@example.com")
    run("users", "grant", "dev@example.com", "--app", "demo")
    token = run_json(run, "users", "tokens", "create", "--email", "dev@example.com")
    url = f"/v1/secrets/?app_id={app_row['id']}&env=Development"
    headers = {"Authorization": f"Bearer {token['bearerToken']}"}
    assert client.get(url, headers=headers).status_code == 200

    deleted = run_json(run, "users", "delete", "dev@example.com")
    assert deleted["deleted"] is True and deleted["tokensRevoked"] == 1
    refused = client.get(url, headers=headers)  # the same running app: no restart, no wait
    assert (refused.status_code, refused.get_json()) == (401, {"error": "Token expired or deleted"})
    assert "dev@example.com" not in [u["email"] for u in run_json(run, "users", "list")]
    event = newest_event(run)
    assert (event["action"], event["resourceType"], event["resourceId"]) == (
        "delete", "user", deleted["id"])
    assert event["names"][deleted["id"]] == "dev@example.com"  # the log still names them

    again = run_json(run, "users", "create", "--email", "dev@example.com")
    assert client.get(url, headers=headers).status_code == 401
    assert run_json(run, "users", "tokens", "list")[-1]["revokedAt"] is not None
    fresh = run_json(run, "users", "tokens", "create", "--email", again["email"])
    fresh_headers = {"Authorization": f"Bearer {fresh['bearerToken']}"}
    assert client.get(url, headers=fresh_headers).status_code == 403  # no grants came back


def test_users_delete_refuses_the_last_owner(run, owner):
    refused = run("users", "delete", "owner@example.com", ok=False)
    assert refused.exit_code == 1
    assert refused.output == ("Error: owner@example.com is the last Owner and cannot be "
                              "deleted; make another user an Owner first.\n")
    assert "owner@example.com" in [u["email"] for u in run_json(run, "users", "list")]
    run("users", "create", "--email", "second@example.com", "--role", "Owner")
    run("users", "delete", "owner@example.com")
    assert run("users", "delete", "second@example.com", ok=False).exit_code == 1


def test_users_delete_checks_the_callers_permission(services, owner):
    _, dev_token = support.make_user(services, "dev@example.com", "Developer")
    victim, _ = support.make_user(services, "other@example.com", "Developer")
    with pytest.raises(PermissionDenied, match="permission to delete members"):
        accounts.delete_user(services, principal_of(services, dev_token), victim,
                             support.TEST_META)
    assert accounts.user_by_email(services, support.operator(services), "other@example.com")


def test_service_accounts_delete_stops_their_tokens_at_once(run, client, demo, sa_token):
    app_row, _ = demo
    url = f"/v1/secrets/?app_id={app_row['id']}&env=Production"
    headers = {"Authorization": f"Bearer {sa_token.bearer_token}"}
    second = run_json(run, "service-accounts", "tokens", "create", "ci")
    assert client.get(url, headers=headers).status_code == 200

    result = run("service-accounts", "delete", "ci")
    assert result.output == "Deleted service account ci: 2 tokens revoked, access removed.\n"
    for bearer in (sa_token.bearer_token, second["bearerToken"]):
        refused = client.get(url, headers={"Authorization": f"Bearer {bearer}"})
        assert refused.status_code == 401
    assert run_json(run, "service-accounts", "list") == []
    assert (newest_event(run)["action"], newest_event(run)["resourceType"]) == (
        "delete", "service_account")
    assert run("service-accounts", "delete", "ci", ok=False).output == (
        "Error: No service account 'ci'.\n")


# -- messages that say what changed -----------------------------------------------------------


def test_grant_and_revoke_say_exactly_what_changed(run, owner, demo):
    run("service-accounts", "create", "deployer")
    assert run("service-accounts", "grant", "deployer", "--app", "demo",
               "--env", "Staging").output == "Granted deployer access to demo: Staging.\n"
    assert run("service-accounts", "grant", "deployer", "--app", "demo").output == (
        "Granted deployer access to demo: Development, Production. "
        "deployer already had access to demo: Staging.\n")
    assert run("service-accounts", "revoke-access", "deployer", "--app", "demo",
               "--env", "Staging").output == "Revoked deployer's access to demo: Staging.\n"
    assert run("service-accounts", "revoke-access", "deployer", "--app", "demo",
               "--env", "Staging").output == (
        "Nothing changed: deployer never had access to demo: Staging.\n")
    run("users", "create", "--email", "dev@example.com")
    partly = run_json(run, "users", "revoke-access", "dev@example.com", "--app", "demo")
    assert (partly["revoked"], partly["notHeld"]) == (
        [], ["Development", "Staging", "Production"])
    assert newest_event(run)["details"] == {"revoked": []}


# -- restore ---------------------------------------------------------------------------------


def _restore_on_a_terminal(data_dir, backup, answer):
    """``phase-lite restore BACKUP`` with a real terminal on standard input, answering."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "phase_lite.cli", "restore", str(backup)],
            stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=os.environ | {"PHASE_LITE_DATA_DIR": str(data_dir)})
        os.write(leader, answer.encode())
        output, _ = process.communicate(timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    return process.returncode, output


def app_names(database):
    db = SqliteDatabase(database)
    try:
        return sorted(row[0] for row in db.all("SELECT name FROM apps"))
    finally:
        db.close()


def test_restore_asks_first_and_keeps_the_replaced_database(run, config, owner, demo,
                                                            tmp_path):
    backup = tmp_path / "before.sqlite3"
    run("backup", str(backup))
    run("apps", "create", "later")

    refused = run("restore", str(backup), ok=False)  # no terminal, no --yes
    assert refused.exit_code == 1
    assert refused.output == ("Error: restore replaces the database and there is no terminal "
                              "to confirm on; add --yes\n")
    assert app_names(config.database) == ["demo", "later"]

    code, output = _restore_on_a_terminal(config.data_dir, backup, "n\n")
    assert code == 1 and "Aborted!" in output
    assert app_names(config.database) == ["demo", "later"]
    assert not list(config.data_dir.glob("*.replaced-*"))

    code, output = _restore_on_a_terminal(config.data_dir, backup, "y\n")
    assert code == 0, output
    assert f"Replace {config.database} with {backup}?" in output
    assert app_names(config.database) == ["demo"]
    (kept,) = config.data_dir.glob("phase_lite.sqlite3.replaced-*")
    assert re.fullmatch(r"phase_lite\.sqlite3\.replaced-\d{8}T\d{6}Z", kept.name)
    assert f"The replaced database was kept as {kept} (mode 0600)." in output
    assert kept.stat().st_mode & 0o777 == 0o600
    assert app_names(kept) == ["demo", "later"]

    payload = run_json(run, "restore", str(backup), "--yes")
    second = payload["replacedDatabaseKeptAs"]
    assert second != str(kept) and os.stat(second).st_mode & 0o777 == 0o600


def test_restore_under_another_master_key_says_how_to_fix_it(run, config, owner, tmp_path):
    key_file = config.data_dir / "master.key"
    previous_key = key_file.read_text().strip()
    backup = tmp_path / "old.sqlite3"
    run("backup", str(backup))
    rotated = run_json(run, "keys", "rotate-master")
    old_id = rotated["previousKeyIds"][0]
    current_key = key_file.read_text().strip()
    Path(rotated["retiredKeyFile"]).unlink()  # the retired key kept beside it is lost

    refused = run("restore", str(backup), "--yes", ok=False)
    assert refused.exit_code == 1
    assert len(refused.output.strip().splitlines()) == 1
    assert f"was made with another master key ({old_id}), which is not loaded here" \
        in refused.output
    assert f"add that key as a second line of {key_file}" in refused.output
    assert "then run phase-lite keys rotate-master" in refused.output

    from_env = CliRunner().invoke(main, ["restore", str(backup), "--yes"], env={
        "PHASE_LITE_DATA_DIR": str(config.data_dir), "PHASE_LITE_MASTER_KEY": current_key})
    assert from_env.exit_code == 1
    assert "set PHASE_LITE_MASTER_KEY_FILE to it and unset PHASE_LITE_MASTER_KEY" \
        in from_env.output

    key_file.write_text(f"{current_key}\n{previous_key}\n")  # as the message says
    assert run("restore", str(backup), "--yes").output.startswith("Restored ")
    run("keys", "rotate-master")
    assert run_json(run, "apps", "list") == []


# -- init --token-file -----------------------------------------------------------------------


def test_init_token_file_writes_a_private_file_not_stdout(run, data_dir, tmp_path):
    token_file = tmp_path / "owner.token"
    result = run("init", "--token-file", str(token_file))
    assert "pss_" not in result.output
    assert f"The Owner (owner@localhost) token is in {token_file} (mode 0600)" in result.output
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert TOKEN_PATTERN.match(token)

    db = SqliteDatabase(data_dir / "phase_lite.sqlite3")
    from phase_lite.auth import Authenticator
    assert Authenticator(db).authenticate(f"Bearer User {token.split(':')[2]}").kind == "user"
    db.close()


def test_init_token_file_refuses_an_existing_file_before_initialising(run, data_dir,
                                                                     tmp_path):
    token_file = tmp_path / "taken"
    token_file.write_text("keep me")
    refused = run("init", "--token-file", str(token_file), ok=False)
    assert refused.exit_code == 1
    assert refused.output == (f"Error: {token_file} already exists (a token of an earlier "
                              "install?); remove it or give a new file name\n")
    assert token_file.read_text() == "keep me"
    assert not (data_dir / "phase_lite.sqlite3").exists()
