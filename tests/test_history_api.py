"""Secret history, restore and deleted secrets (phase_lite extensions), over HTTP: every route
under every prefix, the scope, access and permission refusals of /v1/secrets/, restore
collisions, and the audit trail of a restore."""

import json

import pytest

import support
from support import bearer_headers
from phase_lite import schemas
from phase_lite.store import accounts as account_store
from phase_lite.store.audit import EVENTS

pytestmark = pytest.mark.both_backends

PREFIXES = ["", "/public", "/service", "/service/public"]
NO_ENV = "Environment context required. Supply `app_id` and `env` as query parameters."
ZERO_ID = "00000000-0000-0000-0000-000000000000"
VERSION_FIELDS = ["version", "event", "key", "value", "comment", "tags", "path", "type",
                  "restoredFrom", "actor", "createdAt"]
DELETED_FIELDS = ["id", "key", "path", "type", "version", "deletedAt", "deletedBy"]


Env = support.SecretsRoutes


def error(response):
    return response.status_code, response.json


@pytest.fixture
def edited(pat, sa):
    """A secret created by the Owner, updated by the service account, then deleted by the
    Owner: (secret id, its three states)."""
    (created,) = pat.secrets("POST", [{"key": "DB_URL", "value": "one", "comment": "first",
                                       "tags": ["ops"], "path": "/db"}])
    (updated,) = sa.secrets("PUT", [{"id": created["id"], "value": "two", "comment": "second",
                                     "tags": [], "path": "/"}])
    assert pat.secrets("DELETE", [created["id"]]) == {"message": "Deleted 1 secret"}
    return created["id"], created, updated


def owner_actor(db):
    user_id = db.scalar("SELECT id FROM users WHERE email = 'owner@example.com'")
    return {"type": "user", "id": user_id, "name": "owner@example.com"}


def sa_actor(db, name="ci"):
    account_id = db.scalar("SELECT id FROM service_accounts WHERE name = ?", (name,))
    return {"type": "service", "id": account_id, "name": name}


# -- history ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_history_lists_every_version_newest_first(client, app_id, owner_headers, db, edited,
                                                  prefix):
    secret_id, created, updated = edited
    response = Env(client, app_id, owner_headers, prefix=prefix).history(secret_id)
    assert response.status_code == 200
    assert schemas.SecretHistory().validate(response.json) == {}
    data = response.json["data"]
    assert [list(item) for item in data] == [VERSION_FIELDS] * 3
    assert [(v["version"], v["event"]) for v in data] == [
        (2, "deleted"), (2, "updated"), (1, "created")]
    deleted, second, first = data
    assert (first["key"], first["value"], first["comment"], first["tags"], first["path"],
            first["type"]) == ("DB_URL", "one", "first", ["ops"], "/db", "secret")
    assert (second["value"], second["comment"], second["tags"], second["path"]) == (
        "two", "second", [], "/")
    assert {k: v for k, v in deleted.items() if k not in ("event", "actor", "createdAt")} == {
        k: v for k, v in second.items() if k not in ("event", "actor", "createdAt")}
    assert first["actor"] == deleted["actor"] == owner_actor(db)
    assert second["actor"] == sa_actor(db)
    assert first["createdAt"] == created["createdAt"]
    assert second["createdAt"] == updated["updatedAt"]
    assert all(v["restoredFrom"] is None for v in data)


def test_history_shows_references_as_stored(pat):
    pat.secrets("POST", [{"key": "HOST", "value": "db.internal"}])
    (ref,) = pat.secrets("POST", [{"key": "URL", "value": "pg://${HOST}/x"}])
    assert ref["value"] == "pg://db.internal/x"
    assert pat.history(ref["id"]).json["data"][0]["value"] == "pg://${HOST}/x"


def test_history_scoped_by_environment_header_or_secret_id(client, pat, envs, edited,
                                                           owner_headers):
    secret_id = edited[0]
    by_header = client.get(f"/v1/secrets/{secret_id}/history/",
                           headers={**owner_headers, "Environment": envs["Development"]["id"]})
    assert by_header.status_code == 200 and len(by_header.json["data"]) == 3
    by_secret = client.get(f"/v1/secrets/{secret_id}/history/?secret_id={secret_id}",
                           headers=owner_headers)
    assert by_secret.json == by_header.json


