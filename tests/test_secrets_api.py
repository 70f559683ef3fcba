"""Contract tests of /v1/secrets/: peer-transcript.md sections A-D, the error catalogue (§3.6)
and the acceptance checklists (§10.1, §10.9) of public-api.md, over HTTP."""

import json
import re
from urllib.parse import urlencode

import pytest

import support
from phase_lite import phase_crypto
from phase_lite.store import accounts as account_store

pytestmark = pytest.mark.both_backends

FIELDS = ["id", "key", "value", "comment", "tags", "override", "type", "lifecycle", "path",
          "keyDigest", "version", "createdAt", "updatedAt", "environment", "folder"]
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ZERO_ID = "00000000-0000-0000-0000-000000000000"
NO_ENV = "Environment context required. Supply `app_id` and `env` as query parameters."


class Secrets:
    """The secrets endpoint of one app, as a script would call it."""

    def __init__(self, client, app_id, headers, prefix=""):
        self.client, self.app_id, self.headers, self.prefix = client, app_id, headers, prefix

    def url(self, env="Development", **params):
        query = {"app_id": self.app_id, "env": env} if env is not None else {}
        query.update(params)
        return f"{self.prefix}/v1/secrets/?{urlencode(query)}"

    def get(self, env="Development", headers=None, **params):
        return self.client.get(self.url(env, **params), headers=headers or self.headers)

    def send(self, method, body, env="Development", headers=None, raw=None, **params):
        data = raw if raw is not None else json.dumps(body)
        return self.client.open(self.url(env, **params), method=method, data=data,
                                headers=headers or self.headers)

    def post(self, entries, **kwargs):
        return self.send("POST", {"secrets": entries}, **kwargs)

    def put(self, entries, **kwargs):
        return self.send("PUT", {"secrets": entries}, **kwargs)

    def delete(self, ids, **kwargs):
        return self.send("DELETE", {"secrets": ids}, **kwargs)

    def create(self, *entries, **kwargs):
        response = self.post(list(entries), **kwargs)
        assert response.status_code == 200, response.json
        return response.json


SECRETS_ROUTES = Secrets  # what the ``pat`` and ``sa`` fixtures call


@pytest.fixture
def dev_only_headers(envs, make_service_token):
    from support import bearer_headers
    return bearer_headers(make_service_token([envs["Development"]], name="dev-only"))


def error(response):
    assert response.mimetype == "application/json"
    assert list(response.json) == ["error"]
    return response.status_code, response.json["error"]


def digest_in(services, env_row, key):
    return services.vault.environment_keys(env_row).digest(key)


# -- A. happy path with a service-account token --------------------------------------------


def test_list_empty_environment(sa):
    response = sa.get()
    assert response.status_code == 200
    assert response.json == []
    assert response.mimetype == "application/json"


def test_create_two_secrets_returns_phase_shaped_objects(sa, envs, services):
    response = sa.post([
        {"key": "db_host", "value": "localhost", "comment": "primary db"},
        {"key": "API_KEY", "value": "s3cr3t", "path": "/backend/", "tags": ["team-a"]},
    ])
    assert response.status_code == 200
    first, second = response.json
    dev = envs["Development"]
    for item in (first, second):
        assert list(item) == FIELDS
        assert UUID.match(item["id"])
        assert item["override"] is None
        assert (item["type"], item["lifecycle"], item["version"]) == ("secret", "static", 1)
        assert TIMESTAMP.match(item["createdAt"]) and TIMESTAMP.match(item["updatedAt"])
        assert item["environment"] == dev["id"]
    assert (first["key"], first["value"], first["comment"]) == ("DB_HOST", "localhost",
                                                                "primary db")
    assert (first["tags"], first["path"], first["folder"]) == ([], "/", None)
    assert first["keyDigest"] == digest_in(services, dev, "DB_HOST")
    assert (second["key"], second["value"], second["comment"]) == ("API_KEY", "s3cr3t", "")
    assert (second["tags"], second["path"]) == (["team-a"], "/backend")
    assert UUID.match(second["folder"])
    assert second["keyDigest"] == phase_crypto.key_digest(
        "API_KEY", services.vault.environment_keys(dev).salt)


@pytest.fixture
def seeded(sa):
    """Transcript A.2: DB_HOST at / and API_KEY at /backend tagged team-a."""
    return sa.create(
        {"key": "db_host", "value": "localhost", "comment": "primary db"},
        {"key": "API_KEY", "value": "s3cr3t", "path": "/backend/", "tags": ["team-a"]},
    )


def test_list_all_returns_the_created_objects(sa, seeded):
    response = sa.get()
    assert response.status_code == 200
    assert response.json == seeded


@pytest.mark.parametrize("params, expected_keys", [
    ({"key": "DB_HOST"}, ["DB_HOST"]),
    ({"key": "db_host"}, ["DB_HOST"]),
    ({"key": "NOPE"}, []),
    ({"path": "backend"}, ["API_KEY"]),
    ({"path": "/backend/"}, ["API_KEY"]),
    ({"path": "/"}, ["DB_HOST"]),
    ({"path": ""}, ["DB_HOST", "API_KEY"]),
    ({"tags": "team-a"}, ["API_KEY"]),
    ({"tags": "nope"}, []),
    ({"tags": "Team-A"}, []),
    ({"key": "api_key", "path": "/"}, []),
    ({"key": "api_key", "path": "/backend"}, ["API_KEY"]),
    ({"key": ""}, ["DB_HOST", "API_KEY"]),
])
def test_get_filters(sa, seeded, params, expected_keys):
    response = sa.get(**params)
    assert response.status_code == 200
    assert [item["key"] for item in response.json] == expected_keys


def test_environment_name_is_case_insensitive(sa, seeded):
    response = sa.get(env="development", key="db_host")
    assert [item["id"] for item in response.json] == [seeded[0]["id"]]


