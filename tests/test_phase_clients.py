"""The official Phase clients against a live phase_lite: phase-cli, phase-dev and phase-node.

The clients live in .clients/ (``bash tests/clients/install.sh``, run by ``make test``); they
are installed here when missing, and the module fails loudly if that fails. Only the Node test
may skip, and only when ``node`` is not installed. One server serves the whole module; each test
makes its own app and service-account token, so tests do not see each other's secrets.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import support
from phase_lite.app import init_data_dir, open_services
from phase_lite.config import load_config
from live import LiveServer
from support import NODE_MODULES, PHASE, SDK_PYTHON

pytestmark = pytest.mark.clients

TIMEOUT = 60  # seconds, for every client process


@dataclass
class World:
    url: str
    services: object
    org_id: str
    owner: object
    home_root: Path

    def rest(self, method, issued, env_name, app_id, *, body=None, **params):
        """Call /service/public/v1/secrets/ with a token; return the decoded JSON."""
        response = requests.request(
            method, f"{self.url}/service/public/v1/secrets/",
            params={"app_id": app_id, "env": env_name, **params}, json=body,
            headers={"Authorization": f"Bearer {issued.bearer_token}"}, timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory, installed_clients):
    """A served phase_lite on SQLite, then on PostgreSQL."""
    base = tmp_path_factory.mktemp("phase-clients")
    data_dir = base / "data"
    data_dir.mkdir(mode=0o700)
    env = {"PHASE_LITE_DATA_DIR": str(data_dir)}
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres_server")
        env["PHASE_LITE_DATABASE_URL"] = postgres.create_database("phase_clients")
    config = load_config(env, testing=True)
    owner = init_data_dir(config, "owner@example.com")
    services = open_services(config)
    server = LiveServer(data_dir, env).start()
    try:
        yield World(server.url, services, support.organisation_id(services), owner,
                    base)
    finally:
        server.stop()
        services.close()


@dataclass
class Project:
    """An app of its own with a service-account token for all its environments."""
    app_id: str
    name: str
    envs: dict
    token: object


@pytest.fixture
def project(world, request):
    name = "app-" + request.node.name.replace("_", "-")[5:40]
    app_row, envs = support.make_app(world.services, name)
    _, issued = support.make_service_account(world.services, f"sa-{name}",
                                             env_rows=envs.values())
    return Project(app_row["id"], name, envs, issued)


@pytest.fixture
def home(world, request):
    path = world.home_root / f"home-{request.node.name}"
    path.mkdir()
    return path


def client_env(home, **extra):
    """A clean environment for a client process: its own HOME, no system keyring."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "COLUMNS": "250",  # rich wraps messages at the terminal width (80 without a tty)
    }
    env.update(extra)
    return env


def phase(world, project, home, *args, stdin="", token=None, env=None, expect_ok=True):
    """Run the real ``phase`` command; return (exit code, stdout + stderr)."""
    extra = {"PHASE_HOST": world.url,
             "PHASE_SERVICE_TOKEN": (token or project.token).token} if env is None else env
    process = subprocess.run(
        [str(PHASE), *args], input=stdin, capture_output=True, text=True, timeout=TIMEOUT,
        env=client_env(home, **extra), cwd=home, start_new_session=True,
    )
    output = process.stdout + process.stderr
    if expect_ok:
        assert process.returncode == 0, output
    return process.returncode, output


def app_args(project, env_name="Development"):
    return ["--app-id", project.app_id, "--env", env_name]


def export_json(world, project, home, env_name="Development", *extra):
    _, output = phase(world, project, home, "secrets", "export", "--format", "json",
                      *app_args(project, env_name), *extra)
    return json.loads(output[output.index("{"):])


def by_key(world, project, key, env_name="Development", **params):
    return world.rest("GET", project.token, env_name, project.app_id, key=key, **params)


# -- phase-cli 1.21.3 -----------------------------------------------------------------------


