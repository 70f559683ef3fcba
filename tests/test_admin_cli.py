"""The `phase-lite` admin command: init, users, apps, environments, service accounts, tokens."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import run_json
from support import TOKEN_PATTERN
from phase_lite.app import create_app
from phase_lite.config import load_config
from phase_lite.store import SqliteDatabase



def test_init_prints_a_phase_token_once(run, data_dir):
    payload = run_json(run, "init", "--owner-email", "me@example.com")
    assert set(payload) == {"ownerEmail", "token", "bearerToken", "consoleSetupLink",
                            "dataDir", "database", "masterKeyFile"}
    assert payload["masterKeyFile"] == str(data_dir / "master.key")
    assert "/console/welcome?token=" in payload["consoleSetupLink"]
    assert payload["ownerEmail"] == "me@example.com"
    assert TOKEN_PATTERN.match(payload["token"])
    bearer = payload["token"].split(":")[2]
    assert payload["bearerToken"] == f"User {bearer}"
    assert (data_dir / "master.key").stat().st_mode & 0o777 == 0o600
    assert (data_dir / "phase_lite.sqlite3").stat().st_mode & 0o777 == 0o600

    again = run("init")
    assert "already initialised" in again.output
    assert "pss_" not in again.output


def test_init_says_where_the_install_is_and_to_keep_the_key_apart(run, data_dir):
    for output in (run("init").output, run("init").output):  # initialising, then again
        assert f"Data directory:  {data_dir}\n" in output
        assert f"Master key:      {data_dir / 'master.key'}\n" in output
        assert "keep a copy of the key apart from the backups" in output


def test_init_again_names_the_token_file_state_and_how_to_mint_one(run, tmp_path):
    token_file = tmp_path / "owner.token"
    first = run("init", "--token-file", str(token_file))
    assert "pss_" not in first.output and token_file.stat().st_mode & 0o777 == 0o600
    again = run("init", "--token-file", str(token_file)).output
    assert f"{token_file} holds a live token of owner@localhost." in again
    other = tmp_path / "other.token"
    missing = run("init", "--token-file", str(other)).output
    assert not other.exists()
    assert f"Nothing was written to {other}." in missing
    assert f"users tokens create --email owner@localhost --token-file {other}" in missing
    # The way it names: the Owner's new token goes to the file, audited as any token mint.
    minted = run("users", "tokens", "create", "--email", "owner@localhost", "--name", "again",
                 "--token-file", str(other)).output
    assert "pss_" not in minted and f"it is in {other} (mode 0600)" in minted
    assert other.stat().st_mode & 0o777 == 0o600
    assert f"{other} holds a live token of owner@localhost." in run(
        "init", "--token-file", str(other)).output
    events = run_json(run, "audit", "list", "--limit", "1")
    assert (events[0]["action"], events[0]["resourceType"], events[0]["details"]["name"]) == (
        "create", "user_token", "again")
    assert events[0]["channel"] == "cli"
    # A revoked token no longer counts as the Owner's.
    token_id = json.loads(run("users", "tokens", "list", "--json").output)[-1]["id"]
    run("users", "tokens", "revoke", token_id)
    assert "Nothing was written" in run("init", "--token-file", str(other)).output
    refused = run("users", "tokens", "create", "--email", "owner@localhost",
                  "--token-file", str(other), ok=False)
    assert refused.exit_code == 1 and "already exists" in refused.output


def _cli(args, cwd, env):
    return subprocess.run([sys.executable, "-m", "phase_lite.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def _env_without_data_dir(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PHASE_LITE_")}
    return env | {"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "xdg")}


def test_the_install_is_the_same_from_any_folder(tmp_path):
    env = _env_without_data_dir(tmp_path)
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
    assert _cli(["init"], tmp_path / "one", env).returncode == 0
    assert _cli(["apps", "create", "shop"], tmp_path / "one", env).returncode == 0
    listed = _cli(["apps", "list"], tmp_path / "two", env)
    assert listed.returncode == 0 and "shop" in listed.stdout
    again = _cli(["init"], tmp_path / "two", env)
    assert "already initialised" in again.stdout
    assert (tmp_path / "xdg" / "phase-lite" / "master.key").exists()
    assert not (tmp_path / "one" / "data").exists() and not (tmp_path / "two" / "data").exists()


def test_an_install_in_the_old_default_is_named_not_replaced(tmp_path):
    env = _env_without_data_dir(tmp_path)
    checkout = tmp_path / "checkout"
    (checkout / "data").mkdir(parents=True)
    made = _cli(["init"], checkout, env | {"PHASE_LITE_DATA_DIR": str(checkout / "data")})
    assert made.returncode == 0, made.stderr
    new_place = tmp_path / "xdg" / "phase-lite"
    expected = (f"Error: PHASE_LITE_DATA_DIR: {checkout / 'data'} holds an install made when "
                f"./data was the default data directory, which is now {new_place}; set "
                f"PHASE_LITE_DATA_DIR={checkout / 'data'}, or move its files to {new_place}")
    for args in (["init"], ["apps", "list"], ["serve"]):
        result = _cli(args, checkout, env)
        assert (result.returncode, result.stderr.strip()) == (1, expected), args
    assert not (new_place / "master.key").exists()  # no second, empty install
    # Named explicitly, it is used as before.
    listed = _cli(["apps", "list"], checkout, env | {"PHASE_LITE_DATA_DIR": "data"})
    assert (listed.returncode, listed.stdout.strip()) == (0, "No apps.")


def test_init_human_output_explains_use(run):
    output = run("init").output
    assert "pss_user:v1:" in output
    assert "PHASE_HOST=http://127.0.0.1:8080" in output
    assert "Authorization: Bearer User " in output


def test_tokens_are_stored_only_as_hashes(run, data_dir):
    token = run_json(run, "init")["token"]
    bearer = token.split(":")[2]
    db = SqliteDatabase(data_dir / "phase_lite.sqlite3")
    (stored,) = db.one("SELECT token_hash FROM tokens")
    assert stored != bearer and len(stored) == 64
    db.close()
    for path in data_dir.iterdir():
        assert bearer.encode() not in path.read_bytes(), path.name


def test_users_and_personal_tokens(run):
    run("init")
    created = run_json(run, "users", "create", "--email", "dev@example.com", "--role", "Developer")
    assert created["email"] == "dev@example.com"
    emails = {u["email"]: u["role"] for u in run_json(run, "users", "list")}
    assert emails == {"owner@localhost": "Owner", "dev@example.com": "Developer"}

    issued = run_json(run, "users", "tokens", "create", "--email", "dev@example.com",
                      "--name", "laptop", "--expires-in", "3600")
    assert TOKEN_PATTERN.match(issued["token"]) and issued["expiresAt"].endswith("Z")
    listed = {t["name"]: t for t in run_json(run, "users", "tokens", "list")}
    assert "token" not in listed["laptop"]
    run("users", "tokens", "revoke", issued["id"])
    assert run_json(run, "users", "tokens", "list")[-1]["revokedAt"] is not None
    assert run("users", "tokens", "revoke", issued["id"], ok=False).exit_code == 1


@pytest.mark.parametrize("args, message", [
    (("users", "create", "--email", "x@example.com", "--role", "Boss"), "Unknown role 'Boss'"),
    (("users", "create", "--email", "not-an-email"), "A user needs an email address."),
    (("users", "tokens", "create", "--email", "nobody@example.com"), "No user with email"),
    (("apps", "create", "x", "--env", "bad name!"), "Environment name is invalid."),
    (("envs", "list", "missing-app"), "Error: No app with the name or id 'missing-app' ("),
    (("envs", "delete", "demo", "qa"), "Error: No environment 'qa' in app demo: give its name, "
                                       "its id or one of dev, staging, prod ("),
    (("users", "grant", "ghost@example.com", "--app", "demo"),
     "Error: No user with email or id 'ghost@example.com' ("),
    (("audit", "list", "--since", "yesterday"),
     "Error: Invalid value for '--since': expected an ISO-8601 date or time, or 7d, 12h, 30m"),
    (("service-accounts", "create", "root", "--role", "Admin"),
     "Service accounts cannot be assigned the 'Admin' role."),
    (("service-accounts", "grant", "ghost", "--app", "x"), "No service account 'ghost'."),
])
def test_bad_input_is_one_line_and_non_zero(run, args, message):
    run("init")
    run("apps", "create", "demo")
    result = run(*args, ok=False)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_names_or_ids_and_the_phase_cli_short_forms_everywhere(run):
    run("init")
    shop = run_json(run, "apps", "create", "shop")
    envs = {e["name"]: e["id"] for e in shop["environments"]}
    run("users", "create", "--email", "dev@example.com")
    user_id = next(u["id"] for u in run_json(run, "users", "list")
                   if u["email"] == "dev@example.com")
    sa_id = run_json(run, "service-accounts", "create", "ci")["id"]
    # Environments: any case, the short forms dev, staging, prod, or the id.
    granted = run_json(run, "service-accounts", "grant", "ci", "--app", "shop", "--env", "DEV",
                       "--env", "staging", "--env", envs["Production"])
    assert granted["environments"] == ["Development", "Staging", "Production"]
    # A renamed default environment keeps its short form.
    run("envs", "rename", shop["id"], "prod", "Live")
    assert [e["name"] for e in run_json(run, "envs", "list", "shop")] == [
        "Development", "Staging", "Live"]
    assert run_json(run, "service-accounts", "revoke-access", sa_id, "--app", shop["id"],
                    "--env", "PROD")["revoked"] == ["Live"]
    # Users by email or id.
    assert run_json(run, "users", "grant", user_id, "--app", "shop", "--env", "dev")[
        "environments"] == ["Development"]
    token = run_json(run, "users", "tokens", "create", "--email", user_id)
    assert token["name"] == "Personal token"
    link = run("users", "setup-link", user_id).output
    assert "/console/welcome?token=" in link
    history = run("secrets", "history", "shop", "Dev", "NOPE", ok=False)
    assert "No secret with this key" in history.output  # the environment was found
    assert run_json(run, "users", "delete", user_id)["email"] == "dev@example.com"


def test_tokens_list_shows_created_last_used_and_expiry(run, data_dir):
    run("init")
    run_json(run, "service-accounts", "create", "ci")
    made = run_json(run, "service-accounts", "tokens", "create", "ci", "--name", "short",
                    "--expires-in", "3600")
    line = next(line for line in run("service-accounts", "tokens", "list", "ci").output
                .splitlines() if "short" in line)
    created, expires = (made[key][:19].replace("T", " ") for key in ("createdAt", "expiresAt"))
    assert line == (f"{made['id']}  short  active  created {created}  last used never  "
                    f"expires {expires}")
    client = create_app(load_config({"PHASE_LITE_DATA_DIR": str(data_dir)})).test_client()
    assert client.get("/v1/apps/", headers={
        "Authorization": f"Bearer {made['bearerToken']}"}).status_code == 200
    used = next(t for t in run_json(run, "service-accounts", "tokens", "list", "ci")
                if t["id"] == made["id"])["lastUsedAt"]
    assert used
    line = next(line for line in run("service-accounts", "tokens", "list", "ci").output
                .splitlines() if "short" in line)
    assert f"last used {used[:19].replace('T', ' ')}  expires {expires}" in line
    (owner_line,) = run("users", "tokens", "list").output.splitlines()
    assert owner_line.endswith("  last used never  expires never")
    assert "  owner@localhost  Owner token  active  created 20" in owner_line


def test_hints_print_the_command_as_it_was_run(tmp_path):
    import os
    import shutil

    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "phase-lite").exists()
    (tmp_path / ".venv").symlink_to(venv_bin.parent)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PHASE_LITE_DATA_DIR": str(tmp_path / "data")}
    assert shutil.which("phase-lite", path=env["PATH"]) is None

    def hint(command, path):
        result = subprocess.run([command, "envs", "list", "nope"], cwd=tmp_path, text=True,
                                env=env | {"PATH": path}, capture_output=True, timeout=60)
        assert result.returncode == 1
        return result.stderr

    assert "(run '.venv/bin/phase-lite init' or set" in hint(".venv/bin/phase-lite",
                                                             env["PATH"])
    on_path = f"{tmp_path / '.venv' / 'bin'}:{env['PATH']}"
    assert "(run 'phase-lite init' or set" in hint("phase-lite", on_path)
    os.mkdir(tmp_path / "data")
    subprocess.run([".venv/bin/phase-lite", "init"], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=60)
    assert "('.venv/bin/phase-lite apps list' shows them)" in hint(".venv/bin/phase-lite",
                                                                   env["PATH"])


def test_apps_environments_and_service_accounts(run):
    run("init")
    app = run_json(run, "apps", "create", "shop")
    assert [e["name"] for e in app["environments"]] == ["Development", "Staging", "Production"]
    custom = run_json(run, "apps", "create", "lab", "--env", "test", "--env", "live")
    assert [(e["name"], e["envType"]) for e in custom["environments"]] == [
        ("test", "custom"), ("live", "custom")]

    run("envs", "create", "shop", "qa")
    run("envs", "rename", "shop", "qa", "preview")
    assert [e["name"] for e in run_json(run, "envs", "list", "shop")] == [
        "Development", "Staging", "Production", "preview"]
    run("envs", "delete", "shop", "preview")

    sa = run_json(run, "service-accounts", "create", "deployer")
    assert TOKEN_PATTERN.match(sa["initialToken"]["token"])
    assert sa["initialToken"]["bearerToken"].startswith("ServiceAccount ")
    grant = run_json(run, "service-accounts", "grant", "deployer", "--app", "shop",
                     "--env", "development", "--env", "Staging")
    assert grant["environments"] == ["Development", "Staging"]
    run("service-accounts", "revoke-access", "deployer", "--app", "shop", "--env", "Staging")
    second = run_json(run, "service-accounts", "tokens", "create", "deployer", "--name", "ci")
    names = [t["name"] for t in run_json(run, "service-accounts", "tokens", "list", "deployer")]
    assert names == ["ci", "Default"]
    run("service-accounts", "tokens", "revoke", second["id"])
    assert [a["name"] for a in run_json(run, "service-accounts", "list")] == ["deployer"]

    run("apps", "delete", "lab")
    assert [a["name"] for a in run_json(run, "apps", "list")] == ["shop"]


def test_user_grants_reach_the_secrets_api(run, data_dir):
    run("init")
    shop = run_json(run, "apps", "create", "shop")
    run("users", "create", "--email", "dev@example.com", "--role", "Developer")
    token = run_json(run, "users", "tokens", "create", "--email", "dev@example.com")
    grant = run_json(run, "users", "grant", "dev@example.com", "--app", "shop", "--env", "Staging")
    assert grant["environments"] == ["Staging"]

    app = create_app(load_config({"PHASE_LITE_DATA_DIR": str(data_dir)}))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token['bearerToken']}"}

    def status(env):
        return client.get(f"/v1/secrets/?app_id={shop['id']}&env={env}", headers=headers)

    assert status("Staging").status_code == 200
    assert (status("Development").status_code, status("Development").get_json()) == (
        403, {"error": "User cannot access this environment"})
    revoked = run_json(run, "users", "revoke-access", "dev@example.com", "--app", "shop")
    assert revoked["revoked"] == ["Staging"]
    assert revoked["notHeld"] == ["Development", "Production"]
    assert status("Staging").status_code == 403
    app.extensions["phase_lite"].close()


def test_console_script_help(data_dir):
    result = subprocess.run([sys.executable, "-m", "phase_lite.cli", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("init", "serve", "users", "apps", "envs", "service-accounts"):
        assert command in result.stdout


def test_every_write_command_records_an_audit_event_naming_the_operator(run, data_dir,
                                                                         tmp_path):
    """Each write command, run in turn: the audit log gains an event for it, made by the local
    operator through the "cli" channel, with the action and object the command changed."""
    def newest():
        return run_json(run, "audit", "list", "--limit", "1")[0]

    def check(args, action, resource_type):
        before = newest()
        output = run(*args).output
        event = newest()
        assert event != before, args
        assert (event["action"], event["resourceType"]) == (action, resource_type), args
        assert (event["actorType"], event["channel"]) == ("operator", "cli"), args
        assert event["actorId"] and event["userAgent"] == "phase-lite-cli"
        return output

    run("init", "--owner-email", "owner@example.com")
    assert (newest()["action"], newest()["actorType"], newest()["channel"]) == (
        "initialise", "operator", "cli")
    check(["apps", "create", "shop"], "create", "app")
    check(["apps", "create", "gone"], "create", "app")
    check(["apps", "delete", "gone"], "delete", "app")
    check(["envs", "create", "shop", "qa"], "create", "environment")
    check(["envs", "rename", "shop", "qa", "uat"], "update", "environment")
    check(["envs", "delete", "shop", "uat"], "delete", "environment")
    check(["users", "create", "--email", "dev@example.com"], "create", "user")
    check(["users", "grant", "dev@example.com", "--app", "shop"], "grant_access", "user")
    check(["users", "revoke-access", "dev@example.com", "--app", "shop", "--env", "Staging"],
          "revoke_access", "user")
    token = check(["users", "tokens", "create", "--email", "dev@example.com", "--json"],
                  "create", "user_token")
    check(["users", "tokens", "revoke", json.loads(token)["id"]], "delete", "user_token")
    check(["service-accounts", "create", "ci"], "create", "service_account")
    check(["service-accounts", "grant", "ci", "--app", "shop", "--env", "Production"],
          "grant_access", "service_account")
    check(["service-accounts", "revoke-access", "ci", "--app", "shop"],
          "revoke_access", "service_account")
    token = check(["service-accounts", "tokens", "create", "ci", "--json"],
                  "create", "service_account_token")
    check(["service-accounts", "tokens", "revoke", json.loads(token)["id"]],
          "delete", "service_account_token")
    check(["keys", "rotate-app", "shop"], "rotate_data_key", "app")
    check(["keys", "rotate-master"], "rotate_master_key", "master_key")
    check(["backup", str(tmp_path / "copy.sqlite3")], "backup", "database")
    check(["restore", "--yes", str(tmp_path / "copy.sqlite3")], "restore", "database")
    check(["audit", "prune", "--older-than-days", "1"], "prune", "audit_log")