@pytest.mark.parametrize("params", [
    {"appId": "{app}", "env": "Development"},
    {"APP_ID": "{app}", "ENV": "Development"},
    {"AppId": "{app}", "Env": "development"},
])
def test_parameter_names_camel_and_upper_case(client, app_id, sa_headers, seeded, params):
    query = urlencode({name: value.format(app=app_id) for name, value in params.items()})
    response = client.get(f"/v1/secrets/?{query}&key=db_host", headers=sa_headers)
    assert response.status_code == 200
    assert [item["key"] for item in response.json] == ["DB_HOST"]


def test_environment_header_instead_of_app_and_env(client, envs, sa_headers, seeded):
    headers = dict(sa_headers, Environment=envs["Development"]["id"])
    response = client.get("/v1/secrets/?key=db_host", headers=headers)
    assert response.status_code == 200
    assert [item["id"] for item in response.json] == [seeded[0]["id"]]


def test_secret_id_sets_the_environment_without_filtering(client, sa_headers, seeded):
    response = client.get(f"/v1/secrets/?secret_id={seeded[0]['id']}", headers=sa_headers)
    assert response.status_code == 200
    assert len(response.json) == 2
    headers = dict(sa_headers, **{"Secret-Id": seeded[1]["id"]})
    assert len(client.get("/v1/secrets/", headers=headers).json) == 2


@pytest.mark.parametrize("prefix", ["/service/public", "/public", "/service"])
def test_prefixes(client, app_id, sa_headers, seeded, prefix):
    response = Secrets(client, app_id, sa_headers, prefix).get(key="db_host")
    assert response.status_code == 200
    assert [item["key"] for item in response.json] == ["DB_HOST"]


@pytest.mark.parametrize("path", ["/v1/secrets", "/service/public/v1/secrets", "/public/v1/secrets",
                                  "/v1/secrets/extra/", "/v1/secret/"])
def test_route_needs_its_exact_path_and_trailing_slash(client, app_id, sa_headers, path):
    response = client.get(f"{path}?app_id={app_id}&env=Development", headers=sa_headers)
    assert error(response) == (404, "Not found.")
    assert "Location" not in response.headers


def test_update_value_and_comment(sa, seeded):
    db_host = seeded[0]
    response = sa.put([{"id": db_host["id"], "value": "db.internal", "comment": "moved"}])
    assert response.status_code == 200
    (item,) = response.json
    assert list(item) == FIELDS
    assert (item["value"], item["comment"], item["version"]) == ("db.internal", "moved", 2)
    assert item["createdAt"] == db_host["createdAt"]
    assert item["updatedAt"] > db_host["updatedAt"]
    assert (item["key"], item["keyDigest"], item["path"]) == ("DB_HOST", db_host["keyDigest"], "/")


def test_rename_key_and_move_path(sa, seeded, envs, services):
    db_host = seeded[0]
    sa.put([{"id": db_host["id"], "value": "db.internal", "comment": "moved"}])
    response = sa.put([{"id": db_host["id"], "key": "database_host", "path": "/infra"}])
    assert response.status_code == 200
    (item,) = response.json
    assert (item["key"], item["value"], item["comment"]) == ("DATABASE_HOST", "db.internal",
                                                             "moved")
    assert item["keyDigest"] == digest_in(services, envs["Development"], "DATABASE_HOST")
    assert (item["path"], item["version"]) == ("/infra", 3)
    assert UUID.match(item["folder"])
    # Transcript A.16: the updated secret now lists last.
    assert [i["key"] for i in sa.get().json] == ["API_KEY", "DATABASE_HOST"]


def test_delete_one_then_again(sa, seeded):
    api_key = seeded[1]["id"]
    response = sa.delete([api_key])
    assert response.status_code == 200
    assert response.json == {"message": "Deleted 1 secret"}
    assert error(sa.delete([api_key])) == (
        404, f"Secret(s) not found in this environment: {api_key}")
    assert [i["key"] for i in sa.get().json] == ["DB_HOST"]


def test_delete_many_counts_unique_ids(sa):
    ids = [s["id"] for s in sa.create({"key": "A", "value": "1"}, {"key": "B", "value": "2"},
                                      {"key": "C", "value": "3"})]
    response = sa.delete([ids[0], ids[1], ids[0], ids[2]])
    assert response.json == {"message": "Deleted 3 secrets"}
    assert sa.get().json == []


def test_create_config_with_empty_value(sa):
    (item,) = sa.create({"key": "FEATURE_FLAG", "value": "", "type": "config"})
    assert (item["value"], item["type"]) == ("", "config")


# -- B. the same API with a personal access token -------------------------------------------


def test_list_with_personal_access_token(sa, pat):
    sa.create({"key": "FEATURE_FLAG", "value": "", "type": "config"})
    response = pat.get(key="FEATURE_FLAG")
    assert response.status_code == 200
    assert [(i["key"], i["override"]) for i in response.json] == [("FEATURE_FLAG", None)]


# -- C. error cases --------------------------------------------------------------------------


def test_duplicate_key_at_same_path(sa):
    sa.create({"key": "DATABASE_HOST", "value": "x", "path": "/infra"})
    assert error(sa.post([{"key": "database_host", "value": "x", "path": "/infra"}])) == (
        409, "Duplicate secret found")
    assert error(sa.post([{"key": "database_host", "value": "x", "path": "infra/"}])) == (
        409, "Duplicate secret found")


def test_same_key_at_another_path_is_allowed(sa):
    sa.create({"key": "DATABASE_HOST", "value": "x", "path": "/infra"})
    (item,) = sa.create({"key": "database_host", "value": "y"})
    assert (item["key"], item["path"]) == ("DATABASE_HOST", "/")


def test_deleted_secret_does_not_block_recreation(sa):
    (item,) = sa.create({"key": "AGAIN", "value": "1"})
    sa.delete([item["id"]])
    (again,) = sa.create({"key": "again", "value": "2"})
    assert again["id"] != item["id"] and again["keyDigest"] == item["keyDigest"]