def test_cli_auth_token_mode_stores_credentials_for_later_commands(world, project, home):
    code, output = phase(world, project, home, "auth", "--mode", "token",
                         stdin=project.token.token + "\n", env={"PHASE_HOST": world.url})
    assert "Authentication successful" in output
    config = json.loads((home / ".phase" / "secrets" / "config.json").read_text())
    [user] = config["phase-users"]
    assert user["host"] == world.url
    assert user["organization_name"] == "phase_lite"
    assert config["default-user"] == user["id"]

    world.rest("POST", project.token, "Development", project.app_id,
               body={"secrets": [{"key": "STORED", "value": "from-config"}]})
    _, output = phase(world, project, home, "secrets", "list", "--show",
                      *app_args(project), env={})
    assert "STORED" in output and "from-config" in output
    _, output = phase(world, project, home, "users", "whoami", env={})
    assert user["id"] in output


def test_cli_reads_what_rest_wrote_at_one_path_and_at_all_paths(world, project, home):
    world.rest("POST", project.token, "Development", project.app_id, body={"secrets": [
        {"key": "db_host", "value": "localhost", "comment": "primary"},
        {"key": "NESTED_KEY", "value": "deep", "path": "/backend"},
    ]})
    _, output = phase(world, project, home, "secrets", "get", "DB_HOST", *app_args(project))
    got = json.loads(output[output.index("{"):])
    assert (got["key"], got["value"], got["comment"], got["path"]) == (
        "DB_HOST", "localhost", "primary", "/")
    _, output = phase(world, project, home, "secrets", "get", "NESTED_KEY", "--path",
                      "/backend", *app_args(project))
    assert json.loads(output[output.index("{"):])["value"] == "deep"

    assert export_json(world, project, home) == {"DB_HOST": "localhost"}
    assert export_json(world, project, home, "Development", "--path", "") == {
        "DB_HOST": "localhost", "NESTED_KEY": "deep"}
    assert export_json(world, project, home, "Development", "--path", "/backend") == {
        "NESTED_KEY": "deep"}
    _, output = phase(world, project, home, "secrets", "export", *app_args(project),
                      "--path", "")
    assert 'DB_HOST="localhost"' in output and 'NESTED_KEY="deep"' in output
    _, output = phase(world, project, home, "secrets", "list", "--show", *app_args(project))
    assert "DB_HOST" in output and "NESTED_KEY" in output and "deep" in output


def test_cli_create_update_delete_round_trip_through_rest(world, project, home):
    phase(world, project, home, "secrets", "create", "new_key", *app_args(project),
          stdin="new-value")
    [created] = by_key(world, project, "NEW_KEY")
    assert (created["key"], created["value"], created["version"], created["path"]) == (
        "NEW_KEY", "new-value", 1, "/")

    code, output = phase(world, project, home, "secrets", "create", "NEW_KEY",
                         *app_args(project), stdin="again", expect_ok=False)
    assert code != 0
    assert "Request failed with status code 409: Duplicate secret found" in output
    assert [s["value"] for s in by_key(world, project, "NEW_KEY")] == ["new-value"]

    phase(world, project, home, "secrets", "update", "NEW_KEY", *app_args(project),
          stdin="updated")
    [updated] = by_key(world, project, "NEW_KEY")
    assert (updated["id"], updated["value"], updated["version"]) == (
        created["id"], "updated", 2)
    assert updated["keyDigest"] == created["keyDigest"]

    # The CLI sends the value again (read from stdin) when it moves a secret.
    phase(world, project, home, "secrets", "update", "NEW_KEY", "--updated-path", "/moved",
          *app_args(project), stdin="updated")
    [moved] = by_key(world, project, "NEW_KEY")
    assert (moved["id"], moved["path"], moved["value"], moved["version"]) == (
        created["id"], "/moved", "updated", 3)

    phase(world, project, home, "secrets", "create", "RAND", "--random", "hex", "--length",
          "24", "--path", "/backend", *app_args(project))
    [rand] = by_key(world, project, "RAND")
    assert rand["path"] == "/backend" and len(rand["value"]) == 48  # 24 random bytes
    int(rand["value"], 16)

    phase(world, project, home, "secrets", "delete", "NEW_KEY", "--path", "/moved",
          *app_args(project))
    assert by_key(world, project, "NEW_KEY") == []
    _, output = phase(world, project, home, "secrets", "delete", "MISSING", *app_args(project))
    assert "MISSING" in output


