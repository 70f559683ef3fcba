"""Security properties: client IP behind proxies, tampered ciphertexts, no leaks into logs or
files, isolation between apps and environments, refused tokens, and fuzzed input."""

import base64
import logging
import secrets as random
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import pytest
from flask import request
import requests
import schemathesis
from schemathesis import GenerationMode
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis import strategies as st

import support
from live import LiveServer
from support import bearer_headers
from phase_lite import paths, phase_crypto, references
from phase_lite import secrets as secret_domain
from phase_lite.api import json_response
from phase_lite.request_context import request_meta
from phase_lite.app import create_app, init_data_dir
from phase_lite.cli import main
from phase_lite.config import load_config
from phase_lite.secrets import NewSecret, Override
from phase_lite.store import apps as app_store
from phase_lite.store import format_time, open_database

pytestmark = pytest.mark.both_backends

INTERNAL = {"error": "Internal server error."}
REFUSED = (401, 403, 404)


def secrets_path(app_id=None, env=None, **extra):
    query = {"app_id": app_id, "env": env, **extra}
    return "/v1/secrets/?" + "&".join(f"{k}={v}" for k, v in query.items() if v is not None)


# -- client IP and trusted proxies -------------------------------------------------------------


@pytest.fixture
def ip_probe(config, owner):
    def make(trusted):
        config.trusted_proxies = tuple(trusted)
        flask_app = create_app(config)

        @flask_app.route("/v1/ip-probe/")
        def probe():
            return json_response({"ip": request_meta(request.environ).ip_address})

        made.append(flask_app)
        return flask_app.test_client()

    made = []
    yield make
    for flask_app in made:
        flask_app.extensions["phase_lite"].close()


@pytest.mark.parametrize("trusted, peer, headers, expected", [
    ((), "10.1.2.3", {"X-Real-IP": "198.51.100.7"}, "10.1.2.3"),
    ((), "10.1.2.3", {"X-Forwarded-For": "198.51.100.7"}, "10.1.2.3"),
    (("10.0.0.0/8",), "10.1.2.3", {"X-Real-IP": "198.51.100.7"}, "198.51.100.7"),
    # X-Forwarded-For from the right: the right-most entry that is not a trusted proxy
    (("10.1.2.3",), "10.1.2.3", {"X-Forwarded-For": "198.51.100.7, 10.9.9.9"}, "10.9.9.9"),
    (("10.1.2.3",), "10.1.2.3", {"X-Forwarded-For": "6.6.6.6, 198.51.100.7"}, "198.51.100.7"),
    (("10.0.0.0/8",), "10.1.2.3", {"X-Forwarded-For": "6.6.6.6,198.51.100.7, 10.9.9.9"},
     "198.51.100.7"),
    (("10.0.0.0/8",), "10.1.2.3", {"X-Forwarded-For": "10.0.0.7, 10.9.9.9"}, "10.0.0.7"),
    (("10.0.0.0/8",), "10.1.2.3", {"X-Forwarded-For": "6.6.6.6, junk, 10.9.9.9"},
     "10.9.9.9"),
    (("10.1.2.3",), "10.1.2.3", {"X-Forwarded-For": "198.51.100.7, junk"}, "10.1.2.3"),
    # X-Real-IP only when no X-Forwarded-For came: a client's own passes appending proxies
    (("10.1.2.3",), "10.1.2.3", {"X-Real-IP": "6.6.6.6",
                                 "X-Forwarded-For": "203.0.113.1"}, "203.0.113.1"),
    (("10.1.2.3",), "10.1.2.3", {"X-Real-IP": "not-an-ip",
                                 "X-Forwarded-For": "203.0.113.1"}, "203.0.113.1"),
    (("10.1.2.3",), "10.1.2.3", {"X-Real-IP": " ", "X-Forwarded-For": "junk"}, "10.1.2.3"),
    (("10.1.2.3",), "10.1.2.3", {}, "10.1.2.3"),
    (("10.0.0.0/8",), "192.0.2.50", {"X-Real-IP": "198.51.100.7"}, "192.0.2.50"),
    (("127.0.0.1", "bogus-entry"), "127.0.0.1", {"X-Real-IP": "2001:db8::1"}, "2001:db8::1"),
    (("::1",), "::1", {"X-Forwarded-For": "2001:db8::2"}, "2001:db8::2"),
    (("10.0.0.0/8",), "fd00::1", {"X-Real-IP": "198.51.100.7"}, "fd00::1"),
])
def test_forwarding_headers_are_believed_only_from_trusted_proxies(ip_probe, trusted, peer,
                                                                   headers, expected):
    client = ip_probe(trusted)
    response = client.get("/v1/ip-probe/", headers=headers,
                          environ_base={"REMOTE_ADDR": peer})
    assert response.get_json() == {"ip": expected}