def test_duplicate_within_one_request_is_refused(sa):
    # Phase creates both (transcript C.23); phase_lite refuses the batch (decision 2).
    response = sa.post([{"key": "DUP_IN_BATCH", "value": "1"},
                        {"key": "dup_in_batch", "value": "2"}])
    assert error(response) == (409, "Duplicate secret found")
    assert sa.get().json == []


def test_same_key_twice_in_one_request_at_different_paths(sa):
    created = sa.create({"key": "K", "value": "1"}, {"key": "k", "value": "2", "path": "/p"})
    assert [(i["key"], i["path"]) for i in created] == [("K", "/"), ("K", "/p")]


@pytest.mark.parametrize("key, stored", [
    ("bad key!-1", "BAD KEY!-1"),
    ("1ABC", "1ABC"),
    (" padded ", " PADDED "),
    ("straße", "STRASSE"),
    ("émoji-🔑", "ÉMOJI-🔑"),
])
def test_keys_are_upper_cased_not_validated(sa, key, stored):
    (item,) = sa.create({"key": key, "value": "v"})
    assert item["key"] == stored
    assert [i["key"] for i in sa.get(key=key).json] == [stored]


BODY_ERRORS = [
    # (method, raw body, error)
    ("POST", "", "Request body is required."),
    ("POST", "not json", "Request body must be valid JSON."),
    ("POST", "{\"secrets\": [", "Request body must be valid JSON."),
    ("POST", "\"\\ud800\"", "Request body must be valid JSON."),
    ("POST", '{"secrets":[{"key":"K","value":"\\udc00"}]}', "Request body must be valid JSON."),
    ("POST", b"\xff\xfe\xfa", "Request body must be valid JSON."),
    ("POST", "[]", "Request body must be a JSON object."),
    ("POST", "5", "Request body must be a JSON object."),
    ("POST", "{}", "'secrets' must be a non-empty list."),
    ("POST", '{"secrets": []}', "'secrets' must be a non-empty list."),
    ("POST", '{"secrets": {"key": "K"}}', "'secrets' must be a non-empty list."),
    ("POST", '{"secrets": ["K"]}', "Each entry in 'secrets' must be an object."),
    ("POST", '{"secrets": [{"key": "  ", "value": "v"}]}',
     "Each secret requires a non-empty 'key'."),
    ("POST", '{"secrets": [{"key": "", "value": "v"}]}', "Each secret requires a non-empty 'key'."),
    ("POST", '{"secrets": [{"value": "v"}]}', "Each secret requires a non-empty 'key'."),
    ("POST", '{"secrets": [{"key": 5, "value": "v"}]}', "Each secret requires a non-empty 'key'."),
    ("POST", '{"secrets": [{"key": "NOVAL"}]}', "Each secret requires a 'value' string."),
    ("POST", '{"secrets": [{"key": "NUM", "value": 5}]}', "Each secret requires a 'value' string."),
    ("POST", '{"secrets": [{"key": "N", "value": null}]}',
     "Each secret requires a 'value' string."),
    ("POST", '{"secrets": [{"key": "T", "value": "v", "type": "bogus"}]}',
     "Invalid 'type': 'bogus'. Must be one of ['config', 'sealed', 'secret']."),
    ("POST", '{"secrets": [{"key": "T", "value": "v", "type": 7}]}',
     "Invalid 'type': 7. Must be one of ['config', 'sealed', 'secret']."),
    ("POST", '{"secrets": [{"key": "T", "value": "v", "type": true}]}',
     "Invalid 'type': True. Must be one of ['config', 'sealed', 'secret']."),
    ("POST", '{"secrets": [{"key": "T", "value": "v", "type": "Secret"}]}',
     "Invalid 'type': 'Secret'. Must be one of ['config', 'sealed', 'secret']."),
    ("POST", '{"secrets": [{"key": "O", "value": "v", "override": null}]}',
     "'override' must be a JSON object."),
    ("POST", '{"secrets": [{"key": "O", "value": "v", "override": "x"}]}',
     "'override' must be a JSON object."),
    ("POST", '{"secrets": [{"key": "O", "value": "v", "override": {"isActive": true}}]}',
     "'override.value' must be a string."),
    ("POST", '{"secrets": [{"key": "O", "value": "v", "override": {"value": 1, "isActive": 1}}]}',
     "'override.value' must be a string."),
    ("POST", '{"secrets": [{"key": "O", "value": "v", "override": {"value": "o"}}]}',
     "'override.isActive' must be a boolean."),
    ("POST", '{"secrets": [{"key": "O", "value": "v", "override": {"value": "o", "isActive": 1}}]}',
     "'override.isActive' must be a boolean."),
    ("POST", '{"secrets": [{"key": "C", "value": "v", "comment": 5}]}',
     "'comment' must be a string."),
    ("PUT", "", "Request body is required."),
    ("PUT", "nope", "Request body must be valid JSON."),
    ("PUT", '"text"', "Request body must be a JSON object."),
    ("PUT", '{"secrets": []}', "'secrets' must be a non-empty list."),
    ("PUT", '{"secrets": [{"value": "v"}]}', "Secret ID not provided"),
    ("PUT", '{"secrets": ["id"]}', "Secret ID not provided"),
    ("PUT", '{"secrets": [{"id": "x", "type": "bogus"}]}',
     "Invalid 'type': 'bogus'. Must be one of ['config', 'sealed', 'secret']."),
    ("PUT", '{"secrets": [{"id": "x", "override": []}]}', "'override' must be a JSON object."),
    ("PUT", '{"secrets": [{"id": "x", "value": 1}]}', "Each secret requires a 'value' string."),
    ("PUT", '{"secrets": [{"id": "x", "key": []}]}', "Each secret requires a non-empty 'key'."),
    ("DELETE", "", "Request body is required."),
    ("DELETE", "{", "Request body must be valid JSON."),
    ("DELETE", "[]", "Request body must be a JSON object."),
    ("DELETE", "{}", "'secrets' must be a non-empty list of secret IDs."),
    ("DELETE", '{"secrets": []}', "'secrets' must be a non-empty list of secret IDs."),
    ("DELETE", '{"secrets": "abc"}', "'secrets' must be a non-empty list of secret IDs."),
]