def test_cli_import_writes_one_batch(world, project, home):
    (home / ".env.test").write_text('IMPORTED_ONE=first\nIMPORTED_TWO="second value"\n')
    phase(world, project, home, "secrets", "import", ".env.test", *app_args(project, "Staging"))
    listed = world.rest("GET", project.token, "Staging", project.app_id)
    assert {s["key"]: s["value"] for s in listed} == {
        "IMPORTED_ONE": "first", "IMPORTED_TWO": "second value"}
    assert export_json(world, project, home, "Staging") == {
        "IMPORTED_ONE": "first", "IMPORTED_TWO": "second value"}


def test_cli_run_resolves_local_and_cross_environment_references(world, project, home):
    world.rest("POST", project.token, "Staging", project.app_id,
               body={"secrets": [{"key": "DB_HOST", "value": "staging-db.internal"}]})
    world.rest("POST", project.token, "Development", project.app_id, body={"secrets": [
        {"key": "HOST", "value": "localhost"},
        {"key": "API_URL", "value": "https://${HOST}/api"},
        {"key": "FROM_STAGING", "value": "${Staging.DB_HOST}"},
    ]})
    _, output = phase(world, project, home, "run", *app_args(project),
                      "printenv API_URL FROM_STAGING")
    lines = output.splitlines()
    assert "https://localhost/api" in lines and "staging-db.internal" in lines
    assert export_json(world, project, home)["FROM_STAGING"] == "staging-db.internal"


def test_cli_personal_token_keeps_its_own_override(world, project, home):
    owner = world.owner
    phase(world, project, home, "secrets", "create", "PERSONAL", "--override",
          *app_args(project), stdin="mine\n", token=owner)
    _, output = phase(world, project, home, "secrets", "get", "PERSONAL", *app_args(project),
                      token=owner)
    got = json.loads(output[output.index("{"):])
    assert (got["value"], got["overridden"]) == ("mine", True)
    assert export_json(world, project, home) == {"PERSONAL": ""}  # the service account's view
    phase(world, project, home, "secrets", "update", "PERSONAL", "--toggle-override",
          *app_args(project), token=owner)
    _, output = phase(world, project, home, "secrets", "get", "PERSONAL", *app_args(project),
                      token=owner)
    assert json.loads(output[output.index("{"):])["value"] == ""
    [rest] = world.rest("GET", owner, "Development", project.app_id, key="PERSONAL")
    assert (rest["value"], rest["override"]["value"], rest["override"]["isActive"]) == (
        "", "mine", False)


def test_cli_with_a_revoked_token_is_not_authorized(world, project, home):
    support.revoke(world.services, project.token.id)
    code, output = phase(world, project, home, "secrets", "list", *app_args(project),
                         expect_ok=False)
    assert code != 0
    assert "Not authorized. Token expired or deleted" in output


def test_cli_refuses_a_malformed_token_and_warns_of_an_unknown_environment(world, project,
                                                                           home):
    broken = dataclasses.replace(project.token, token=project.token.token[:-2])
    code, output = phase(world, project, home, "secrets", "list", *app_args(project),
                         token=broken, expect_ok=False)
    assert code != 0 and "Invalid Phase service token" in output
    _, output = phase(world, project, home, "secrets", "list", *app_args(project, "nowhere"),
                      expect_ok=False)
    assert "nowhere" in output


# -- phase-dev 2.1.2 (Python SDK) -----------------------------------------------------------

SDK_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from phase import (Phase, CreateSecretsOptions, GetAllSecretsOptions, GetSecretOptions,
                       UpdateSecretOptions, DeleteSecretOptions)

    app_id = os.environ["APP_ID"]
    phase = Phase(init=False, pss=os.environ["TOKEN"], host=os.environ["HOST"])
    out = {}
    out["create"] = phase.create_secrets(CreateSecretsOptions(
        env_name="Development", app_id=app_id,
        key_value_pairs=[{"SDK_KEY": "sdk-value"}, {"SDK_REF": "${SDK_KEY}-ref"}]))
    got = phase.get_secret(GetSecretOptions(env_name="Development", app_id=app_id,
                                            key_to_find="SDK_KEY"))
    out["get"] = [got.key, got.value, got.path]
    out["update"] = phase.update_secret(UpdateSecretOptions(
        env_name="Development", app_id=app_id, key="SDK_KEY", value="sdk-updated"))
    out["all"] = {s.key: s.value for s in phase.get_all_secrets(
        GetAllSecretsOptions(env_name="Development", app_id=app_id))}
    out["delete"] = phase.delete_secret(DeleteSecretOptions(
        env_name="Development", app_id=app_id, key_to_delete="SDK_REF"))
    out["missing"] = phase.delete_secret(DeleteSecretOptions(
        env_name="Development", app_id=app_id, key_to_delete="NOPE"))
    print(json.dumps(out))