def test_trusted_proxies_setting_is_read(tmp_path):
    config = load_config({"PHASE_LITE_DATA_DIR": str(tmp_path),
                          "PHASE_LITE_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1 ,"})
    assert config.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")


def test_audit_records_the_forwarded_address(ip_probe, services, demo, owner_headers):
    client = ip_probe(["127.0.0.1"])
    app_row, _ = demo
    response = client.post(secrets_path(app_row["id"], "Development"), headers={
        **owner_headers, "X-Real-IP": "198.51.100.23", "User-Agent": "probe/1"},
        json={"secrets": [{"key": "K", "value": "v"}]})
    assert response.status_code == 200
    event = services.db.one("SELECT * FROM audit_events WHERE action = 'secrets.create'")
    assert (event["ip_address"], event["user_agent"]) == ("198.51.100.23", "probe/1")


def test_unauthenticated_rate_limit_key_uses_the_client_ip(ip_probe, config):
    from phase_lite.request_context import throttle

    config.rate_limit = (1, 60)
    client = ip_probe(["127.0.0.1"])
    flask_app = client.application

    @flask_app.route("/v1/anon-probe/")
    def anon_probe():
        throttle(request.environ)
        return json_response({})

    forwarded = {"X-Real-IP": "198.51.100.1"}
    assert client.get("/v1/anon-probe/", headers=forwarded).status_code == 200
    assert client.get("/v1/anon-probe/", headers=forwarded).status_code == 429
    assert client.get("/v1/anon-probe/", headers={"X-Real-IP": "198.51.100.2"}).status_code == 200


# -- tampered ciphertexts ----------------------------------------------------------------------


@pytest.fixture
def two_apps(services, owner):
    """alpha (Development, Production) and beta (Development), each with a secret carrying a
    comment and an Owner override; return rows and every plaintext written."""
    principal = support.principal_of(services, owner)
    made, plaintexts = {}, []
    for name, env_names in (("alpha", ["Development", "Production"]), ("beta", ["Development"])):
        app_row, env_rows = support.make_app(services, name, env_names)
        app_id = app_row["id"]
        envs = {}
        for env in env_rows.values():
            marker = random.token_hex(6)
            texts = (f"KEY_{marker}".upper(), f"value-{marker}", f"comment-{marker}",
                     f"override-{marker}")
            created = secret_domain.create_secrets(services, principal, env, [
                NewSecret(key=texts[0], value=texts[1], comment=texts[2],
                          override=Override(value=texts[3]))])
            plaintexts.extend(texts)
            envs[env["name"]] = {"row": env, "secret_id": created[0].id, "key": texts[0],
                                 "value": texts[1]}
        made[name] = {"id": app_id, "envs": envs}
    return made, plaintexts


