"""``phase-lite mirror``: a second phase_lite server, served on loopback, is the Phase host a
token reads; this test's server (SQLite or PostgreSQL) keeps the copy."""

import json
import os
import secrets as random
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests

import support
from live import LiveServer, database_env, free_port
from phase_source import PhaseSource
from support import run_json
from phase_lite import mirror
from phase_lite import secrets as secret_domain
from phase_lite.secrets import NewSecret, Override, SecretChange
from phase_lite.store import apps as app_store

pytestmark = pytest.mark.both_backends


@pytest.fixture
def source(tmp_path):
    made = PhaseSource(tmp_path)
    support.make_app(made.services, "shop", ["Development", "Production"])
    support.make_app(made.services, "billing", ["Production"])
    made.create("shop", "Development",
                NewSecret(key="DB_HOST", value="db.dev", comment="the database",
                          tags=("ops", "db")),
                NewSecret(key="DB_URL", value="postgres://${DB_HOST}:5432/${Production.NAME}"),
                NewSecret(key="API_KEY", value="k-" + random.token_hex(8), path="/api/v1",
                          type="sealed"),
                NewSecret(key="FLAG", value="on", type="config", comment="üñí ✓"),
                NewSecret(key="BILLING", value="${billing::Production.PRICE}"))
    made.create("shop", "Production", NewSecret(key="NAME", value="shopdb"))
    made.create("billing", "Production", NewSecret(key="PRICE", value="42"))
    made.server.start()
    yield made
    made.close()


@pytest.fixture
def token_file(tmp_path, source):
    path = tmp_path / "token"
    path.write_text(source.owner.token + "\n")
    return path


def fields(secrets):
    return sorted((s.path, s.key, s.value, s.comment, tuple(sorted(s.tags)), s.type)
                  for s in secrets)


def local_env(services, app, env_name):
    app_row = app_store.find_apps_by_name(services.db, support.organisation_id(services), app)
    return app_store.find_environment(services.db, app_row[0]["id"], env_name)


def local_secrets(services, app, env_name):
    return secret_domain.list_secrets(services, None, local_env(services, app, env_name))


def add_and_sync(run, source, token_file, *extra):
    added = run_json(run, "mirror", "add", "--host", source.server.url, "--token-file",
                     str(token_file), "--name", "src", *extra)
    synced = run_json(run, "mirror", "sync", "src")
    return added, synced


def test_add_and_sync_copy_every_readable_secret_field_for_field(run, services, source,
                                                                 token_file, client,
                                                                 owner_headers):
    added, synced = add_and_sync(run, source, token_file)
    assert added == {"name": "src", "host": source.server.url,
                     "apiBase": source.server.url + "/service", "tokenKind": "user"}
    assert synced == [{"name": "src", "created": 7, "updated": 0, "deleted": 0, "overrides": 0,
                       "apps": 2, "environments": 3}]
    for app, env_name in (("shop", "Development"), ("shop", "Production"),
                          ("billing", "Production")):
        assert fields(local_secrets(services, app, env_name)) == \
            fields(source.secrets(app, env_name))
    # References are kept as written and resolve here as at the source, cross-app included.
    app_id = local_env(services, "shop", "Development")["app_id"]
    answer = client.get(f"/v1/secrets/?app_id={app_id}&env=Development&key=DB_URL",
                        headers=owner_headers)
    assert answer.json[0]["value"] == "postgres://db.dev:5432/shopdb"
    billing = client.get(f"/v1/secrets/?app_id={app_id}&env=Development&key=BILLING",
                         headers=owner_headers)
    assert billing.json[0]["value"] == "42"
    # A second sync with nothing changed at the source writes nothing: no new version.
    versions = {s.id: s.version for s in local_secrets(services, "shop", "Development")}
    env_version = local_env(services, "shop", "Development")["version"]
    assert run_json(run, "mirror", "sync", "src")[0]["created"] == 0
    assert {s.id: s.version for s in local_secrets(services, "shop", "Development")} == versions
    assert local_env(services, "shop", "Development")["version"] == env_version


def test_changes_new_secrets_and_deletes_at_the_source_follow(run, services, source,
                                                              token_file, client,
                                                              owner_headers):
    add_and_sync(run, source, token_file)
    before = {s.key: s for s in local_secrets(services, "shop", "Development")}
    at_source = {s.key: s for s in source.secrets("shop", "Development")}
    env = source.env("shop", "Development")
    secret_domain.update_secrets(source.services, source.by, env, [
        SecretChange(id=at_source["DB_HOST"].id, value="db.internal", tags=("ops",))])
    env = source.env("shop", "Development")
    secret_domain.delete_secrets(source.services, source.by, env, [at_source["FLAG"].id])
    source.create("shop", "Development", NewSecret(key="NEW_ONE", value="fresh", path="/x"))
    assert run_json(run, "mirror", "sync", "src") == [{
        "name": "src", "created": 1, "updated": 1, "deleted": 1, "overrides": 0, "apps": 2,
        "environments": 3}]
    after = {s.key: s for s in local_secrets(services, "shop", "Development")}
    assert fields(after.values()) == fields(source.secrets("shop", "Development"))
    assert after["DB_HOST"].version == before["DB_HOST"].version + 1
    assert after["DB_URL"].version == before["DB_URL"].version  # unchanged, not rewritten
    # The deleted secret is kept in local history.
    app_id = local_env(services, "shop", "Development")["app_id"]
    deleted = client.get(f"/v1/secrets/deleted/?app_id={app_id}&env=Development",
                         headers=owner_headers)
    assert deleted.status_code == 200
    assert [row["key"] for row in deleted.json["data"]] == ["FLAG"]