def test_history_of_an_unknown_secret_or_one_of_another_environment_is_404(pat, client, app_id,
                                                                          owner_headers):
    (prod,) = Env(client, app_id, owner_headers, env="Production").secrets(
        "POST", [{"key": "P", "value": "p"}])
    for secret_id in (ZERO_ID, prod["id"], "not-a-uuid"):
        assert error(pat.history(secret_id)) == (404, {"error": "Secret not found"})


def test_history_needs_an_environment(client, edited, owner_headers):
    response = client.get(f"/v1/secrets/{edited[0]}/history/", headers=owner_headers)
    assert error(response) == (403, {"error": NO_ENV})


# -- refusals shared by every route ----------------------------------------------------------


def routes(env, secret_id):
    """One request per route: (name, callable taking headers and query)."""
    return {
        "history": lambda headers, query=None: env.history(secret_id, headers, query),
        "restore": lambda headers, query=None: env.restore(secret_id, 1, headers=headers,
                                                           query=query),
        "deleted": lambda headers, query=None: env.deleted(query, headers=headers),
    }


ROUTES = ["history", "restore", "deleted"]


@pytest.mark.parametrize("route", ROUTES)
def test_service_account_without_the_environment_is_refused(client, app_id, envs, edited,
                                                           make_service_token, route):
    restricted = bearer_headers(make_service_token([envs["Development"]], name="dev-only"))
    env = Env(client, app_id, restricted, env="Production")
    response = routes(env, edited[0])[route](restricted)
    assert error(response) == (401, {"error": "Service account cannot access this environment"})


@pytest.fixture
def make_user(services):
    def make(email, role, env_rows=()):
        return bearer_headers(support.make_user(services, email, role, env_rows)[1])

    return make


@pytest.mark.parametrize("route", ROUTES)
def test_user_without_the_environment_is_refused(client, app_id, envs, edited, make_user, route):
    headers = make_user("dev@example.com", "Developer", [envs["Staging"]])
    response = routes(Env(client, app_id, headers), edited[0])[route](headers)
    assert error(response) == (403, {"error": "User cannot access this environment"})


@pytest.mark.parametrize("route", ROUTES)
def test_missing_or_unknown_token(client, app_id, edited, route):
    call = routes(Env(client, app_id, {}), edited[0])[route]
    assert error(call({})) == (401, {"error": "Authentication credentials were not provided."})
    assert error(call({"Authorization": "Bearer User " + "0" * 64})) == (
        401, {"error": "Token expired or deleted"})


@pytest.mark.parametrize("route", ROUTES)
def test_unknown_app_or_environment(client, app_id, edited, owner_headers, route):
    call = routes(Env(client, app_id, owner_headers), edited[0])[route]
    assert error(call(owner_headers, {"app_id": app_id, "env": "Nope"})) == (
        404, {"error": f"Environment 'Nope' not found in App {app_id}"})
    assert error(call(owner_headers, {"app_id": ZERO_ID, "env": "Development"})) == (
        404, {"error": f"App with ID {ZERO_ID} not found"})
    assert error(call(owner_headers, {})) == (403, {"error": NO_ENV})


@pytest.mark.parametrize("route, action", [("history", "read"), ("deleted", "read"),
                                           ("restore", "update")])
def test_role_permission_decides(client, app_id, db, services, envs, edited, make_user, route,
                                 action):
    org_id = support.organisation_id(services)
    others = {"read": ["create", "update", "delete"], "update": ["read", "create", "delete"]}
    permissions = {"permissions": {}, "appPermissions": {"Secrets": others[action]},
                   "globalAccess": False}
    with db.transaction():
        account_store.insert_role(db, org_id, "Limited", "", "", json.dumps(permissions), False)
    headers = make_user("limited@example.com", "Limited", [envs["Development"]])
    response = routes(Env(client, app_id, headers), edited[0])[route](headers)
    assert error(response) == (
        403, {"error": f"You don't have permission to {action} secrets in this environment."})


@pytest.mark.parametrize("route", ROUTES)
def test_accept_header_without_json_is_406(pat, edited, owner_headers, route):
    response = routes(pat, edited[0])[route]({**owner_headers, "Accept": "text/html"})
    assert error(response) == (406, {"error": "Could not satisfy the request Accept header."})