""")


def test_python_sdk_create_read_update_delete(world, project, home):
    world.rest("POST", project.token, "Development", project.app_id,
               body={"secrets": [{"key": "FROM_REST", "value": "rest-value"}]})
    process = subprocess.run(
        [str(SDK_PYTHON), "-c", SDK_SCRIPT], capture_output=True, text=True, timeout=TIMEOUT,
        cwd=home, start_new_session=True,
        env=client_env(home, APP_ID=project.app_id, TOKEN=project.token.token, HOST=world.url),
    )
    assert process.returncode == 0, process.stdout + process.stderr
    out = json.loads(process.stdout.strip().splitlines()[-1])
    assert out["create"] == "Success"
    assert out["get"] == ["SDK_KEY", "sdk-value", "/"]
    assert out["update"] == "Success"
    assert out["all"] == {"FROM_REST": "rest-value", "SDK_KEY": "sdk-updated",
                          "SDK_REF": "sdk-updated-ref"}
    assert out["delete"] == [] and out["missing"] == ["NOPE"]
    listed = world.rest("GET", project.token, "Development", project.app_id)
    assert {s["key"]: (s["value"], s["version"]) for s in listed} == {
        "FROM_REST": ("rest-value", 1), "SDK_KEY": ("sdk-updated", 2)}


# -- @phase.dev/phase-node 3.1.1 ------------------------------------------------------------

NODE_SCRIPT = textwrap.dedent("""
    const Phase = require("@phase.dev/phase-node");
    const withTimeout = (promise, ms) => Promise.race([
        promise, new Promise(resolve => setTimeout(() => resolve("timeout"), ms))]);
    (async () => {
        const appId = process.env.APP_ID;
        const phase = new Phase(process.env.TOKEN, process.env.HOST);
        await phase.init();
        const out = {apps: phase.apps.map(a => [a.name, a.environments.map(e => e.name)])};
        await phase.create({appId, envName: "Development", secrets: [
            {key: "NODE_KEY", value: "node-value", comment: "from node", path: "/node"}]});
        const [created] = await phase.get({appId, envName: "development", key: "NODE_KEY"});
        out.created = [created.key, created.value, created.comment, created.path];
        await phase.update({appId, envName: "Development", secrets: [
            {id: created.id, key: "NODE_KEY", value: "node-updated"}]});
        const all = await phase.get({appId, envName: "Development"});
        out.all = all.map(s => [s.key, s.value, s.path]).sort();
        out.id = created.id;
        // delete() may never settle (a client quirk): race it, then check over REST.
        await withTimeout(phase.delete({appId, envName: "Development",
                                        secretIds: [created.id]}), 3000);
        console.log(JSON.stringify(out));
        process.exit(0);
    })().catch(err => { console.error(String(err)); process.exit(1); });
""")


def test_node_sdk_create_read_update_delete(world, project, home):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Node SDK cannot run here")
    world.rest("POST", project.token, "Development", project.app_id,
               body={"secrets": [{"key": "FROM_REST", "value": "rest-value"}]})
    process = subprocess.run(
        [node, "-e", NODE_SCRIPT], capture_output=True, text=True, timeout=TIMEOUT, cwd=home,
        start_new_session=True,
        env=client_env(home, NODE_PATH=str(NODE_MODULES), APP_ID=project.app_id,
                       TOKEN=project.token.token, HOST=world.url),
    )
    assert process.returncode == 0, process.stdout + process.stderr
    out = json.loads(process.stdout.strip().splitlines()[-1])
    assert [project.name, ["Development", "Staging", "Production"]] in out["apps"]
    assert out["created"] == ["NODE_KEY", "node-value", "from node", "/node"]
    assert out["all"] == [["FROM_REST", "rest-value", "/"], ["NODE_KEY", "node-updated", "/node"]]
    assert by_key(world, project, "NODE_KEY") == []
    assert [s["key"] for s in world.rest("GET", project.token, "Development",
                                         project.app_id)] == ["FROM_REST"]