@pytest.mark.parametrize("method, raw, message", BODY_ERRORS)
def test_body_errors(sa, method, raw, message):
    response = sa.send(method, None, raw=raw)
    assert error(response) == (400, message)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/json; charset=utf-8"])
def test_body_is_json_whatever_the_content_type(client, app_id, sa_headers, content_type):
    headers = dict(sa_headers)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(f"/v1/secrets/?app_id={app_id}&env=Development", headers=headers,
                           data=json.dumps({"secrets": [{"key": "CT", "value": "v"}]}))
    assert response.status_code == 200
    assert response.json[0]["key"] == "CT"


def test_no_body_with_json_content_type(client, app_id, sa_headers):
    response = client.post(f"/v1/secrets/?app_id={app_id}&env=Development",
                           headers=dict(sa_headers, **{"Content-Type": "application/json"}))
    assert error(response) == (400, "Request body is required.")


def test_put_unknown_id(sa):
    assert error(sa.put([{"id": ZERO_ID, "value": "v"}])) == (404, f"Secret not found: {ZERO_ID}")


def test_delete_unknown_id(sa):
    assert error(sa.delete([ZERO_ID])) == (
        404, f"Secret(s) not found in this environment: {ZERO_ID}")


def test_delete_names_every_missing_id_in_order(sa):
    (item,) = sa.create({"key": "KEEP", "value": "v"})
    response = sa.delete(["b-missing", item["id"], "a-missing", 7])
    assert error(response) == (
        404, "Secret(s) not found in this environment: b-missing, a-missing, 7")
    assert len(sa.get().json) == 1


@pytest.mark.parametrize("params, expected", [
    ({"app_id": "{app}"}, (403, NO_ENV)),
    ({}, (403, NO_ENV)),
    ({"env": "Development"}, (403, NO_ENV)),
    ({"app_id": "{app}", "env": "qa"}, (404, "Environment 'qa' not found in App {app}")),
    ({"app_id": ZERO_ID, "env": "Development"}, (404, f"App with ID {ZERO_ID} not found")),
    ({"app_id": "nope", "env": "Development"}, (404, "App with ID nope not found")),
    ({"app_id": "nope"}, (404, "App with ID nope not found")),
    ({"secret_id": ZERO_ID}, (404, "Secret not found")),
])
def test_scope_errors(client, app_id, sa_headers, params, expected):
    query = urlencode({name: value.format(app=app_id) for name, value in params.items()})
    for method in ("GET", "POST", "PUT", "DELETE"):
        response = client.open(f"/v1/secrets/?{query}", method=method, headers=sa_headers,
                               data="{}")
        status, message = expected
        assert error(response) == (status, message.format(app=app_id)), method


@pytest.mark.parametrize("header, message", [
    (None, "Authentication credentials were not provided."),
    ("", "Authentication credentials were not provided."),
    ("Bearer ServiceAccount " + "0" * 64, "Token expired or deleted"),
    ("Bearer User " + "0" * 64, "Token expired or deleted"),
    ("Bearer Service " + "0" * 64, "Token expired or deleted"),
    ("Bearer Foo abc", "Invalid token"),
    ("Bearer", "Invalid token"),
    ("Bearer ServiceAccount", "Invalid token"),
    ("Bearer  ServiceAccount abc", "Invalid token"),
    ("Token ServiceAccount abc", "Invalid token"),
    ("Bearer serviceaccount abc", "Invalid token"),
])
def test_authentication_errors(client, app_id, header, message):
    headers = {} if header is None else {"Authorization": header}
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        response = client.open(f"/v1/secrets/?app_id={app_id}&env=Development", method=method,
                               headers=headers, data="{}")
        assert error(response) == (401, message)
    if message.startswith("Authentication credentials"):
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_raw_pss_token_is_an_invalid_header(client, app_id, sa_token):
    response = client.get(f"/v1/secrets/?app_id={app_id}&env=Development",
                          headers={"Authorization": f"Bearer {sa_token.token}"})
    assert error(response) == (401, "Invalid token")


def test_user_type_with_full_pss_string(client, app_id, owner):
    response = client.get(f"/v1/secrets/?app_id={app_id}&env=Development",
                          headers={"Authorization": f"Bearer User {owner.token}"})
    assert error(response) == (401, "Token expired or deleted")


def test_lower_case_token_type_is_invalid(client, app_id, owner):
    bearer = owner.bearer_token.split(" ")[1]
    response = client.get(f"/v1/secrets/?app_id={app_id}&env=Development",
                          headers={"Authorization": f"Bearer user {bearer}"})
    assert error(response) == (401, "Invalid token")


def test_bearer_word_is_case_insensitive(client, app_id, owner):
    response = client.get(f"/v1/secrets/?app_id={app_id}&env=Development",
                          headers={"Authorization": "bearer " + owner.bearer_token})
    assert response.status_code == 200


def test_wrong_token_type_for_the_token(client, app_id, sa_token):
    bearer = sa_token.bearer_token.split(" ")[1]
    response = client.get(f"/v1/secrets/?app_id={app_id}&env=Development",
                          headers={"Authorization": f"Bearer User {bearer}"})
    assert error(response) == (401, "Token expired or deleted")


def test_revoked_and_expired_tokens(client, app_id, services, envs, make_service_token):
    from support import bearer_headers
    revoked = make_service_token(list(envs.values()), name="revoked")
    support.revoke(services, revoked.id)
    expired = make_service_token(list(envs.values()), name="expired",
                                 expires_at="2000-01-01T00:00:00.000000Z")
    for token in (revoked, expired):
        response = client.get(f"/v1/secrets/?app_id={app_id}&env=Development",
                              headers=bearer_headers(token))
        assert error(response) == (401, "Token expired or deleted")