def test_rate_limit_counts_every_route(config, owner, demo, edited):
    from phase_lite.app import create_app

    config.rate_limit = (3, 60)
    limited = create_app(config)
    try:
        env = Env(limited.test_client(), demo[0]["id"], bearer_headers(owner))
        calls = routes(env, edited[0])
        assert [calls[name](env.headers).status_code for name in ROUTES] == [200, 200, 200]
        response = calls["history"](env.headers)
        assert response.status_code == 429 and "Retry-After" in response.headers
        assert response.json["error"].startswith("Request was throttled.")
    finally:
        limited.extensions["phase_lite"].close()


def test_other_methods_are_405(pat, edited):
    for method, route in (("DELETE", f"{edited[0]}/history/"), ("GET", f"{edited[0]}/restore/"),
                          ("POST", "deleted/")):
        response = pat.client.open(pat.url(route), method=method, headers=pat.headers)
        assert error(response) == (405, {"error": f'Method "{method}" not allowed.'})


# -- deleted secrets -------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_deleted_secrets_list_who_deleted_what(client, app_id, owner_headers, sa, db, edited,
                                               prefix):
    (other,) = sa.secrets("POST", [{"key": "TEMP", "value": "t", "type": "config"}])
    sa.secrets("DELETE", [other["id"]])
    sa.secrets("POST", [{"key": "KEPT", "value": "k"}])
    response = Env(client, app_id, owner_headers, prefix=prefix).deleted()
    assert response.status_code == 200
    assert schemas.DeletedSecrets().validate(response.json) == {}
    data = response.json["data"]
    assert [list(item) for item in data] == [DELETED_FIELDS] * 2
    assert [(d["id"], d["key"], d["path"], d["type"], d["version"]) for d in data] == [
        (other["id"], "TEMP", "/", "config", 1), (edited[0], "DB_URL", "/", "secret", 2)]
    assert data[0]["deletedBy"] == sa_actor(db)
    assert data[1]["deletedBy"] == owner_actor(db)
    assert data[0]["deletedAt"] > data[1]["deletedAt"]


def test_deleted_secrets_of_an_empty_environment(pat):
    assert pat.deleted().json == {"data": []}


# -- restore ---------------------------------------------------------------------------------


def version_rows(db, secret_id):
    return [tuple(row) for row in db.all(
        "SELECT id, version, event, key_enc, value_enc, comment_enc, path, tags, created_at"
        " FROM secret_versions WHERE secret_id = ? ORDER BY rowid", (secret_id,))]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_restore_undeletes_at_a_new_version(client, app_id, owner_headers, pat, db, edited,
                                            prefix):
    secret_id = edited[0]
    before = version_rows(db, secret_id)
    response = Env(client, app_id, owner_headers, prefix=prefix).restore(secret_id, 1)
    assert response.status_code == 200
    assert schemas.Secret().validate(response.json) == {}
    restored = response.json
    (listed,) = pat.listed()
    assert restored == listed
    assert (restored["id"], restored["version"]) == (secret_id, 3)
    assert (restored["key"], restored["value"], restored["comment"], restored["tags"],
            restored["path"], restored["type"]) == ("DB_URL", "one", "first", ["ops"], "/db",
                                                    "secret")
    assert version_rows(db, secret_id)[:3] == before  # old versions are never rewritten
    newest = pat.history(secret_id).json["data"][0]
    assert (newest["version"], newest["event"], newest["restoredFrom"], newest["value"]) == (
        3, "restored", 1, "one")
    assert newest["actor"] == owner_actor(db)
    assert pat.deleted().json == {"data": []}


def test_restore_of_a_live_secret_brings_back_its_content(pat, sa):
    (secret,) = pat.secrets("POST", [{"key": "A", "value": "1", "tags": ["x"]}])
    pat.secrets("PUT", [{"id": secret["id"], "key": "B", "value": "2", "comment": "c",
                         "tags": ["y"], "path": "/moved", "type": "config"}])
    restored = sa.restore(secret["id"], 1).json
    assert (restored["key"], restored["value"], restored["comment"], restored["tags"],
            restored["path"], restored["type"], restored["version"]) == (
        "A", "1", "", ["x"], "/", "secret", 3)
    assert [(s["id"], s["key"], s["path"]) for s in pat.listed()] == [(secret["id"], "A", "/")]