def flip_byte(config, table, column, row_id):
    db = open_database(config.database_location)  # another connection, as a disk fault would
    try:
        damaged = bytearray(db.scalar(f"SELECT {column} FROM {table} WHERE id = ?", (row_id,)))
        damaged[len(damaged) // 2] ^= 0x20
        with db.transaction():
            db.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?", (bytes(damaged), row_id))
    finally:
        db.close()


TAMPER_CASES = [
    # (table, column, row, request that needs it, request that must still work)
    ("secrets", "value_enc", "secret", "list", "alpha/Production"),
    ("secrets", "key_enc", "secret", "list", "alpha/Production"),
    ("secrets", "comment_enc", "secret", "list", "alpha/Production"),
    ("personal_secrets", "value_enc", "override", "list", "alpha/Production"),
    ("environments", "salt_enc", "environment", "by key", "alpha/Production"),
    ("environments", "seed_enc", "environment", "by key", "alpha/Production"),
    ("apps", "wrapped_data_key", "app", "list", "beta/Development"),
]


@pytest.mark.parametrize("table, column, row, needs, control", TAMPER_CASES)
def test_a_flipped_byte_fails_that_read_with_a_logged_500(config, services, two_apps, owner,
                                                          caplog, table, column, row, needs,
                                                          control):
    made, plaintexts = two_apps
    alpha_dev = made["alpha"]["envs"]["Development"]
    row_id = {
        "secret": alpha_dev["secret_id"],
        "override": services.db.scalar("SELECT id FROM personal_secrets WHERE secret_id = ?",
                                       (alpha_dev["secret_id"],)),
        "environment": alpha_dev["row"]["id"],
        "app": made["alpha"]["id"],
    }[row]
    services.close()
    flip_byte(config, table, column, row_id)
    flask_app = create_app(config)  # a new process's view: nothing cached
    client = flask_app.test_client()
    headers = bearer_headers(owner)
    try:
        caplog.set_level(logging.DEBUG)
        extra = {"key": alpha_dev["key"]} if needs == "by key" else {}
        response = client.get(secrets_path(made["alpha"]["id"], "Development", **extra),
                              headers=headers)
        assert response.status_code == 500
        assert response.get_json() == INTERNAL
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any(row_id in message and table in message for message in errors), errors
        assert not [text for text in plaintexts if text in caplog.text]

        control_app, control_env = control.split("/")
        ok = client.get(secrets_path(made[control_app]["id"], control_env), headers=headers)
        assert ok.status_code == 200
        assert [s["value"] for s in ok.get_json()] == [
            made[control_app]["envs"][control_env]["value"]]
    finally:
        flask_app.extensions["phase_lite"].close()


# -- isolation ---------------------------------------------------------------------------------


@pytest.fixture
def narrow_callers(services, two_apps, make_service_token):
    """A service account and a Developer, each granted alpha/Development only."""
    made, _ = two_apps
    alpha_dev = made["alpha"]["envs"]["Development"]["row"]
    sa = make_service_token([alpha_dev], name="narrow")
    _, developer = support.make_user(services, "dev@example.com", "Developer", [alpha_dev])
    return {"service account": sa, "developer": developer}


def foreign_state(db, made):
    """Everything the narrow callers must not change: secrets of the other environments."""
    ids = [env["secret_id"] for name, app in made.items() for env_name, env in app["envs"].items()
           if (name, env_name) != ("alpha", "Development")]
    marks = ",".join("?" * len(ids))
    return (db.all(f"SELECT * FROM secrets WHERE id IN ({marks}) ORDER BY id", ids),
            db.all("SELECT id, name FROM apps ORDER BY id"),
            db.all("SELECT id, name, version FROM environments ORDER BY id"))


def isolation_requests(made):
    alpha, beta = made["alpha"], made["beta"]
    x = alpha["envs"]["Development"]
    y = alpha["envs"]["Production"]
    z = beta["envs"]["Development"]
    own = secrets_path(alpha["id"], "Development")
    body = {"secrets": [{"key": "INTRUDER", "value": "x"}]}
    requests_ = []
    for other in (y, z):
        foreign_id, foreign_env = other["secret_id"], other["row"]["id"]
        app_id = alpha["id"] if other is y else beta["id"]
        env_name = other["row"]["name"]
        requests_ += [
            ("GET", secrets_path(app_id, env_name), {}, None),
            ("GET", "/v1/secrets/", {"Environment": foreign_env}, None),
            ("GET", own, {"Environment": foreign_env}, None),
            ("GET", "/v1/secrets/", {"Secret-Id": foreign_id}, None),
            ("GET", secrets_path(secret_id=foreign_id), {}, None),
            ("GET", secrets_path(alpha["id"], "Development", secret_id=foreign_id), {}, None),
            ("POST", secrets_path(app_id, env_name), {}, body),
            ("POST", own, {"Environment": foreign_env}, body),
            ("PUT", own, {}, {"secrets": [{"id": foreign_id, "value": "hijacked"}]}),
            ("PUT", own, {"Secret-Id": foreign_id},
             {"secrets": [{"id": foreign_id, "value": "hijacked"}]}),
            ("DELETE", own, {}, {"secrets": [foreign_id]}),
            ("DELETE", secrets_path(secret_id=foreign_id), {}, {"secrets": [foreign_id]}),
            ("GET", "/service/secrets/", {"Environment": foreign_env}, None),
            ("POST", "/service/secrets/", {"Environment": foreign_env}, body),
            ("PUT", "/service/secrets/", {"Environment": x["row"]["id"]},
             {"secrets": [{"id": foreign_id, "value": phase_crypto.encrypt_asymmetric(
                 "hijacked", x["row"]["public_key"])}]}),
            ("DELETE", "/service/secrets/", {"Environment": x["row"]["id"]},
             {"secrets": [foreign_id]}),
            ("GET", f"/v1/environments/{foreign_env}/", {}, None),
            ("PUT", f"/v1/environments/{foreign_env}/", {}, {"name": "renamed"}),
            ("DELETE", f"/v1/environments/{foreign_env}/", {}, None),
        ]
    requests_ += [
        ("GET", f"/v1/apps/{beta['id']}/", {}, None),
        ("PUT", f"/v1/apps/{beta['id']}/", {}, {"name": "renamed"}),
        ("DELETE", f"/v1/apps/{beta['id']}/", {}, None),
        ("GET", f"/v1/environments/?app_id={beta['id']}", {}, None),
    ]
    return requests_


@pytest.mark.parametrize("who", ["service account", "developer"])
def test_a_narrow_token_never_reaches_another_app_or_environment(client, services, two_apps,
                                                                 narrow_callers, who):
    made, plaintexts = two_apps
    foreign_texts = [t for t in plaintexts
                     if t not in (made["alpha"]["envs"]["Development"]["key"],
                                  made["alpha"]["envs"]["Development"]["value"])]
    own_texts = {made["alpha"]["envs"]["Development"][k] for k in ("key", "value")}
    foreign_texts = [t for t in foreign_texts if not any(t[-12:] in o for o in own_texts)]
    headers = bearer_headers(narrow_callers[who])
    before = foreign_state(services.db, made)
    for method, path, extra, body in isolation_requests(made):
        response = client.open(path, method=method, headers={**headers, **extra}, json=body)
        text = response.get_data(as_text=True)
        assert not [t for t in foreign_texts if t in text], (method, path, extra)
        if method == "GET" or path.startswith("/v1/"):
            assert response.status_code in REFUSED, (method, path, extra, text)
        else:
            # The client protocol ignores ids it cannot find in its own environment.
            assert response.status_code in (*REFUSED, 200), (method, path, extra, text)
    assert foreign_state(services.db, made) == before
    # The environment it was granted still works.
    own = client.get(secrets_path(made["alpha"]["id"], "Development"), headers=headers)
    assert own.status_code == 200
    assert [s["value"] for s in own.get_json()] == [made["alpha"]["envs"]["Development"]["value"]]


def test_client_protocol_keys_cover_only_granted_environments(client, two_apps, narrow_callers):
    made, _ = two_apps
    response = client.get("/service/secrets/tokens/",
                          headers=bearer_headers(narrow_callers["service account"]))
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert made["alpha"]["envs"]["Development"]["row"]["id"] in text
    for name, env in (("alpha", "Production"), ("beta", "Development")):
        assert made[name]["envs"][env]["row"]["id"] not in text
    assert made["beta"]["id"] not in text


ENTRY_POINTS = [
    ("GET", "/v1/secrets/?app_id={app}&env=Development", None),
    ("POST", "/v1/secrets/?app_id={app}&env=Development",
     {"secrets": [{"key": "A", "value": "b"}]}),
    ("PUT", "/v1/secrets/?app_id={app}&env=Development", {"secrets": [{"id": "x", "value": "b"}]}),
    ("DELETE", "/v1/secrets/?app_id={app}&env=Development", {"secrets": ["x"]}),
    ("GET", "/service/public/v1/secrets/?app_id={app}&env=Development", None),
    ("GET", "/v1/apps/", None),
    ("GET", "/v1/apps/{app}/", None),
    ("GET", "/v1/environments/?app_id={app}", None),
    ("GET", "/v1/service-accounts/", None),
    ("GET", "/service/secrets/tokens/", None),
    ("GET", "/service/secrets/", None),
    ("POST", "/service/secrets/", {"secrets": []}),
]


@pytest.mark.parametrize("state", ["revoked", "expired"])
@pytest.mark.parametrize("kind", ["user", "service"])
def test_revoked_and_expired_tokens_are_refused_everywhere(client, services, demo,
                                                           make_service_token, state, kind):
    app_row, envs = demo
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    expires_at = format_time(past) if state == "expired" else None
    if kind == "service":
        issued = make_service_token(list(envs.values()), name="gone", role="Service",
                                    expires_at=expires_at)
    else:
        issued = support.user_token(services, "owner@example.com", "gone", expires_at)
    if state == "revoked":
        support.revoke(services, issued.id)
    headers = {**bearer_headers(issued), "Environment": envs["Development"]["id"]}
    for method, path, body in ENTRY_POINTS:
        response = client.open(path.format(app=app_row["id"]), method=method, headers=headers,
                               json=body)
        assert response.status_code in (401, 403), (method, path, response.status_code)
        assert response.get_json() == {"error": "Token expired or deleted"}, (method, path)


# -- nothing leaks into logs or files ----------------------------------------------------------


def key_material(services):
    """Every secret key the server holds in memory, in the forms a leak would take."""
    found = []
    for app in app_store.all_apps(services.db):
        data_key = services.vault.data_key(app["id"])
        found += [data_key.hex(), base64.b64encode(data_key).decode(), data_key]
        for env in app_store.list_environments(services.db, app["id"]):
            keys = services.vault.environment_keys(env)
            found += [keys.seed, keys.salt, keys.private_key, bytes.fromhex(keys.seed),
                      bytes.fromhex(keys.private_key)]
    return found


def token_parts(issued):
    """The secret parts of a token: bearer, key share and wrap key (not its public key)."""
    _, _, bearer, _public, share, wrap = issued.token.split(":")
    return [bearer, share, wrap, issued.token]


def scan(blob: bytes, needles):
    hits = []
    for needle in needles:
        raw = needle if isinstance(needle, bytes) else needle.encode()
        if raw in blob or (isinstance(needle, str) and needle.lower().encode() in blob.lower()):
            hits.append(needle if isinstance(needle, str) else needle.hex()[:12])
    return hits


def data_files(data_dir):
    return {path.name: path.read_bytes() for path in sorted(data_dir.iterdir())
            if path.is_file() and path.name != "master.key"}


@pytest.mark.slow
@pytest.mark.sqlite_only  # reads the SQLite files
def test_a_full_crud_run_leaks_nothing_into_logs_or_files(config, owner, services, demo,
                                                          sa_token, tmp_path):
    app_row, envs = demo
    marker = random.token_hex(8)
    key, value, comment = f"LeakKey_{marker}", f"leak-value-{marker}", f"leak-comment-{marker}"
    value2, comment2, override = f"leak-value2-{marker}", f"leak-c2-{marker}", f"leak-ovr-{marker}"
    key2 = f"LeakRenamed_{marker}"
    plaintexts = [key, key.upper(), key2, key2.upper(), value, value2, comment, comment2,
                  override]
    master_line = config.master_key_file.read_text().strip()
    material = key_material(services) + [master_line, base64.b64decode(master_line)]
    tokens = token_parts(owner) + token_parts(sa_token)
    server = LiveServer(config.data_dir, {"PHASE_LITE_LOG_LEVEL": "DEBUG"}).start()
    url = f"{server.url}/service/public/v1/secrets/?app_id={app_row['id']}&env=Development"
    headers = bearer_headers(owner)
    try:
        created = requests.post(url, headers=headers, timeout=10, json={"secrets": [{
            "key": key, "value": value, "comment": comment, "tags": ["t"],
            "override": {"value": override, "isActive": True}}]})
        assert created.status_code == 200, created.text
        secret_id = created.json()[0]["id"]
        steps = [
            requests.post(url, headers=headers, timeout=10,
                          json={"secrets": [{"key": key, "value": value}]}),  # 409
            requests.post(url, headers=headers, timeout=10,
                          data=f'{{"secrets": [{{"key": "{key}", "value": "{value}"'),  # 400
            requests.get(url, headers=headers, timeout=10),
            requests.get(url + f"&key={key}", headers=headers, timeout=10),
            requests.get(url, headers=bearer_headers(sa_token), timeout=10),
            requests.put(url, headers=headers, timeout=10, json={"secrets": [{
                "id": secret_id, "value": value2, "comment": comment2, "key": key2}]}),
            requests.get(f"{server.url}/service/secrets/",
                         headers={**bearer_headers(sa_token),
                                  "Environment": envs["Development"]["id"]}, timeout=10),
            requests.get(f"{server.url}/service/secrets/tokens/",
                         headers=bearer_headers(sa_token), timeout=10),
            requests.get(f"{server.url}/v1/apps/", headers=headers, timeout=10),
            requests.get(url, headers={"Authorization": f"Bearer User {tokens[0][:-4]}0000"},
                         timeout=10),
        ]
        assert [r.status_code for r in steps] == [409, 400, 200, 200, 200, 200, 200, 200, 200,
                                                  401]
        running = data_files(config.data_dir)
        assert any(name.endswith("-wal") for name in running)
        deleted = requests.delete(url, headers=headers, timeout=10,
                                  json={"secrets": [secret_id]})
        assert deleted.status_code == 200
        assert scan(b"".join(running.values()), plaintexts + tokens + material) == []
    finally:
        server.stop()

    runner = CliRunner()
    env = {"PHASE_LITE_DATA_DIR": str(config.data_dir)}
    outputs = [runner.invoke(main, args, env=env) for args in (
        ["apps", "list"], ["envs", "list", "demo"], ["users", "list"], ["users", "tokens", "list"],
        ["service-accounts", "tokens", "list", "ci"], ["audit", "list", "--json", "--limit", "500"],
        ["backup", str(tmp_path / "leak.sqlite3")], ["keys", "rotate-app", "demo"],
        ["audit", "prune", "--older-than-days", "1"])]
    assert [o.exit_code for o in outputs] == [0] * len(outputs), [o.output for o in outputs]
    audit_text = outputs.pop(5).output
    cli_text = "\n".join(o.output for o in outputs)
    log_text = server.log_path.read_text()
    assert "DEBUG" in log_text or "INFO" in log_text or log_text  # the run was logged
    for where, text in (("server log", log_text), ("admin command", cli_text)):
        assert scan(text.encode(), plaintexts + tokens + material) == [], where
    # ``audit list`` names keys for the local operator (decrypted with the app's data key, never
    # stored in plaintext); values, comments, overrides, tokens and key material stay out.
    assert key2.upper() in audit_text  # the secret's current name
    assert scan(audit_text.encode(), plaintexts[4:] + tokens + material) == []
    stopped = data_files(config.data_dir)
    assert scan(b"".join(stopped.values()), plaintexts + tokens + material) == []
    assert scan((tmp_path / "leak.sqlite3").read_bytes(), plaintexts + tokens + material) == []
    conn = sqlite3.connect(config.database)
    try:
        stored = [row[0] for row in conn.execute("SELECT token_hash FROM tokens")]
    finally:
        conn.close()
    assert all(len(h) == 64 for h in stored)
    assert not set(stored) & {t for t in tokens}


# -- fuzzing -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    config = load_config({"PHASE_LITE_DATA_DIR": str(data_dir)}, testing=True)
    owner = init_data_dir(config, "owner@example.com")
    flask_app = create_app(config)
    services = flask_app.extensions["phase_lite"]
    app_row, envs = support.make_app(services, "fuzz")
    app_id, env = app_row["id"], envs["Development"]
    created = secret_domain.create_secrets(services, support.principal_of(services, owner), env, [
        NewSecret(key="BASE", value="base"), NewSecret(key="REF", value="${BASE}-${Production.X}")])
    yield {"app": flask_app, "owner": owner, "app_id": app_id, "env_id": env["id"],
           "secret_id": created[0].id}
    services.close()


def _with_real_scope(case, target):
    """The same case aimed at a real app, environment and secret, to get past the lookups."""
    query = dict(case.query or {})
    for name, real in (("app_id", target["app_id"]), ("env", "Development"),
                       ("secret_id", target["secret_id"])):
        if name in query:
            query[name] = real
    case.query = query
    for name in case.path_parameters or {}:
        if "app" in name:
            case.path_parameters[name] = target["app_id"]
        elif "env" in name:
            case.path_parameters[name] = target["env_id"]
    return case


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_get_a_5xx(fuzz_target, mode):
    """Every operation of the served OpenAPI document, a bounded number of examples each."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_target["app"])
    headers = bearer_headers(fuzz_target["owner"])
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    skipped = []

    for operation in operations:
        # The client protocol lives under /service, not under the document's /service/public.
        base_url = ("http://localhost/service" if operation.path.startswith("/secrets/")
                    else None)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            attempts = [(case, headers)]
            if not (case.method.upper() == "DELETE" and case.path_parameters):
                # Keep the real app and environment alive for the operations after this one.
                attempts.append((_with_real_scope(case, fuzz_target),
                                 {**headers, "Environment": fuzz_target["env_id"]}))
            for attempt, sent_headers in attempts:
                response = attempt.call(headers=sent_headers, base_url=base_url)
                assert response.status_code < 500, (
                    attempt.method, attempt.formatted_path, attempt.query,
                    response.status_code, response.text[:300])
                if response.status_code >= 400 and attempt.method.upper() != "HEAD":
                    body = response.json()
                    assert list(body) == ["error"] and isinstance(body["error"], str), body

        try:
            check()
        except Unsatisfiable:
            # Nothing in this operation can be made invalid (no parameters, no body).
            assert mode is GenerationMode.NEGATIVE, operation.label
            skipped.append(operation.label)
    assert len(skipped) < len(operations) / 2, skipped


# -- properties of the path and reference functions --------------------------------------------


@given(st.one_of(st.text(), st.none(), st.integers(), st.lists(st.text())))
@settings(database=None)
def test_normalised_paths_are_canonical_and_never_raise(raw):
    path = paths.normalize_path(raw)
    assert path.startswith("/")
    assert "//" not in path
    assert path == "/" or not path.endswith("/")
    assert paths.normalize_path(path) == path
    if isinstance(raw, str) and raw.strip("/"):
        assert path.strip("/") == "/".join(p for p in raw.split("/") if p)


@given(st.text())
@settings(database=None)
def test_folder_chains_and_split_references_never_raise(raw):
    path = paths.normalize_path(raw)
    chain = paths.folder_chain(path)
    assert [folder for folder, _, _ in chain][-1:] == ([] if path == "/" else [path])
    folder, key = paths.split_reference(raw)
    assert folder == paths.normalize_path(folder)
    assert "/" not in key


class DictSource:
    """Environments e0..e2 of app "a" holding a few keys with reference-laden values."""

    def __init__(self, values, readable):
        self.values = values
        self.readable = readable
        self.lookups = 0

    def app_environment(self, env, app_name, env_name):
        return env_name.lower() if app_name.lower() == "a" and env_name.lower() in (
            "e0", "e1", "e2") else None

    def sibling_environment(self, env, env_name):
        return self.app_environment(env, "a", env_name)

    def may_read(self, env):
        return env in self.readable

    def find(self, env, path, key_name):
        self.lookups += 1
        value = self.values.get((env, path, key_name))
        return None if value is None else ((env, path, key_name), value)


NAMES = st.sampled_from(["A", "B", "C", "a", "D/E"])
REFERENCE = st.one_of(
    NAMES.map(lambda n: f"${{{n}}}"),
    st.tuples(st.sampled_from(["e0", "E1", "e2", "zz"]), NAMES)
      .map(lambda t: f"${{{t[0]}.{t[1]}}}"),
    st.tuples(st.sampled_from(["a", "A", "b"]), st.sampled_from(["e0", "e1"]), NAMES)
      .map(lambda t: f"${{{t[0]}::{t[1]}.{t[2]}}}"),
    st.sampled_from(["${", "}", "${}", "${{A}}", "$", "{", "${A", "${.}", "${::.}", "${a::.}"]),
)
VALUE = st.lists(st.one_of(REFERENCE, st.text(max_size=3)), max_size=4).map("".join)


@given(values=st.dictionaries(
           st.tuples(st.sampled_from(["e0", "e1", "e2"]), st.sampled_from(["/", "/D"]),
                     st.sampled_from(["A", "B", "C", "E"])),
           VALUE, max_size=8),
       start=VALUE,
       readable=st.sets(st.sampled_from(["e0", "e1", "e2"])))
@settings(max_examples=300, deadline=None, database=None)
def test_reference_resolution_terminates_and_never_raises(values, start, readable):
    source = DictSource(values, readable | {"e0"})
    began = time.monotonic()
    resolved = references.resolve(start, "e0", ("e0", "/", "START"), source)
    assert isinstance(resolved, str)
    assert time.monotonic() - began < 5
    if "${" not in start:
        assert resolved == start