def test_deleted_user_is_not_found(client, app_id, services, db):
    from support import bearer_headers
    user, token = support.make_user(services, "gone@example.com", "Admin")
    user_id = user["id"]
    with db.transaction():
        db.execute("UPDATE users SET deleted_at = '2024-01-01T00:00:00.000000Z' WHERE id = ?",
                   (user_id,))
    response = client.get(f"/v1/secrets/?app_id={app_id}&env=Development",
                          headers=bearer_headers(token))
    assert error(response) == (404, "User not found")


@pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "TRACE"])
def test_unsupported_methods_after_authentication(client, app_id, sa_headers, method):
    url = f"/v1/secrets/?app_id={app_id}&env=Development"
    assert error(client.open(url, method=method, headers=sa_headers, data="{}")) == (
        403, f"Unsupported HTTP method: {method}")
    assert error(client.open(url, method=method, data="{}")) == (
        401, "Authentication credentials were not provided.")


def test_head_is_refused_like_other_methods(client, app_id, sa_headers):
    url = f"/v1/secrets/?app_id={app_id}&env=Development"
    assert client.head(url, headers=sa_headers).status_code == 403
    assert client.head(url).status_code == 401


def test_unsupported_method_comes_after_scope_errors(client, app_id, sa_headers):
    response = client.open(f"/v1/secrets/?app_id={ZERO_ID}&env=Development", method="PATCH",
                           headers=sa_headers)
    assert error(response) == (404, f"App with ID {ZERO_ID} not found")
    response = client.open("/v1/secrets/", method="PATCH", headers=sa_headers)
    assert error(response) == (403, "Unsupported HTTP method: PATCH")


def test_unknown_environment_header(client, sa_headers):
    response = client.get("/v1/secrets/", headers=dict(sa_headers, Environment=ZERO_ID))
    assert error(response) == (401, "Environment not found")


def test_environment_of_another_app_through_the_header_is_checked(client, make_app, sa_headers):
    _, other_envs = make_app("other")
    response = client.get("/v1/secrets/",
                          headers=dict(sa_headers, Environment=other_envs["Development"]["id"]))
    assert error(response) == (401, "Service account cannot access this environment")


@pytest.mark.parametrize("params", [
    {"dynamic": "true", "lease_ttl": "abc"},
    {"dynamic": "", "lease_ttl": "1.5"},
    {"include_dynamic": "1", "lease_ttl": "ten"},
    {"includeDynamic": "yes", "leaseTtl": "x"},
])
def test_lease_ttl_must_be_an_integer_with_dynamic(sa, params):
    assert error(sa.get(**params)) == (400, "lease_ttl must be a valid integer (seconds)")


@pytest.mark.parametrize("params", [
    {"lease_ttl": "abc"},
    {"dynamic": "false", "lease_ttl": "abc"},
    {"dynamic": "FALSE", "lease_ttl": "abc"},
    {"dynamic": "true", "lease_ttl": "3600"},
    {"dynamic": "true", "lease": "true"},
    {"include_dynamic": "true"},
])
def test_dynamic_parameters_are_accepted_and_add_nothing(sa, seeded, params):
    response = sa.get(**params)
    assert response.status_code == 200
    assert [item["key"] for item in response.json] == ["DB_HOST", "API_KEY"]


# -- access: environments and role permissions ----------------------------------------------


def test_service_account_restricted_to_one_environment(client, app_id, dev_only_headers, sa):
    sa.create({"key": "PROD_ONLY", "value": "p"}, env="Production")
    restricted = Secrets(client, app_id, dev_only_headers)
    for method in ("GET", "POST", "PUT", "DELETE"):
        response = restricted.send(method, {"secrets": []}, env="Staging")
        assert error(response) == (401, "Service account cannot access this environment")
    response = restricted.get(key="PROD_ONLY")
    assert response.status_code == 200 and response.json == []


@pytest.fixture
def make_user(services):
    """A user of a role, granted some environments; return its REST headers."""
    from support import bearer_headers

    def make(email, role, env_rows=()):
        return bearer_headers(support.make_user(services, email, role, env_rows)[1])

    return make


def test_user_without_access_to_the_environment(client, app_id, envs, make_user):
    headers = make_user("dev@example.com", "Developer", [envs["Development"]])
    developer = Secrets(client, app_id, headers)
    assert developer.get().status_code == 200
    assert error(developer.get(env="Production")) == (
        403, "User cannot access this environment")


def test_admin_reaches_every_environment(client, app_id, make_user):
    admin = Secrets(client, app_id, make_user("admin@example.com", "Admin"))
    assert admin.get(env="Production").status_code == 200


@pytest.mark.parametrize("allowed, method, action", [
    (["read"], "POST", "create"),
    (["read"], "PUT", "update"),
    (["read"], "DELETE", "delete"),
    (["create", "update", "delete"], "GET", "read"),
])
def test_role_permissions_decide_each_method(client, app_id, db, envs, make_user, allowed, method,
                                             action):
    org_id = support.organisation_id(client.application.extensions["phase_lite"])
    permissions = {"permissions": {}, "appPermissions": {"Secrets": allowed},
                   "globalAccess": False}
    with db.transaction():
        account_store.insert_role(db, org_id, "Limited", "", "", json.dumps(permissions), False)
    headers = make_user("limited@example.com", "Limited", [envs["Development"]])
    response = Secrets(client, app_id, headers).send(method, {"secrets": []})
    assert error(response) == (
        403, f"You don't have permission to {action} secrets in this environment.")


# -- D. extra behaviours ---------------------------------------------------------------------