def test_restore_resolves_references_and_shows_the_callers_override(pat):
    pat.secrets("POST", [{"key": "HOST", "value": "db"}])
    (ref,) = pat.secrets("POST", [{"key": "URL", "value": "${HOST}",
                                   "override": {"value": "mine", "isActive": True}}])
    pat.secrets("PUT", [{"id": ref["id"], "value": "plain"}])
    restored = pat.restore(ref["id"], 1).json
    assert restored["value"] == "db"
    assert restored["override"]["value"] == "mine"


def test_restore_collision_with_another_live_secret_is_409_and_changes_nothing(pat, db):
    (first,) = pat.secrets("POST", [{"key": "NAME", "value": "old"}])
    pat.secrets("PUT", [{"id": first["id"], "key": "RENAMED"}])
    pat.secrets("POST", [{"key": "NAME", "value": "new"}])
    before = (pat.listed(), version_rows(db, first["id"]))
    assert error(pat.restore(first["id"], 1)) == (409, {"error": "Duplicate secret found"})
    assert (pat.listed(), version_rows(db, first["id"])) == before


def test_undelete_collision_with_a_new_secret_of_that_key_is_409(pat, edited):
    secret_id = edited[0]
    pat.secrets("POST", [{"key": "DB_URL", "value": "again"}])
    assert error(pat.restore(secret_id, 2)) == (409, {"error": "Duplicate secret found"})
    assert [d["id"] for d in pat.deleted().json["data"]] == [secret_id]
    assert pat.restore(secret_id, 1).status_code == 200  # at /db: no collision


def test_restore_of_an_unknown_version_or_secret_is_404(pat, edited, client, app_id,
                                                        owner_headers):
    assert error(pat.restore(edited[0], 3)) == (
        404, {"error": "Version 3 of this secret not found"})
    assert error(pat.restore(ZERO_ID, 1)) == (404, {"error": "Secret not found"})
    (prod,) = Env(client, app_id, owner_headers, env="Production").secrets(
        "POST", [{"key": "P", "value": "p"}])
    assert error(pat.restore(prod["id"], 1)) == (404, {"error": "Secret not found"})


@pytest.mark.parametrize("raw, message", [
    ("", "Request body is required."),
    ("{", "Request body must be valid JSON."),
    ("[1]", "Request body must be a JSON object."),
    ("{}", "'version' must be a positive integer."),
    ('{"version": 0}', "'version' must be a positive integer."),
    ('{"version": "1"}', "'version' must be a positive integer."),
    ('{"version": true}', "'version' must be a positive integer."),
    ('{"version": 1.5}', "'version' must be a positive integer."),
    ('{"version": 9223372036854775808}', "'version' must be a positive integer."),
])
def test_restore_body_errors(pat, edited, db, raw, message):
    before = version_rows(db, edited[0])
    assert error(pat.restore(edited[0], raw=raw)) == (400, {"error": message})
    assert version_rows(db, edited[0]) == before


def test_sealed_secret_cannot_be_restored_to_an_unsealed_version(pat):
    (secret,) = pat.secrets("POST", [{"key": "S", "value": "v"}])
    pat.secrets("PUT", [{"id": secret["id"], "type": "sealed"}])
    assert error(pat.restore(secret["id"], 1)) == (400, {"error": (
        "Sealed secrets cannot be unsealed. Delete and recreate the secret instead.")})
    assert pat.restore(secret["id"], 2).json["type"] == "sealed"


def test_the_audit_log_shows_the_restore_with_its_actor(pat, sa, db, services, edited):
    secret_id = edited[0]
    sa.restore(secret_id, 1)
    sa.history(secret_id)
    sa.deleted()
    services.read_log.flush()
    events = db.all(f"SELECT action, actor_type, actor_id, details FROM {EVENTS}"
                    " WHERE action IN ('secrets.restore', 'secrets.read_history',"
                    " 'secrets.read_deleted') ORDER BY id")
    actor_id = sa_actor(db)["id"]
    assert [(e["action"], e["actor_type"], e["actor_id"]) for e in events] == [
        ("secrets.restore", "service", actor_id), ("secrets.read_history", "service", actor_id),
        ("secrets.read_deleted", "service", actor_id)]
    assert json.loads(events[0]["details"]) == {"secrets": [{"id": secret_id, "version": 3}]}
    assert json.loads(events[1]["details"]) == {"secrets": [secret_id]}