def test_a_source_outage_keeps_the_local_copy_serving(run, services, source, token_file,
                                                      client, owner_headers):
    add_and_sync(run, source, token_file)
    source.server.stop()
    failed = run("mirror", "sync", "src", "--json", ok=False)
    assert failed.exit_code == 1
    (outcome,) = json.loads(failed.output)
    assert outcome["error"].startswith(f"cannot reach {source.server.url}")
    (listed,) = run_json(run, "mirror", "list")
    assert listed["lastError"] == outcome["error"]
    assert listed["failures"] == 1 and listed["lastSuccessAt"] is not None
    assert listed["counts"]["created"] == 7  # the last good sync's
    app_id = local_env(services, "shop", "Development")["app_id"]
    answer = client.get(f"/v1/secrets/?app_id={app_id}&env=Development",
                        headers=owner_headers)
    assert answer.status_code == 200 and len(answer.json) == 5


def test_local_writes_are_refused_at_every_door(run, services, source, token_file, client,
                                                owner, owner_headers, owner_client):
    add_and_sync(run, source, token_file)
    refusal = f"this app is mirrored from {source.server.url}; change it there"
    env = local_env(services, "shop", "Development")
    app_id, env_id = env["app_id"], env["id"]
    secret_id = local_secrets(services, "shop", "Development")[0].id
    query = f"?app_id={app_id}&env=Development"
    before = fields(local_secrets(services, "shop", "Development"))
    for method, body in (("POST", [{"key": "X", "value": "y"}]),
                         ("PUT", [{"id": secret_id, "value": "y"}]),
                         ("DELETE", [secret_id])):
        answer = client.open("/v1/secrets/" + query, method=method,
                             data=json.dumps({"secrets": body}), headers=owner_headers)
        assert (answer.status_code, answer.json) == (403, {"error": refusal}), method
    restored = client.post(f"/v1/secrets/{secret_id}/restore/{query}",
                           data=json.dumps({"version": 1}), headers=owner_headers)
    assert (restored.status_code, restored.json) == (403, {"error": refusal})
    renamed = client.put(f"/v1/apps/{app_id}/", json={"name": "other"},
                         headers=owner_headers)
    assert (renamed.status_code, renamed.json) == (403, {"error": refusal})
    removed = client.delete(f"/v1/environments/{env_id}/", headers=owner_headers)
    assert (removed.status_code, removed.json) == (403, {"error": refusal})
    # The client protocol, as the Phase CLI and SDKs write.
    session = support.Session.open(client, owner)
    sent = support.send(client, "POST", session, {"secrets": [session.entry("X", "y")]})
    assert (sent.status_code, sent.get_json()) == (403, {"error": refusal})
    # The admin command.
    deleted = run("apps", "delete", "shop", ok=False)
    assert deleted.exit_code == 1 and refusal in deleted.output
    # The console.
    page = owner_client.post(f"/console/apps/{app_id}/environments/{env_id}/secrets/new",
                             data={"csrf_token": owner_client.csrf, "key": "X", "value": "y"})
    assert page.status_code == 403 and refusal in page.get_data(as_text=True)
    assert fields(local_secrets(services, "shop", "Development")) == before


def test_the_token_is_not_stored_in_plaintext(run, services, source, token_file, config):
    add_and_sync(run, source, token_file)
    bearer = source.owner.token.split(":")[2]
    rows = services.db.all("SELECT * FROM mirror_sources")
    assert len(rows) == 1
    for row in rows:
        for value in tuple(row):
            text = value if isinstance(value, str) else bytes(value or b"").hex() \
                if isinstance(value, (bytes, memoryview)) else str(value)
            assert bearer not in text and bearer not in str(value)
    if not config.database_url:
        raw = config.database.read_bytes() + b"".join(
            path.read_bytes() for path in config.database.parent.glob("*-wal"))
        assert bearer.encode() not in raw
    # The log of a sync names the host, never the token.
    assert mirror.source_token(services, rows[0]) == source.owner.token