def test_create_with_references_resolves_them_in_the_response(sa):
    sa.create({"key": "DATABASE_HOST", "value": "y"},
              {"key": "DATABASE_HOST", "value": "db.internal", "path": "/infra"})
    sa.create({"key": "PROD_ONLY", "value": "p-val"}, env="Production")
    created = sa.create(
        {"key": "REF_LOCAL", "value": "http://${DATABASE_HOST}:5432"},
        {"key": "REF_PATH", "value": "${/infra/DATABASE_HOST}"},
        {"key": "REF_ENV", "value": "${Production.PROD_ONLY}"},
        {"key": "REF_MISSING", "value": "${NOPE_NOPE}"},
    )
    assert [i["value"] for i in created] == ["http://y:5432", "db.internal", "p-val",
                                             "${NOPE_NOPE}"]
    (ref_env,) = sa.get(key="REF_ENV").json
    assert ref_env["value"] == "p-val"


def test_sealed_secret(sa):
    (sealed,) = sa.create({"key": "SEALED_ONE", "value": "hidden", "type": "sealed"})
    assert (sealed["value"], sealed["type"]) == ("hidden", "sealed")
    (read,) = sa.get(key="SEALED_ONE").json
    assert read == sealed
    assert error(sa.put([{"id": sealed["id"], "type": "secret"}])) == (
        400, "Sealed secrets cannot be unsealed. Delete and recreate the secret instead.")
    response = sa.put([{"id": sealed["id"], "value": "changed", "comment": "c", "type": "sealed"}])
    (item,) = response.json
    assert (item["value"], item["comment"], item["type"], item["version"]) == (
        "hidden", "c", "sealed", 2)


def test_secret_can_be_sealed_by_update(sa):
    (item,) = sa.create({"key": "TO_SEAL", "value": "v1"})
    (sealed,) = sa.put([{"id": item["id"], "value": "v2", "type": "sealed"}]).json
    assert (sealed["value"], sealed["type"]) == ("v2", "sealed")


def test_rename_onto_an_existing_key(sa):
    ref_local, flag = sa.create({"key": "REF_LOCAL", "value": "a"},
                                {"key": "FEATURE_FLAG", "value": ""})
    assert error(sa.put([{"id": flag["id"], "key": "ref_local"}])) == (
        409, "Duplicate secret found")


def test_update_duplicate_check_uses_the_secrets_own_path(sa):
    # Phase checks "/" when the entry has no path (decision 3).
    root, nested = sa.create({"key": "SAME", "value": "root"},
                             {"key": "OTHER", "value": "n", "path": "/deep"})
    (renamed,) = sa.put([{"id": nested["id"], "key": "same"}]).json
    assert (renamed["key"], renamed["path"]) == ("SAME", "/deep")
    sa.create({"key": "TAKEN", "value": "t", "path": "/deep"})
    assert error(sa.put([{"id": renamed["id"], "key": "taken"}])) == (
        409, "Duplicate secret found")


def test_update_moving_onto_an_existing_key_is_a_duplicate(sa):
    sa.create({"key": "K", "value": "root"})
    (nested,) = sa.create({"key": "K", "value": "n", "path": "/p"})
    assert error(sa.put([{"id": nested["id"], "path": "/"}])) == (409, "Duplicate secret found")


def test_update_batch_may_swap_keys(sa):
    a, b = sa.create({"key": "A", "value": "a"}, {"key": "B", "value": "b"})
    response = sa.put([{"id": a["id"], "key": "B"}, {"id": b["id"], "key": "A"}])
    assert [i["key"] for i in response.json] == ["B", "A"]


def test_update_batch_colliding_with_itself(sa):
    a, b = sa.create({"key": "A", "value": "a"}, {"key": "B", "value": "b"})
    response = sa.put([{"id": a["id"], "key": "C"}, {"id": b["id"], "key": "c"}])
    assert error(response) == (409, "Duplicate secret found")
    assert [i["key"] for i in sa.get().json] == ["A", "B"]


def test_update_without_changes_still_bumps_the_version(sa):
    (item,) = sa.create({"key": "SAME", "value": "v"})
    (again,) = sa.put([{"id": item["id"]}]).json
    assert again["version"] == 2
    assert again["value"] == "v"


def test_update_replaces_tags_only_when_given(sa):
    (item,) = sa.create({"key": "T", "value": "v", "tags": ["a", "b"]})
    assert sa.put([{"id": item["id"], "value": "w"}]).json[0]["tags"] == ["a", "b"]
    assert sa.put([{"id": item["id"], "tags": ["c"]}]).json[0]["tags"] == ["c"]
    assert sa.put([{"id": item["id"], "tags": None}]).json[0]["tags"] == []


def test_update_ignores_a_path_it_cannot_read(sa):
    (item,) = sa.create({"key": "P", "value": "v", "path": "/keep"})
    (updated,) = sa.put([{"id": item["id"], "path": 5}]).json
    assert (updated["path"], updated["folder"]) == ("/keep", item["folder"])


def test_same_secret_twice_in_one_update(sa):
    (item,) = sa.create({"key": "TWICE", "value": "v"})
    response = sa.put([{"id": item["id"], "value": "one"}, {"id": item["id"], "value": "two"}])
    assert [(i["value"], i["version"]) for i in response.json] == [("one", 2), ("two", 3)]
    (stored,) = sa.get(key="TWICE").json
    assert (stored["value"], stored["version"]) == ("two", 3)


def test_update_of_a_secret_in_another_environment_is_not_found(sa):
    (other,) = sa.create({"key": "ELSEWHERE", "value": "v"}, env="Staging")
    assert error(sa.put([{"id": other["id"], "value": "x"}])) == (
        404, f"Secret not found: {other['id']}")