def test_a_failed_restore_records_nothing(pat, db, edited):
    count = db.scalar("SELECT count(*) FROM audit_events WHERE action = 'secrets.restore'")
    pat.restore(edited[0], 9)
    assert db.scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'secrets.restore'") == count


def test_phase_clients_read_the_restored_secret(pat, sa, edited):
    """The snapshot and body caches move on: a GET right after a restore shows it."""
    assert sa.listed() == []
    sa.restore(edited[0], 2)
    assert [(s["key"], s["value"]) for s in sa.listed()] == [("DB_URL", "two")]


# -- the OpenAPI document --------------------------------------------------------------------


def test_extensions_are_documented_as_such(client):
    document = client.get("/openapi.json").json
    tag = next(t for t in document["tags"] if t["name"] == "phase_lite_extensions")
    assert "not part of Phase's API" in tag["description"]
    expected = {("/v1/secrets/{secret_id}/history/", "get"),
                ("/v1/secrets/{secret_id}/restore/", "post"),
                ("/v1/secrets/deleted/", "get")}
    lockbox = {("/v1/lockbox/", "post"), ("/v1/lockbox/", "get"),  # its own tests
               ("/v1/lockbox/{link_id}/", "get"), ("/v1/lockbox/shares/{share_id}/", "delete")}
    found = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and operation.get("tags") == ["phase_lite_extensions"]:
                assert operation["x-phase-lite-extension"] is True
                if (path, method) not in lockbox:
                    assert {"200", "401", "403", "404", "429"} <= set(operation["responses"])
                found.add((path, method))
    assert found == expected | lockbox
    secret_doc = document["paths"]["/v1/secrets/"]
    assert all("x-phase-lite-extension" not in op for op in secret_doc.values()
               if isinstance(op, dict) and "responses" in op)


# -- retention -------------------------------------------------------------------------------


def test_history_lives_as_long_as_its_environment_and_app(pat, client, app_id, owner_headers,
                                                          db, envs, edited):
    staging = Env(client, app_id, owner_headers, env="Staging")
    staging.secrets("POST", [{"key": "S", "value": "s"}])

    def versions():
        return db.scalar("SELECT count(*) FROM secret_versions")

    assert versions() == 4
    response = client.delete(f"/v1/environments/{envs['Development']['id']}/",
                             headers=owner_headers)
    assert response.status_code == 204, response.json
    assert versions() == 1
    assert client.delete(f"/v1/apps/{app_id}/", headers=owner_headers).status_code == 204
    assert versions() == 0


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_sealed_secret_shows_no_value_in_any_version(client, app_id, owner_headers, pat,
                                                       sa, prefix):
    """Created as `secret`, changed, then sealed: every version's value is null in the
    history, the earlier ones included; the secrets API still returns the current value, as
    Phase's does (the Phase clients read sealed secrets)."""
    (made,) = pat.secrets("POST", [{"key": "TOKEN", "value": "first-plain"}])
    pat.secrets("PUT", [{"id": made["id"], "value": "second-plain"}])
    before = pat.history(made["id"]).json["data"]
    assert [v["value"] for v in before] == ["second-plain", "first-plain"]
    pat.secrets("PUT", [{"id": made["id"], "type": "sealed", "comment": "now sealed"}])
    for caller in (pat, sa):
        answer = client.get(f"{prefix}/v1/secrets/{made['id']}/history/?app_id={app_id}"
                            "&env=Development", headers=caller.headers)
        assert answer.status_code == 200
        versions = answer.json["data"]
        assert [(v["version"], v["type"], v["value"]) for v in versions] == [
            (3, "sealed", None), (2, "secret", None), (1, "secret", None)]
        assert versions[0]["comment"] == "now sealed"
        assert "plain" not in answer.get_data(as_text=True)
        assert schemas.SecretHistory().validate(answer.json) == {}
    listed = client.get(f"{prefix}/v1/secrets/?app_id={app_id}&env=Development",
                        headers=owner_headers).json
    assert [(s["key"], s["value"], s["type"]) for s in listed] == [
        ("TOKEN", "second-plain", "sealed")]