def test_the_audit_log_shows_each_sync(run, services, source, token_file):
    add_and_sync(run, source, token_file)
    source.server.stop()
    run("mirror", "sync", "src", ok=False)
    events = services.db.all("SELECT actor_type, actor_id, action, details FROM audit_events"
                             " WHERE resource_type = 'mirror_source' ORDER BY id")
    actions = [(e["actor_type"], e["action"]) for e in events]
    assert actions == [("operator", "create"), ("mirror", "sync"), ("mirror", "sync")]
    ok, failed = json.loads(events[1]["details"]), json.loads(events[2]["details"])
    assert ok == {"source": "src", "host": source.server.url, "created": 7, "updated": 0,
                  "deleted": 0, "overrides": 0, "apps": 2, "environments": 3}
    assert failed["error"].startswith("cannot reach")
    writes = services.db.all("SELECT actor_type, actor_id FROM audit_events"
                             " WHERE action = 'secrets.mirror'")
    assert {tuple(w) for w in writes} == {("mirror", "src")} and len(writes) == 3


def test_a_service_token_copies_what_it_can_read_only(run, services, source, tmp_path):
    env = source.env("shop", "Production")
    _, issued = support.make_service_account(source.services, "mirror", "Service", [env])
    path = tmp_path / "sa-token"
    path.write_text(issued.token)
    added = run_json(run, "mirror", "add", "--host", source.server.url, "--token-file",
                     str(path), "--name", "src")
    assert added["tokenKind"] == "service"
    assert run_json(run, "mirror", "sync")[0]["environments"] == 1
    (listed,) = run_json(run, "mirror", "list")
    assert listed["apps"][0]["name"] == "shop"
    assert listed["apps"][0]["environments"] == ["Production"]
    assert fields(local_secrets(services, "shop", "Production")) == \
        fields(source.secrets("shop", "Production"))


def test_chosen_apps_and_environments_only(run, services, source, token_file):
    add_and_sync(run, source, token_file, "--app", "shop", "--env", "production")
    (listed,) = run_json(run, "mirror", "list")
    assert [(a["name"], a["environments"]) for a in listed["apps"]] == \
        [("shop", ["Production"])]


def test_a_local_app_of_the_same_name_is_refused_or_renamed(run, services, source,
                                                            token_file):
    support.make_app(services, "shop")
    refused = run("mirror", "add", "--host", source.server.url, "--token-file",
                  str(token_file), ok=False)
    assert refused.exit_code == 1
    assert (f"an app named shop exists on this server and is not the copy of shop at "
            f"{source.server.url}: rename the app here, or mirror shop alone with --as NAME "
            "to name its copy") in refused.output
    assert run_json(run, "mirror", "list") == []
    add_and_sync(run, source, token_file, "--app", "shop", "--as", "shop-cloud")
    assert fields(local_secrets(services, "shop-cloud", "Development")) == \
        fields(source.secrets("shop", "Development"))