def test_folders_are_shared_and_nested(sa, db, envs):
    first, second = sa.create({"key": "A", "value": "1", "path": "/a/b"},
                              {"key": "B", "value": "2", "path": "a/b/"})
    assert first["folder"] == second["folder"]
    (deeper,) = sa.create({"key": "C", "value": "3", "path": "/a/b/c"})
    rows = {row["path"]: row for row in db.all(
        "SELECT * FROM folders WHERE environment_id = ?", (envs["Development"]["id"],))}
    assert set(rows) == {"/a", "/a/b", "/a/b/c"}
    assert rows["/a/b"]["id"] == first["folder"] and rows["/a/b/c"]["id"] == deeper["folder"]
    assert rows["/a/b/c"]["parent_id"] == rows["/a/b"]["id"]
    assert rows["/a/b"]["parent_id"] == rows["/a"]["id"] and rows["/a"]["parent_id"] is None


@pytest.mark.parametrize("tags, expected", [
    (["b", "a", "b"], ["b", "a"]),
    ([" spaced ", "", "   ", 5, None, {"x": 1}], ["spaced"]),
    ("ab", ["a", "b"]),
    ([], []),
    (None, []),
    (["x" * 64], ["x" * 64]),
])
def test_tags_are_cleaned_as_phase_does(sa, tags, expected):
    (item,) = sa.create({"key": "TAGGED", "value": "v", "tags": tags})
    assert sorted(item["tags"]) == sorted(expected)
    assert sorted(sa.get(key="TAGGED").json[0]["tags"]) == sorted(expected)


def test_over_long_tag(sa):
    name = "t" * 65
    response = sa.post([{"key": "OK", "value": "v"}, {"key": "LONG", "value": "v", "tags": [name]}])
    assert error(response) == (400, f"Tag name exceeds 64 characters: '{'t' * 32}'\u2026")
    quoted = "it's" + "x" * 70
    response = sa.post([{"key": "Q", "value": "v", "tags": [quoted]}])
    assert error(response) == (400, f'Tag name exceeds 64 characters: "{quoted[:32]}"\u2026')


def test_tags_filter_matches_any_and_lists_each_secret_once(sa):
    sa.create({"key": "BOTH", "value": "1", "tags": ["a", "b"]},
              {"key": "ONLY_B", "value": "2", "tags": ["b"]},
              {"key": "NONE", "value": "3"})
    assert [i["key"] for i in sa.get(tags="a,b").json] == ["BOTH", "ONLY_B"]
    assert [i["key"] for i in sa.get(tags="a").json] == ["BOTH"]
    assert [i["key"] for i in sa.get(tags="a, b").json] == ["BOTH"]  # names are not trimmed
    assert sa.get(tags=",").json == []


def test_tags_are_organisation_wide(sa, db):
    sa.create({"key": "X", "value": "1", "tags": ["shared"]})
    sa.create({"key": "Y", "value": "1", "tags": ["shared"]}, env="Staging")
    assert db.scalar("SELECT COUNT(*) FROM tags WHERE name = 'shared'") == 1


# -- personal overrides (PAT only) -----------------------------------------------------------


def test_create_with_override_as_user(pat):
    (item,) = pat.create({"key": "WITH_OVERRIDE", "value": "shared",
                          "override": {"value": "mine", "isActive": False}})
    override = item["override"]
    assert list(override) == ["id", "value", "isActive", "createdAt", "updatedAt"]
    # Phase stores a created override as active whatever isActive says.
    assert (override["value"], override["isActive"]) == ("mine", True)
    assert UUID.match(override["id"]) and TIMESTAMP.match(override["createdAt"])
    assert item["value"] == "shared"


def test_service_account_never_sees_or_sets_overrides(sa, pat, db):
    (item,) = pat.create({"key": "WITH_OVERRIDE", "value": "shared",
                          "override": {"value": "mine", "isActive": True}})
    (seen,) = sa.get(key="WITH_OVERRIDE").json
    assert seen["override"] is None and seen["value"] == "shared"
    (own,) = sa.create({"key": "SA_OVERRIDE", "value": "v",
                        "override": {"value": "ignored", "isActive": True}})
    assert own["override"] is None
    (updated,) = sa.put([{"id": item["id"], "override": {"value": "x", "isActive": False}}]).json
    assert updated["override"] is None
    assert db.scalar("SELECT COUNT(*) FROM personal_secrets") == 1
    assert pat.get(key="WITH_OVERRIDE").json[0]["override"]["value"] == "mine"


def test_update_upserts_the_override_with_is_active(pat, sa):
    (item,) = sa.create({"key": "OV", "value": "shared"})
    (first,) = pat.put([{"id": item["id"], "override": {"value": "one", "isActive": False}}]).json
    assert (first["override"]["value"], first["override"]["isActive"]) == ("one", False)
    (second,) = pat.put([{"id": item["id"], "override": {"value": "two", "isActive": True}}]).json
    assert second["override"]["id"] == first["override"]["id"]
    assert (second["override"]["value"], second["override"]["isActive"]) == ("two", True)
    (third,) = pat.put([{"id": item["id"], "value": "new shared"}]).json
    assert third["override"]["value"] == "two" and third["value"] == "new shared"
    (read,) = pat.get(key="OV").json
    assert read["override"] == third["override"] and read["value"] == "new shared"


def test_overrides_are_personal(client, app_id, pat, make_user):
    (item,) = pat.create({"key": "MINE", "value": "v",
                          "override": {"value": "owner's", "isActive": True}})
    other = Secrets(client, app_id, make_user("other@example.com", "Admin"))
    assert other.get(key="MINE").json[0]["override"] is None
    other.put([{"id": item["id"], "override": {"value": "other's", "isActive": True}}])
    assert pat.get(key="MINE").json[0]["override"]["value"] == "owner's"
    assert other.get(key="MINE").json[0]["override"]["value"] == "other's"


def test_override_values_are_reference_resolved(pat):
    pat.create({"key": "TARGET", "value": "resolved"})
    (item,) = pat.create({"key": "O", "value": "v",
                          "override": {"value": "${TARGET}!", "isActive": True}})
    assert item["override"]["value"] == "resolved!"
    assert pat.get(key="O").json[0]["override"]["value"] == "resolved!"


# -- §10.1 (Phase's own view tests) and §10.9 ------------------------------------------------


def test_delete_of_an_id_from_another_environment(sa):
    (other,) = sa.create({"key": "STAGING_ONLY", "value": "v"}, env="Staging")
    response = sa.delete([other["id"]])
    status, message = error(response)
    assert status == 404 and other["id"] in message
    assert len(sa.get(env="Staging").json) == 1


def test_delete_of_a_mixed_batch_deletes_nothing(sa):
    (mine,) = sa.create({"key": "MINE", "value": "v"})
    (foreign,) = sa.create({"key": "FOREIGN", "value": "v"}, env="Staging")
    assert error(sa.delete([mine["id"], foreign["id"]])) == (
        404, f"Secret(s) not found in this environment: {foreign['id']}")
    assert [i["id"] for i in sa.get().json] == [mine["id"]]


def test_delete_is_soft(sa, db):
    (item,) = sa.create({"key": "SOFT", "value": "v"})
    sa.delete([item["id"]])
    row = db.one("SELECT deleted_at, updated_at, version FROM secrets WHERE id = ?", (item["id"],))
    assert row["deleted_at"] is not None and row["deleted_at"] == row["updated_at"]
    assert row["version"] == 1


def test_update_records_one_audit_event_with_the_secret(sa, db, services):
    (item,) = sa.create({"key": "AUDITED", "value": "v"})
    services.read_log.flush()
    before = db.scalar("SELECT MAX(id) FROM audit_events")
    sa.put([{"id": item["id"], "value": "v2"}])
    rows = db.all("SELECT * FROM audit_events WHERE id > ?", (before,))
    assert [row["action"] for row in rows] == ["secrets.update"]
    assert json.loads(rows[0]["details"]) == {"secrets": [{"id": item["id"], "version": 2}]}


def test_key_filter_is_case_insensitive(sa):
    sa.create({"key": "DEBUG", "value": "False"})
    assert [i["key"] for i in sa.get(key="debug").json] == ["DEBUG"]
    assert [i["key"] for i in sa.get(key="Debug").json] == ["DEBUG"]
    assert sa.get(key="unknown").json == []


def test_same_key_twice_in_separate_requests(sa):
    sa.create({"key": "ONCE", "value": "1"})
    assert error(sa.post([{"key": "once", "value": "2"}])) == (409, "Duplicate secret found")
    (elsewhere,) = sa.create({"key": "once", "value": "2", "path": "/other"})
    assert elsewhere["path"] == "/other"


def test_versions_go_up_by_one_per_update(sa, db):
    (item,) = sa.create({"key": "V", "value": "0"})
    for expected in (2, 3, 4):
        (updated,) = sa.put([{"id": item["id"], "value": str(expected)}]).json
        assert updated["version"] == expected
    versions = db.all("SELECT version, event FROM secret_versions WHERE secret_id = ?"
                      " ORDER BY version", (item["id"],))
    assert [(v["version"], v["event"]) for v in versions] == [
        (1, "create"), (2, "update"), (3, "update"), (4, "update")]
    sa.delete([item["id"]])
    assert db.scalar("SELECT event FROM secret_versions WHERE secret_id = ? ORDER BY rowid DESC"
                     " LIMIT 1", (item["id"],)) == "delete"


def test_writes_bump_the_environment_once_per_request(sa, db, envs):
    env_id = envs["Development"]["id"]

    def version():
        return db.scalar("SELECT version FROM environments WHERE id = ?", (env_id,))

    start = version()
    created = sa.create({"key": "A", "value": "1"}, {"key": "B", "value": "2"})
    assert version() == start + 1
    sa.put([{"id": s["id"], "value": "x"} for s in created])
    assert version() == start + 2
    sa.delete([s["id"] for s in created])
    assert version() == start + 3
    sa.get()
    assert version() == start + 3


def test_every_secrets_response_is_not_cached(sa, seeded):
    responses = [
        sa.get(), sa.post([{"key": "NEW", "value": "v"}]), sa.put([{"id": seeded[0]["id"]}]),
        sa.delete([seeded[1]["id"]]), sa.post([]), sa.get(env="nope"),
        sa.send("PATCH", {}),
    ]
    for response in responses:
        assert response.headers["Cache-Control"] == "no-store"


def test_responses_are_json_arrays_in_entry_order(sa):
    entries = [{"key": f"K{i}", "value": str(i), "path": "/p" if i % 2 else "/"}
               for i in range(10)]
    created = sa.create(*entries)
    assert [i["key"] for i in created] == [e["key"] for e in entries]
    updated = sa.put([{"id": s["id"]} for s in reversed(created)]).json
    assert [i["key"] for i in updated] == [e["key"] for e in reversed(entries)]


@pytest.mark.parametrize("accept, status", [
    ("application/json", 200),
    ("*/*", 200),
    ("application/*", 200),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", 200),
    ("application/json; charset=utf-8", 200),
    ("text/html", 406),
    ("application/xml, text/plain", 406),
])
def test_accept_header_must_admit_json(client, app_id, accept, status):
    response = client.get(f"/v1/secrets/?app_id={app_id}&env=Development",
                          headers={"Accept": accept})
    if status == 406:
        assert error(response) == (406, "Could not satisfy the request Accept header.")
    else:
        assert error(response) == (401, "Authentication credentials were not provided.")


def test_tags_list_in_the_same_order_in_every_response(sa):
    sa.create({"key": "FIRST", "value": "v", "tags": ["old"]})
    (item,) = sa.create({"key": "SECOND", "value": "v", "tags": ["new", "old", "newer"]})
    assert item["tags"] == ["old", "new", "newer"]
    assert sa.get(key="SECOND").json[0]["tags"] == item["tags"]
    (updated,) = sa.put([{"id": item["id"], "tags": ["newer", "old"]}]).json
    assert updated["tags"] == ["old", "newer"] == sa.get(key="SECOND").json[0]["tags"]