class _Answers(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html>not json</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def served(handler):
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def not_phase():
    server = served(_Answers)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def answering(status, body):
    """A host that answers every GET with this status and JSON body."""
    class Answers(_Answers):
        def do_GET(self):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return served(Answers)


@pytest.fixture
def self_signed(tmp_path):
    """An HTTPS server whose certificate no one trusts (made here, signed by itself)."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    start = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = HTTPServer(("127.0.0.1", 0), _Answers)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_bad_input_is_refused_clearly_and_changes_nothing(run, services, source, token_file,
                                                          tmp_path, not_phase, self_signed):
    wrong = tmp_path / "wrong"
    wrong.write_text("just-a-password")
    unknown = tmp_path / "unknown"
    parts = source.owner.token.split(":")
    unknown.write_text(":".join(parts[:2] + [random.token_hex(32)] + parts[3:]))
    dead = f"http://127.0.0.1:{free_port()}"
    tls = self_signed
    unauthorized = answering(401, {"error": "Authentication credentials were not provided."})
    shaped = answering(200, {"wrapped_key_share": "00", "apps": "not a list"})
    refusing, wrong_shape = (f"http://127.0.0.1:{server.server_port}"
                             for server in (unauthorized, shaped))
    # A token of another kind: Phase's own tokens are pss_user or pss_service only.
    other_kind = tmp_path / "other-kind"
    other_kind.write_text(source.owner.token.replace("pss_user:", "pss_app:"))
    cases = [
        (source.server.url, wrong, mirror.WRONG_TOKEN),
        (source.server.url, other_kind, mirror.WRONG_TOKEN),
        (refusing, token_file, f"{refusing} refused the token (401)"),
        (wrong_shape, token_file, f"{wrong_shape} answered /secrets/tokens/ with something "
                                  "that is not what a Phase host sends (malformed JSON)"),
        (dead, token_file, f"cannot reach {dead}: "),
        (tls, token_file, f"TLS failure with {tls}: "),
        (source.server.url, unknown, f"{source.server.url} refused the token (403)"),
        (not_phase, token_file, f"{not_phase} answered /secrets/tokens/ with something"),
        ("ftp://example.com", token_file, "--host: expected an http:// or https:// URL"),
    ]
    for host, path, message in cases:
        result = run("mirror", "add", "--host", host, "--token-file", str(path), ok=False)
        assert result.exit_code == 1, host
        assert result.output.startswith(f"Error: {message}"), (host, result.output)
        assert source.owner.token not in result.output
    for server in (unauthorized, shaped):
        server.shutdown()
        server.server_close()
    assert run_json(run, "mirror", "list") == []
    assert services.db.scalar("SELECT COUNT(*) FROM apps") == 0
    assert services.db.scalar("SELECT COUNT(*) FROM audit_events WHERE resource_type IN"
                              " ('mirror_source', 'app')") == 0


class _Breaking(BaseHTTPRequestHandler):
    """A proxy in front of the source that, once ``broken``, cuts its secrets' answers short."""
    target = None
    broken = False

    def do_GET(self):
        answer = requests.get(self.target + self.path, timeout=10, headers={
            name: value for name, value in self.headers.items() if name.lower() != "host"})
        body = answer.content
        if self.broken and self.path.endswith("/secrets/"):
            body = body[:len(body) // 2]
        self.send_response(answer.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_sync_given_malformed_json_changes_nothing(run, services, source, tmp_path):
    """The source answers a sync's reads with broken JSON (after a good first sync): the sync
    fails saying so, and the copy, its versions and the list's counts stay as they were."""
    class Proxy(_Breaking):
        target = source.server.url

    proxy = served(Proxy)
    try:
        url = f"http://127.0.0.1:{proxy.server_port}"
        token = tmp_path / "token"
        token.write_text(source.owner.token)
        run_json(run, "mirror", "add", "--host", url, "--token-file", str(token), "--name",
                 "src")
        run_json(run, "mirror", "sync", "src")
        before = [(s.id, s.version) for s in local_secrets(services, "shop", "Development")]
        flag = source.secret("shop", "Development", "FLAG")
        source.update("shop", "Development", SecretChange(id=flag.id, value="changed"))
        Proxy.broken = True
        failed = run("mirror", "sync", "src", "--json", ok=False)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert failed.exit_code == 1
    assert json.loads(failed.output)[0]["error"] == (
        f"{url} answered /secrets/ with something that is not what a Phase host sends "
        "(malformed JSON)")
    assert [(s.id, s.version) for s in local_secrets(services, "shop", "Development")] == before
    assert next(s for s in local_secrets(services, "shop", "Development")
                if s.key == "FLAG").value == "on"
    (listed,) = run_json(run, "mirror", "list")
    assert listed["counts"]["created"] == 7 and listed["failures"] == 1


def test_remove_deletes_the_copy_or_keeps_it_writable(run, services, source, token_file):
    add_and_sync(run, source, token_file, "--app", "shop")
    run("mirror", "remove", "src", "--keep-data")
    env = local_env(services, "shop", "Development")
    secret_domain.create_secrets(services, None, env, [NewSecret(key="LOCAL", value="1")])
    add_and_sync(run, source, token_file, "--app", "billing")
    run("mirror", "remove", "src")
    names = {row["name"] for row in services.db.all("SELECT name FROM apps")}
    assert names == {"shop"}


def wait_for(check, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("not in time")


def test_the_server_syncs_on_its_schedule_and_backs_off(run, config, owner, source,
                                                        token_file):
    run("mirror", "add", "--host", source.server.url, "--token-file", str(token_file),
        "--name", "src", "--app", "shop")
    local = LiveServer(config.data_dir, {**database_env(config),
                                         "PHASE_LITE_MIRROR_INTERVAL": "1"})
    local.start()
    try:
        headers = support.bearer_headers(owner)

        def local_values():
            apps = requests.get(local.url + "/v1/apps/", headers=headers, timeout=5).json()
            shop = [app for app in apps["data"] if app["name"] == "shop"]
            if not shop:
                return None
            answer = requests.get(f"{local.url}/v1/secrets/?app_id={shop[0]['id']}"
                                  "&env=Development", headers=headers, timeout=5)
            return {row["key"]: row["value"] for row in answer.json()}

        assert wait_for(local_values)["FLAG"] == "on"
        flag = next(s for s in source.secrets("shop", "Development") if s.key == "FLAG")
        secret_domain.update_secrets(source.services, source.by,
                                     source.env("shop", "Development"),
                                     [SecretChange(id=flag.id, value="off")])
        wait_for(lambda: local_values()["FLAG"] == "off")
        metrics = requests.get(local.url + "/metrics", timeout=5).text
        assert "phase_lite_mirror_sources 1.0" in metrics
        assert "phase_lite_mirror_sources_failing 0.0" in metrics
        source.server.stop()
        wait_for(lambda: run_json(run, "mirror", "list")[0]["failures"] >= 2)
        (listed,) = run_json(run, "mirror", "list")
        assert listed["lastError"].startswith("cannot reach")
        assert "phase_lite_mirror_sources_failing 1.0" in requests.get(
            local.url + "/metrics", timeout=5).text
        assert local_values()["FLAG"] == "off"  # the last good copy serves
        # Back-off: the wait doubles after each failure.
        assert listed["nextRunAt"] > listed["lastAttemptAt"]
    finally:
        local.stop()
    log = local.log_path.read_text()
    assert "mirror src synced from" in log and "mirror src sync from" in log
    assert source.owner.token.split(":")[2] not in log


def phase_run(local, token, app_id, command, home):
    return subprocess.run(
        [str(support.PHASE), "run", "--app-id", app_id, "--env", "Development", command],
        capture_output=True, text=True, timeout=60, cwd=home, start_new_session=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
             "LANG": "C.UTF-8", "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
             "PHASE_HOST": local.url, "PHASE_SERVICE_TOKEN": token})


@pytest.mark.clients
def test_phase_run_against_the_mirror_sees_the_source_values(run, config, services, source,
                                                             token_file, tmp_path, owner,
                                                             installed_clients):
    """The real ``phase`` CLI, given the local server and a local service token granted the
    mirrored environment (access to a mirror is granted as to any app); then given the local
    Owner's personal token, it applies that user's overrides, the source's user's, as
    ``phase run`` with the source's token does at the source."""
    set_overrides(source, DB_HOST=("localhost", True), FLAG=("off", False))
    add_and_sync(run, source, token_file, "--app", "shop", "--app", "billing")
    env = local_env(services, "shop", "Development")
    billing = local_env(services, "billing", "Production")
    production = local_env(services, "shop", "Production")
    _, issued = support.make_service_account(services, "dev", "Service",
                                             [env, production, billing])
    local = LiveServer(config.data_dir, {**database_env(config),
                                         "PHASE_LITE_MIRROR_INTERVAL": "0"})
    local.start()
    home = tmp_path / "home"
    home.mkdir()
    try:
        process = phase_run(local, issued.token, env["app_id"],
                            "printenv DB_URL FLAG BILLING DB_HOST", home)
        personal = phase_run(local, owner.token, env["app_id"], "printenv DB_HOST FLAG", home)
        at_source = phase_run(source.server, source.owner.token,
                              source.env("shop", "Development")["app_id"],
                              "printenv DB_HOST FLAG", home)
    finally:
        local.stop()
    assert process.returncode == 0, process.stdout + process.stderr
    lines = process.stdout.splitlines()
    assert {"postgres://db.dev:5432/shopdb", "on", "42", "db.dev"} <= set(lines), lines
    assert personal.returncode == 0, personal.stdout + personal.stderr
    assert at_source.returncode == 0, at_source.stdout + at_source.stderr
    # The CLI prints a banner for a personal token before the command's own lines.
    for answer in (personal, at_source):
        assert [line for line in answer.stdout.splitlines() if line.strip()][-2:] == \
            ["localhost", "on"], answer.stdout


def test_the_console_shows_the_source_and_syncs_now(run, services, source, token_file,
                                                    owner_client):
    add_and_sync(run, source, token_file, "--app", "shop")
    app_id = local_env(services, "shop", "Development")["app_id"]
    page = owner_client.get(f"/console/apps/{app_id}/").get_data(as_text=True)
    assert f"This app is mirrored from <strong>{source.server.url}</strong>" in page
    assert f'action="/console/apps/{app_id}/mirror/sync"' in page and "Sync now" in page
    source.create("shop", "Development", NewSecret(key="FROM_CONSOLE", value="1"))
    without = owner_client.post(f"/console/apps/{app_id}/mirror/sync")
    assert without.status_code == 403  # no CSRF token: nothing done
    assert "FROM_CONSOLE" not in {s.key for s in local_secrets(services, "shop",
                                                                "Development")}
    synced = owner_client.post(f"/console/apps/{app_id}/mirror/sync",
                               data={"csrf_token": owner_client.csrf})
    assert synced.status_code == 303
    assert "FROM_CONSOLE" in {s.key for s in local_secrets(services, "shop", "Development")}
    shown = owner_client.get(synced.headers["Location"]).get_data(as_text=True)
    assert "Synced from the source: 1 created, 0 updated, 0 deleted." in shown
    source.server.stop()
    failed = owner_client.post(f"/console/apps/{app_id}/mirror/sync",
                               data={"csrf_token": owner_client.csrf})
    shown = owner_client.get(failed.headers["Location"]).get_data(as_text=True)
    assert "The sync failed; the last good copy stays" in shown
    assert f"cannot reach {source.server.url}" in shown


@pytest.mark.sqlite_only  # the key file is SQLite's data directory's
def test_a_master_key_rotation_rewraps_the_token_key(run, services, source, token_file,
                                                     config):
    add_and_sync(run, source, token_file, "--app", "billing")
    run("keys", "rotate-master")
    key_file = config.master_key_file.read_text().splitlines()
    assert len(key_file) == 1  # the previous key is gone: only the new one opens anything
    source.create("billing", "Production", NewSecret(key="AFTER", value="1"))
    assert run_json(run, "mirror", "sync", "src")[0]["created"] == 1


def overrides_seen(client, headers, app_id, env_name="Development"):
    """{key: (value, override value, active) or (value, None)} as REST gives the caller;
    ``client`` is a test client, or the URL of a served process."""
    path = f"/v1/secrets/?app_id={app_id}&env={env_name}"
    if isinstance(client, str):
        answer = requests.get(client + path, headers=headers, timeout=10)
        status, rows = answer.status_code, answer.json()
    else:
        answer = client.get(path, headers=headers)
        status, rows = answer.status_code, answer.json
    assert status == 200, rows
    return {row["key"]: (row["value"], row["override"]["value"], row["override"]["isActive"])
            if row["override"] else (row["value"], None) for row in rows}


def source_overrides(source):
    return overrides_seen(source.server.url, support.bearer_headers(source.owner),
                          source.env("shop", "Development")["app_id"])


def set_overrides(source, **overrides):
    """The source's owner's overrides of shop's Development: KEY=(value, active)."""
    source.update("shop", "Development", *(
        SecretChange(id=source.secret("shop", "Development", key).id,
                     override=Override(value=value, is_active=active))
        for key, (value, active) in overrides.items()))


def test_a_personal_tokens_overrides_become_the_local_owners(run, services, source,
                                                             token_file, client,
                                                             owner_headers):
    """The source's token is its owner's personal one: that user's overrides come along as the
    overrides of this server's Owner (the one local user a mirror's personal token stands for
    unless --user names another), and follow the source's changes and removals."""
    set_overrides(source, DB_HOST=("localhost", True), FLAG=("off", False))
    source_view = source_overrides(source)
    added, synced = add_and_sync(run, source, token_file)
    assert synced[0]["overrides"] == 2 and synced[0]["created"] == 7
    (listed,) = run_json(run, "mirror", "list")
    assert listed["overridesFor"] == "owner@example.com"
    app_id = local_env(services, "shop", "Development")["app_id"]
    seen = overrides_seen(client, owner_headers, app_id)
    assert seen == source_view
    assert seen["DB_HOST"] == ("db.dev", "localhost", True)
    assert seen["FLAG"] == ("on", "off", False) and seen["DB_URL"][1] is None
    # Another token of the same server sees the secrets, never the Owner's overrides.
    _, issued = support.make_service_account(services, "ci", "Service",
                                             [local_env(services, "shop", "Development")])
    assert {row[1] for row in overrides_seen(client, support.bearer_headers(issued),
                                             app_id).values()} == {None}
    # Nothing changed: nothing written, not even an override's time.
    stamps = services.db.all("SELECT id, updated_at FROM personal_secrets ORDER BY id")
    assert run_json(run, "mirror", "sync", "src")[0]["overrides"] == 0
    assert services.db.all("SELECT id, updated_at FROM personal_secrets ORDER BY id") == stamps
    # Changed and removed at the source (Phase's console removes one; its REST cannot).
    versions = {s.key: s.version for s in local_secrets(services, "shop", "Development")}
    set_overrides(source, DB_HOST=("127.0.0.1", False))
    with source.services.db.transaction():
        source.services.db.execute("DELETE FROM personal_secrets WHERE secret_id = ?",
                                   (source.secret("shop", "Development", "FLAG").id,))
    assert run_json(run, "mirror", "sync", "src")[0]["overrides"] == 2
    seen = overrides_seen(client, owner_headers, app_id)
    assert seen == source_overrides(source)
    assert seen["DB_HOST"] == ("db.dev", "127.0.0.1", False) and seen["FLAG"] == ("on", None)
    # An override is the user's own layer: the mirrored secrets got no new version.
    assert {s.key: s.version for s in local_secrets(services, "shop", "Development")} == \
        versions


def test_the_overrides_go_to_the_user_named(run, services, source, token_file, client,
                                            tmp_path):
    set_overrides(source, DB_HOST=("localhost", True))
    support.make_user(services, "second-owner@example.com", "Owner")
    refused = run("mirror", "add", "--host", source.server.url, "--token-file",
                  str(token_file), ok=False)
    assert refused.exit_code == 1
    assert "this server has 2 Owners: name the local user whose personal overrides" \
        in refused.output
    dev, dev_token = support.make_user(services, "dev@example.com", "Developer")
    add_and_sync(run, source, token_file, "--app", "shop", "--user", "dev@example.com")
    assert run_json(run, "mirror", "list")[0]["overridesFor"] == "dev@example.com"
    env = local_env(services, "shop", "Development")
    support.grant(services, support.Grantee.of_user(dev), [env])
    assert overrides_seen(client, support.bearer_headers(dev_token),
                          env["app_id"])["DB_HOST"] == ("db.dev", "localhost", True)
    # A service account's token has no overrides to bring: --user is refused with it.
    _, issued = support.make_service_account(source.services, "reader", "Service",
                                             [source.env("shop", "Production")])
    sa_file = tmp_path / "sa-token"
    sa_file.write_text(issued.token)
    refused = run("mirror", "add", "--host", source.server.url, "--token-file", str(sa_file),
                  "--name", "other", "--user", "dev@example.com", ok=False)
    assert refused.exit_code == 1 and "--user: a service account token has no personal " \
        "overrides" in refused.output
    assert [row["name"] for row in run_json(run, "mirror", "list")] == ["src"]


def local_app_row(services, name):
    rows = app_store.find_apps_by_name(services.db, support.organisation_id(services), name)
    return rows[0] if rows else None


def test_renames_at_the_source_follow_by_source_id(run, services, source, token_file):
    """Apps and environments are matched by their ids at the source: a rename there renames
    the copy (same local ids, same secrets, no new version), names swapped there included."""
    add_and_sync(run, source, token_file)
    shop = local_app_row(services, "shop")
    dev, prod = (local_env(services, "shop", name) for name in ("Development", "Production"))
    versions = {s.id: s.version for s in local_secrets(services, "shop", "Development")}
    source.rename_app("shop", "store")
    source.rename_env("store", "Development", "Dev")
    assert run_json(run, "mirror", "sync", "src")[0] == {
        "name": "src", "created": 0, "updated": 0, "deleted": 0, "overrides": 0, "apps": 2,
        "environments": 3}
    assert local_app_row(services, "shop") is None
    assert local_app_row(services, "store")["id"] == shop["id"]
    assert local_env(services, "store", "Dev")["id"] == dev["id"]
    assert {s.id: s.version for s in local_secrets(services, "store", "Dev")} == versions
    # Names swapped at the source (through a third name there).
    source.rename_env("store", "Dev", "Swap")
    source.rename_env("store", "Production", "Dev")
    source.rename_env("store", "Swap", "Production")
    run_json(run, "mirror", "sync", "src")
    assert local_env(services, "store", "Dev")["id"] == prod["id"]
    assert local_env(services, "store", "Production")["id"] == dev["id"]
    assert fields(local_secrets(services, "store", "Production")) == \
        fields(source.secrets("store", "Production"))
    events = services.db.all("SELECT action, resource_type, details FROM audit_events"
                             " WHERE actor_type = 'mirror' AND action = 'update'")
    renamed = [json.loads(e["details"]) for e in events if e["resource_type"] == "environment"]
    assert {"from": "Development", "to": "Dev", "mirror": "src"} in renamed
    assert any(e["resource_type"] == "app" and json.loads(e["details"])["from"] == "shop"
               for e in events)


def test_a_chosen_app_renamed_at_the_source_stays_chosen(run, services, source, token_file):
    add_and_sync(run, source, token_file, "--app", "shop", "--env", "Development")
    source.rename_app("shop", "store")
    source.rename_env("store", "Development", "Dev")
    source.create("store", "Dev", NewSecret(key="AFTER", value="1"))
    (synced,) = run_json(run, "mirror", "sync", "src")
    assert (synced["created"], synced["apps"], synced["environments"]) == (1, 1, 1)
    assert "removed" not in synced
    assert fields(local_secrets(services, "store", "Dev")) == \
        fields(source.secrets("store", "Dev"))


def test_a_rename_onto_a_local_apps_name_is_refused_and_changes_nothing(run, services, source,
                                                                         token_file, tmp_path):
    add_and_sync(run, source, token_file, "--app", "shop")
    support.make_app(services, "store")
    before = fields(local_secrets(services, "shop", "Development"))
    source.rename_app("shop", "store")
    source.create("store", "Development", NewSecret(key="AFTER", value="1"))
    failed = run("mirror", "sync", "src", "--json", ok=False)
    assert failed.exit_code == 1
    (outcome,) = json.loads(failed.output)
    assert outcome["error"] == (
        f"{source.server.url} renamed shop to store, and an app named store exists on this "
        "server and is not its copy: rename or delete that app here, then sync again")
    assert fields(local_secrets(services, "shop", "Development")) == before
    assert run_json(run, "mirror", "list")[0]["lastError"] == outcome["error"]
    # A copy named with --as keeps its name whatever the source calls the app.
    token = tmp_path / "token"
    run_json(run, "mirror", "add", "--host", source.server.url, "--token-file", str(token),
             "--name", "named", "--app", "store", "--as", "store-copy")
    source.rename_app("store", "shop-again")
    ok = run_json(run, "mirror", "sync", "named")
    assert ok[0]["created"] == 7  # Development and its new secret, Production
    assert fields(local_secrets(services, "store-copy", "Development")) == \
        fields(source.secrets("shop-again", "Development"))
    # Once the local app is out of the way, the first mirror follows the rename.
    run("apps", "delete", "store")
    run_json(run, "mirror", "sync", "src")
    assert fields(local_secrets(services, "shop-again", "Development")) == \
        fields(source.secrets("shop-again", "Development"))


def test_apps_and_environments_removed_at_the_source(run, services, source, token_file,
                                                      client, owner_headers, owner_client):
    """What the source no longer gives keeps its copy, read-only, marked, its secrets deleted
    (kept in history): the source wins, as for a secret deleted there. A new app of the same
    name there fills the same copy again."""
    add_and_sync(run, source, token_file)
    prod = local_env(services, "shop", "Production")
    source.delete_env("shop", "Production")
    (synced,) = run_json(run, "mirror", "sync", "src")
    assert (synced["deleted"], synced["removed"], synced["environments"]) == \
        (1, ["shop/Production"], 2)
    assert local_env(services, "shop", "Production")["id"] == prod["id"]
    assert local_secrets(services, "shop", "Production") == []
    query = f"?app_id={prod['app_id']}&env=Production"
    deleted = client.get("/v1/secrets/deleted/" + query, headers=owner_headers)
    assert [row["key"] for row in deleted.json["data"]] == ["NAME"]
    refused = client.post("/v1/secrets/" + query, headers=owner_headers,
                          data=json.dumps({"secrets": [{"key": "X", "value": "y"}]}))
    assert refused.status_code == 403
    assert refused.json == {"error": f"this app is mirrored from {source.server.url}; "
                                     "change it there"}
    (listed,) = run_json(run, "mirror", "list")
    shop = next(app for app in listed["apps"] if app["name"] == "shop")
    assert shop["environmentsRemovedAtSource"] == ["Production"]
    assert "Production (removed at the source)" in run("mirror", "list").output
    # A second sync has nothing more to do.
    assert "removed" not in run_json(run, "mirror", "sync", "src")[0]
    # A whole app.
    billing = local_app_row(services, "billing")
    source.delete_app("billing")
    (synced,) = run_json(run, "mirror", "sync", "src")
    assert (synced["deleted"], synced["removed"], synced["apps"]) == (1, ["billing"], 1)
    assert local_secrets(services, "billing", "Production") == []
    page = owner_client.get(f"/console/apps/{billing['id']}/").get_data(as_text=True)
    assert "The source no longer gives this app" in page
    assert "its secrets were deleted here and are kept in history" in page
    assert f"This app is mirrored from <strong>{source.server.url}</strong>" in page
    # Made anew at the source under its name: the same copy is filled again.
    support.make_app(source.services, "billing", ["Production"])
    source.create("billing", "Production", NewSecret(key="PRICE", value="43"))
    (synced,) = run_json(run, "mirror", "sync", "src")
    assert (synced["created"], synced["apps"]) == (1, 2)
    assert local_app_row(services, "billing")["id"] == billing["id"]
    assert local_app_row(services, "billing")["mirror_removed_at"] is None
    assert fields(local_secrets(services, "billing", "Production")) == \
        fields(source.secrets("billing", "Production"))


@pytest.mark.sqlite_only  # a backup is a SQLite file
def test_a_backup_verifies_the_mirror_token_and_reports_a_damaged_one(run, services, source,
                                                                       token_file, tmp_path):
    import sqlite3

    from phase_lite.backup import BackupError, verify_backup

    add_and_sync(run, source, token_file, "--app", "billing")
    target = tmp_path / "with-mirror.sqlite3"
    run("backup", str(target))
    with_token = verify_backup(target, services.vault.keyring)
    (wrapped,) = sqlite3.connect(target).execute(
        "SELECT wrapped_key FROM mirror_sources").fetchone()
    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(target.read_bytes())
    conn = sqlite3.connect(damaged)
    conn.execute("UPDATE mirror_sources SET wrapped_key = ?",
                 (bytes(wrapped[:-1]) + bytes([wrapped[-1] ^ 1]),))
    conn.commit()
    conn.close()
    with pytest.raises(BackupError) as refused:
        verify_backup(damaged, services.vault.keyring)
    assert str(refused.value) == (f"{damaged}: the token of mirror src does not open (another "
                                  "master key, or a damaged file)")
    # The token counts among the fields opened: one fewer without the mirror.
    run("mirror", "remove", "src", "--keep-data")
    without = tmp_path / "without-mirror.sqlite3"
    run("backup", str(without))
    assert verify_backup(without, services.vault.keyring).fields == with_token.fields - 1
    # A restore checks the same way and refuses the damaged file, changing nothing.
    restored = run("restore", "--yes", str(damaged), ok=False)
    assert restored.exit_code == 1 and "the token of mirror src does not open" in \
        restored.output
    assert run_json(run, "mirror", "list") == []


def test_an_api_host_is_accepted_and_named(run, services, source, token_file):
    """Phase Cloud's client API is also at its API host's root (``<host>/secrets/``): given
    such a host, the mirror says that one answered, and syncs through it."""
    api_host = source.server.url + "/service"
    added = run_json(run, "mirror", "add", "--host", api_host, "--token-file", str(token_file),
                     "--name", "api", "--app", "billing")
    assert (added["host"], added["apiBase"]) == (api_host, api_host)
    text = run("mirror", "add", "--host", source.server.url, "--token-file", str(token_file),
               "--name", "console", "--app", "shop").output
    assert f"(client API at {source.server.url}/service/secrets/)" in text
    assert run_json(run, "mirror", "sync", "api")[0]["created"] == 1
    assert fields(local_secrets(services, "billing", "Production")) == \
        fields(source.secrets("billing", "Production"))
