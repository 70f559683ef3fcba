"""The management API's contract: apps, environments, roles, service accounts and their tokens."""

import dataclasses
import json
import re
from datetime import datetime, timedelta, timezone

import pytest

import support
from phase_lite import accounts, apps, phase_crypto
from phase_lite.store import accounts as account_store
from phase_lite.store import apps as app_store
from phase_lite.store import audit as audit_store

from support import bearer_headers

pytestmark = pytest.mark.both_backends

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
ENV_NAME_INVALID = (
    "Environment name is invalid. Only letters, numbers, hyphens and underscores are allowed "
    "(max 64 characters)."
)
APP_KEYS = ["id", "name", "description", "sseEnabled", "createdAt", "updatedAt"]
ENV_KEYS = ["id", "name", "envType", "index", "createdAt", "updatedAt"]
SA_KEYS = ["id", "name", "role", "createdAt", "updatedAt"]
TOKEN_KEYS = ["id", "name", "createdAt", "expiresAt", "token", "bearerToken"]
PREFIXES = ["", "/public", "/service/public", "/service"]


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def org_id(services):
    return support.organisation_id(services)


@pytest.fixture
def role_ids(db, org_id):
    return {row["name"]: row["id"] for row in account_store.list_roles(db, org_id)}


@pytest.fixture
def make_user(services):
    """A user with a role and the given environment rows; return their request headers."""

    def make(role, envs=(), email=None):
        email = email or f"{role.lower()}@example.com"
        return bearer_headers(support.make_user(services, email, role, envs)[1])

    return make


@pytest.fixture
def make_sa(make_service_token):
    """A service account with the Service role and the given environments; return headers."""

    def make(envs=(), name="ci"):
        return bearer_headers(make_service_token(list(envs), name=name))

    return make


@pytest.fixture
def foreign(services):
    """An organisation of its own with an app and a service account (ids only)."""
    db = services.db
    with db.transaction():
        org = account_store.insert_organisation(db, "elsewhere")
        role = account_store.insert_role(db, org, "Service", "", "", "{}", False)
        sa_id = account_store.insert_service_account(db, org, "theirs", role)
    stranger = dataclasses.replace(support.operator(services), organisation_id=org)
    app, envs = apps.create_app(services, stranger, {"name": "foreign"}, support.TEST_META)
    return {"app": app["id"], "env": envs[0]["id"], "role": role, "sa": sa_id}


@pytest.fixture
def sa_account(client, owner_headers, role_ids):
    """A service account created over the API: its 201 body."""
    response = client.post("/v1/service-accounts/", headers=owner_headers,
                           json={"name": "deployer", "role_id": role_ids["Service"]})
    assert response.status_code == 201
    return response.get_json()


def app_count(db, org_id):
    return len(app_store.list_apps(db, org_id))


def env_ids(envs, *names):
    return [envs[name]["id"] for name in names]


def fill(value, ids):
    """``value`` with ``{name}`` placeholders in its strings replaced from ``ids``."""
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [fill(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, ids) for key, item in value.items()}
    return value


# -- apps ------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_create_app_answers_201_with_phase_shape(client, owner_headers, prefix):
    response = client.post(f"{prefix}/v1/apps/", headers=owner_headers,
                           json={"name": "billing", "description": "Billing service"})
    assert response.status_code == 201
    body = response.get_json()
    assert list(body) == APP_KEYS + ["environments"]
    assert body["name"] == "billing"
    assert body["description"] == "Billing service"
    assert body["sseEnabled"] is True
    assert TIMESTAMP.match(body["createdAt"]) and TIMESTAMP.match(body["updatedAt"])
    assert [list(e) for e in body["environments"]] == [ENV_KEYS] * 3
    assert [(e["name"], e["envType"], e["index"]) for e in body["environments"]] == [
        ("Development", "dev", 0), ("Staging", "staging", 1), ("Production", "prod", 2)]


def test_create_app_with_custom_environments(client, owner_headers):
    response = client.post("/v1/apps/", headers=owner_headers,
                           json={"name": "svc", "environments": [" test ", "live"]})
    assert response.status_code == 201
    assert [(e["name"], e["envType"], e["index"]) for e in response.get_json()["environments"]] \
        == [("test", "custom", 0), ("live", "custom", 1)]


@pytest.mark.parametrize("description", [None, "", "   "])
def test_app_without_description_renders_null(client, owner_headers, description):
    body = {"name": "svc"} if description is None else {"name": "svc", "description": description}
    response = client.post("/v1/apps/", headers=owner_headers, json=body)
    assert response.status_code == 201
    assert response.get_json()["description"] is None


def test_app_name_is_trimmed_and_stripped_of_html(client, owner_headers):
    response = client.post("/v1/apps/", headers=owner_headers,
                           json={"name": "  <b>billing</b> api ", "description": "<i>x</i>"})
    assert (response.get_json()["name"], response.get_json()["description"]) == ("billing api", "x")


@pytest.mark.parametrize("body, message", [
    ({}, "Missing required field: name"),
    ({"name": "   "}, "Missing required field: name"),
    ({"name": "<b></b>"}, "Missing required field: name"),
    ({"name": 123}, "'name' must be a string."),
    ({"name": "x" * 65}, "'name' cannot exceed 64 characters."),
    ({"name": "ok", "description": "d" * 10001}, "'description' cannot exceed 10000 characters."),
    ({"name": "ok", "environments": "not-a-list"},
     "'environments' must be a list of environment names."),
    ({"name": "ok", "environments": []}, "'environments' must not be empty."),
    ({"name": "ok", "environments": ["valid", 123]},
     "Each environment name must be a non-empty string."),
    ({"name": "ok", "environments": ["valid", "  "]},
     "Each environment name must be a non-empty string."),
    ({"name": "ok", "environments": ["staging", "Staging"]},
     "Duplicate environment name: 'Staging'."),
    ({"name": "ok", "environments": ["fine", "bad name!!"]}, ENV_NAME_INVALID),
])
def test_create_app_validation(client, owner_headers, db, org_id, body, message):
    response = client.post("/v1/apps/", headers=owner_headers, json=body)
    assert (response.status_code, response.get_json()) == (400, {"error": message})
    assert app_count(db, org_id) == 0


@pytest.mark.parametrize("data, message", [
    (b"{not json", "JSON parse error - Expecting property name enclosed in double quotes: "
                   "line 1 column 2 (char 1)"),
    (b'["billing"]', "Request body must be a JSON object."),
    (b'{"name": NaN}', "JSON parse error - Out of range float values are not JSON compliant: "
                       "'NaN'"),
])
def test_malformed_bodies_are_400(client, owner_headers, data, message):
    response = client.post("/v1/apps/", headers=owner_headers, data=data,
                           content_type="application/json")
    assert (response.status_code, response.get_json()) == (400, {"error": message})


def test_list_apps_newest_first(client, owner_headers, make_app):
    make_app("first")
    make_app("second")
    response = client.get("/v1/apps/", headers=owner_headers)
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert [a["name"] for a in data] == ["second", "first"]
    assert all(list(a) == APP_KEYS for a in data)


def test_list_apps_shows_only_apps_with_a_grant(client, make_app, make_user, make_sa):
    _, one = make_app("one")
    make_app("two")
    for headers in (make_user("Developer", [one["Staging"]]), make_sa([one["Production"]])):
        data = client.get("/v1/apps/", headers=headers).get_json()["data"]
        assert [a["name"] for a in data] == ["one"]
    assert client.get("/v1/apps/", headers=make_sa([], "none")).get_json() == {"data": []}


@pytest.mark.parametrize("role", ["Owner", "Admin"])
def test_global_access_users_see_every_app(client, owner_headers, make_app, make_user, role):
    make_app("one")
    headers = owner_headers if role == "Owner" else make_user(role)
    assert len(client.get("/v1/apps/", headers=headers).get_json()["data"]) == 1


def test_developer_may_not_create_apps(client, make_user, db, org_id):
    response = client.post("/v1/apps/", headers=make_user("Developer"), json={"name": "x"})
    assert (response.status_code, response.get_json()) == (
        403, {"error": "You don't have permission to create apps."})
    assert app_count(db, org_id) == 0


@pytest.mark.parametrize("creator", ["Manager", "Service"])
def test_non_global_creator_is_granted_the_new_environments(client, make_user, make_sa,
                                                             creator):
    headers = make_user("Manager") if creator == "Manager" else make_sa()
    created = client.post("/v1/apps/", headers=headers, json={"name": "mine"}).get_json()
    listed = client.get(f"/v1/environments/?app_id={created['id']}", headers=headers)
    assert [e["name"] for e in listed.get_json()["data"]] == [
        "Development", "Staging", "Production"]


def test_app_detail_get_and_put(client, owner_headers, demo):
    app, _ = demo
    got = client.get(f"/v1/apps/{app['id']}/", headers=owner_headers)
    assert got.status_code == 200 and list(got.get_json()) == APP_KEYS
    put = client.put(f"/v1/apps/{app['id']}/", headers=owner_headers,
                     json={"name": "renamed", "description": "now described"})
    assert put.status_code == 200
    assert (put.get_json()["name"], put.get_json()["description"]) == ("renamed", "now described")
    only_desc = client.put(f"/v1/apps/{app['id']}/", headers=owner_headers,
                           json={"description": ""})
    assert (only_desc.get_json()["name"], only_desc.get_json()["description"]) == ("renamed", None)


@pytest.mark.parametrize("body, message", [
    ({}, "At least one of 'name' or 'description' must be provided."),
    ({"name": "  "}, "Missing required field: name"),
    ({"name": "n" * 65}, "'name' cannot exceed 64 characters."),
    ({"description": "d" * 10001}, "'description' cannot exceed 10000 characters."),
    ({"name": "ok", "description": 5}, "'description' must be a string."),
])
def test_app_update_validation(client, owner_headers, demo, db, org_id, body, message):
    app, _ = demo
    response = client.put(f"/v1/apps/{app['id']}/", headers=owner_headers, json=body)
    assert (response.status_code, response.get_json()) == (400, {"error": message})
    assert app_store.get_app(db, org_id, app["id"])["name"] == "demo"


def test_app_delete_removes_everything(client, owner_headers, demo, db, org_id,
                                       make_service_token):
    app, envs = demo
    make_service_token(list(envs.values()))
    response = client.delete(f"/v1/apps/{app['id']}/", headers=owner_headers)
    assert response.status_code == 204 and response.data == b""
    assert app_store.list_environments(db, app["id"]) == []
    assert db.scalar("SELECT COUNT(*) FROM environment_access") == 0
    again = client.get(f"/v1/apps/{app['id']}/", headers=owner_headers)
    assert (again.status_code, again.get_json()) == (
        404, {"error": f"App with ID {app['id']} not found"})


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_app_detail_of_unknown_or_foreign_app_is_404(client, owner_headers, foreign, method):
    for app_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", foreign["app"]):
        response = getattr(client, method)(f"/v1/apps/{app_id}/", headers=owner_headers,
                                           json={"name": "x"})
        assert (response.status_code, response.get_json()) == (
            404, {"error": f"App with ID {app_id} not found"})


def test_app_detail_without_access(client, demo, make_user, make_sa):
    app, envs = demo
    url = f"/v1/apps/{app['id']}/"
    user = client.get(url, headers=make_user("Developer"))
    assert (user.status_code, user.get_json()) == (403, {"error": "User cannot access this app"})
    sa = client.get(url, headers=make_sa())
    assert (sa.status_code, sa.get_json()) == (
        401, {"error": "Service account cannot access this app"})


@pytest.mark.parametrize("who, method, action", [
    ("Developer", "put", "update"), ("Developer", "delete", "delete"),
    ("Manager", "get", None), ("Service", "delete", "delete"), ("Service", "put", None),
])
def test_app_detail_permissions_follow_the_role(client, demo, make_user, make_sa, who, method,
                                                action):
    app, envs = demo
    headers = make_sa([envs["Development"]]) if who == "Service" else make_user(
        who, [envs["Development"]])
    response = getattr(client, method)(f"/v1/apps/{app['id']}/", headers=headers,
                                       json={"name": "changed"})
    if action is None:
        assert response.status_code == 200
    else:
        assert (response.status_code, response.get_json()) == (
            403, {"error": f"You don't have permission to {action} apps."})


# -- methods, prefixes, slashes --------------------------------------------------------------


ROUTES = {
    "/v1/apps/": {"GET", "POST"},
    "/v1/apps/{app}/": {"GET", "PUT", "DELETE"},
    "/v1/environments/?app_id={app}": {"GET", "POST"},
    "/v1/environments/{env}/": {"GET", "PUT", "DELETE"},
    "/v1/roles/": {"GET", "POST"},
    "/v1/roles/{role}/": {"GET", "PUT", "DELETE"},
    "/v1/service-accounts/": {"GET", "POST"},
    "/v1/service-accounts/{sa}/": {"GET", "PUT", "DELETE"},
    "/v1/service-accounts/{sa}/access/": {"PUT"},
    "/v1/service-accounts/{sa}/tokens/": {"POST"},
    "/v1/service-accounts/{sa}/tokens/{token}/": {"DELETE"},
}


@pytest.fixture
def route_ids(demo, role_ids, sa_account):
    app, envs = demo
    return {"app": app["id"], "env": envs["Staging"]["id"], "role": role_ids["Service"],
            "sa": sa_account["id"], "token": sa_account["initialToken"]["id"]}


@pytest.mark.parametrize("route", ROUTES)
def test_other_methods_are_405_after_authentication(client, owner_headers, route_ids, route):
    url = route.format(**route_ids)
    for method in sorted({"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"}
                         - ROUTES[route]):
        anonymous = client.open(url, method=method)
        assert anonymous.status_code == 401, (method, url)
        response = client.open(url, method=method, headers=owner_headers)
        assert response.status_code == 405, (method, url)
        if method != "HEAD":
            assert response.get_json() == {"error": f'Method "{method}" not allowed.'}


@pytest.mark.parametrize("route", ROUTES)
def test_routes_need_credentials_and_their_trailing_slash(client, route_ids, route):
    url = route.format(**route_ids)
    method = sorted(ROUTES[route])[0]
    response = client.open(url, method=method)
    assert (response.status_code, response.get_json()) == (
        401, {"error": "Authentication credentials were not provided."})
    path, _, query = url.partition("?")
    unslashed = path.rstrip("/") + (f"?{query}" if query else "")
    assert client.open(unslashed, method=method).status_code == 404


# -- environments ----------------------------------------------------------------------------


def test_environments_need_an_app(client, owner_headers):
    response = client.get("/v1/environments/", headers=owner_headers)
    assert (response.status_code, response.get_json()) == (
        403, {"error": "Could not resolve app from request."})
    unknown = client.get("/v1/environments/?app_id=nope", headers=owner_headers)
    assert (unknown.status_code, unknown.get_json()) == (
        404, {"error": "App with ID nope not found"})


def test_list_environments_in_index_order_and_only_granted(client, owner_headers, demo,
                                                          make_user, make_sa):
    app, envs = demo
    url = f"/v1/environments/?appId={app['id']}"
    data = client.get(url, headers=owner_headers).get_json()["data"]
    assert [(e["name"], e["index"]) for e in data] == [
        ("Development", 0), ("Staging", 1), ("Production", 2)]
    assert all(list(e) == ENV_KEYS for e in data)
    for headers in (make_user("Developer", [envs["Production"], envs["Development"]]),
                    make_sa([envs["Production"], envs["Development"]])):
        listed = client.get(url, headers=headers).get_json()["data"]
        assert [e["name"] for e in listed] == ["Development", "Production"]


def test_list_environments_without_app_access(client, demo, make_user, make_sa):
    app, _ = demo
    url = f"/v1/environments/?app_id={app['id']}"
    assert client.get(url, headers=make_user("Developer")).get_json() == {
        "error": "User cannot access this app"}
    response = client.get(url, headers=make_sa())
    assert (response.status_code, response.get_json()) == (
        401, {"error": "Service account cannot access this app"})


def test_create_environment(client, owner_headers, demo):
    app, _ = demo
    response = client.post(f"/v1/environments/?app_id={app['id']}", headers=owner_headers,
                           json={"name": "test-env"})
    assert response.status_code == 201
    body = response.get_json()
    assert list(body) == ENV_KEYS
    assert (body["name"], body["envType"], body["index"]) == ("test-env", "custom", 3)


@pytest.mark.parametrize("name", ["Development2", "staging-1", "prod_v2", "a", "A" * 64])
def test_environment_names_accepted(client, owner_headers, demo, name):
    app, _ = demo
    response = client.post(f"/v1/environments/?app_id={app['id']}", headers=owner_headers,
                           json={"name": name})
    assert response.status_code == 201


@pytest.mark.parametrize("body, message", [
    ({}, "Missing required field: name"),
    ({"name": ""}, "Missing required field: name"),
    ({"name": "bad name!!"}, ENV_NAME_INVALID),
    ({"name": "has space"}, ENV_NAME_INVALID),
    ({"name": "env.name"}, ENV_NAME_INVALID),
    ({"name": "A" * 65}, ENV_NAME_INVALID),
    ({"name": 7}, ENV_NAME_INVALID),
    ({"name": "development"}, "An environment named 'development' already exists in this app."),
])
def test_create_environment_validation(client, owner_headers, demo, db, body, message):
    app, _ = demo
    response = client.post(f"/v1/environments/?app_id={app['id']}", headers=owner_headers,
                           json=body)
    assert (response.status_code, response.get_json()) == (400, {"error": message})
    assert len(app_store.list_environments(db, app["id"])) == 3


@pytest.mark.parametrize("creator", ["Developer", "Service"])
def test_environment_creator_is_granted_it(client, demo, make_user, make_sa, creator):
    app, envs = demo
    headers = (make_sa if creator == "Service" else lambda e: make_user(creator, e))(
        [envs["Development"]])
    created = client.post(f"/v1/environments/?app_id={app['id']}", headers=headers,
                          json={"name": "qa"})
    assert created.status_code == 201
    listed = client.get(f"/v1/environments/?app_id={app['id']}", headers=headers).get_json()
    assert [e["name"] for e in listed["data"]] == ["Development", "qa"]


def test_environment_detail_get_put_delete(client, owner_headers, demo):
    _, envs = demo
    url = f"/v1/environments/{envs['Staging']['id']}/"
    got = client.get(url, headers=owner_headers)
    assert got.status_code == 200 and got.get_json()["name"] == "Staging"
    renamed = client.put(url, headers=owner_headers, json={"name": "QA"})
    assert (renamed.status_code, renamed.get_json()["name"]) == (200, "QA")
    recased = client.put(url, headers=owner_headers, json={"name": "qa"})
    assert recased.status_code == 200
    deleted = client.delete(url, headers=owner_headers)
    assert deleted.status_code == 204
    assert client.get(url, headers=owner_headers).get_json() == {"error": "Environment not found"}


@pytest.mark.parametrize("body, status, message", [
    ({"name": "production"}, 409, "An environment named 'production' already exists in this app."),
    ({"name": "no spaces"}, 400, ENV_NAME_INVALID),
    ({}, 400, "Missing required field: name"),
])
def test_environment_rename_validation(client, owner_headers, demo, db, org_id, body, status,
                                       message):
    _, envs = demo
    env_id = envs["Staging"]["id"]
    response = client.put(f"/v1/environments/{env_id}/", headers=owner_headers, json=body)
    assert (response.status_code, response.get_json()) == (status, {"error": message})
    assert app_store.get_environment(db, org_id, env_id)["name"] == "Staging"


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_environment_detail_unknown_or_foreign_is_404(client, owner_headers, foreign, method):
    for env_id in ("00000000-0000-0000-0000-000000000000", foreign["env"]):
        response = getattr(client, method)(f"/v1/environments/{env_id}/",
                                           headers=owner_headers, json={"name": "x"})
        assert (response.status_code, response.get_json()) == (
            404, {"error": "Environment not found"})


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_environment_detail_without_its_key(client, demo, make_user, make_sa, method):
    _, envs = demo
    url = f"/v1/environments/{envs['Staging']['id']}/"
    cases = [(make_user("Manager", [envs["Development"]]),
              "You don't have access to this environment."),
             (make_sa([envs["Development"]]),
              "Service account doesn't have access to this environment.")]
    if method == "delete":  # Managers may not delete environments at all
        cases[0] = (cases[0][0], "You don't have permission to delete environments.")
    for headers, message in cases:
        response = getattr(client, method)(url, headers=headers, json={"name": "x"})
        assert (response.status_code, response.get_json()) == (403, {"error": message})


def test_developer_may_not_delete_environments(client, demo, make_user, db):
    app, envs = demo
    response = client.delete(f"/v1/environments/{envs['Development']['id']}/",
                             headers=make_user("Developer", [envs["Development"]]))
    assert (response.status_code, response.get_json()) == (
        403, {"error": "You don't have permission to delete environments."})
    assert len(app_store.list_environments(db, app["id"])) == 3


def test_environment_url_beats_environment_header(client, owner_headers, demo, make_app):
    _, envs = demo
    _, other = make_app("other")
    response = client.get(f"/v1/environments/{envs['Staging']['id']}/",
                          headers=owner_headers | {"Environment": other["Production"]["id"]})
    assert response.get_json()["id"] == envs["Staging"]["id"]


# -- roles -----------------------------------------------------------------------------------


def test_list_roles(client, owner_headers, make_sa):
    for headers in (owner_headers, make_sa()):
        response = client.get("/v1/roles/", headers=headers)
        assert response.status_code == 200
        data = response.get_json()["data"]
        assert [r["name"] for r in data] == ["Owner", "Admin", "Manager", "Developer", "Service"]
        assert all(list(r) == ["id", "name", "description", "color", "isDefault", "createdAt"]
                   and r["isDefault"] is True for r in data)


@pytest.mark.parametrize("name", ["Owner", "Admin", "Manager", "Developer", "Service"])
def test_role_detail_carries_phase_permission_maps(client, owner_headers, role_ids, name):
    response = client.get(f"/v1/roles/{role_ids[name]}/", headers=owner_headers)
    assert response.status_code == 200
    expected = {r["name"]: r for r in accounts.default_roles()}[name]
    body = response.get_json()
    assert body["permissions"] == expected["permissions"]
    assert list(body["permissions"]) == ["permissions", "appPermissions", "globalAccess"]
    assert body["description"] == expected["description"]


def test_custom_roles_are_refused(client, owner_headers, make_user, role_ids):
    post = client.post("/v1/roles/", headers=owner_headers,
                       json={"name": "ReadOnly", "permissions": {}})
    assert (post.status_code, post.get_json()) == (
        403, {"error": "Custom roles are not available on your organisation's plan."})
    developer = client.post("/v1/roles/", headers=make_user("Developer"), json={"name": "x"})
    assert developer.get_json() == {"error": "You don't have permission to create roles."}
    url = f"/v1/roles/{role_ids['Developer']}/"
    assert client.put(url, headers=owner_headers, json={"name": "Dev"}).get_json() == {
        "error": "Default roles cannot be modified."}
    assert client.delete(url, headers=owner_headers).get_json() == {
        "error": "Default roles cannot be deleted."}
    assert client.get(url, headers=owner_headers).get_json()["name"] == "Developer"


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_unknown_or_foreign_role_is_404(client, owner_headers, foreign, method):
    for role_id in ("nope", foreign["role"]):
        response = getattr(client, method)(f"/v1/roles/{role_id}/", headers=owner_headers,
                                           json={})
        assert (response.status_code, response.get_json()) == (404, {"error": "Role not found."})


# -- service accounts ------------------------------------------------------------------------


def test_create_service_account(client, owner_headers, role_ids):
    response = client.post("/v1/service-accounts/", headers=owner_headers,
                           json={"name": "billing-deployer", "role_id": role_ids["Service"],
                                 "token_name": "ci"})
    assert response.status_code == 201
    body = response.get_json()
    assert list(body) == SA_KEYS + ["initialToken"]
    assert body["role"] == {"id": role_ids["Service"], "name": "Service"}
    token = body["initialToken"]
    assert list(token) == TOKEN_KEYS
    assert (token["name"], token["expiresAt"]) == ("ci", None)
    assert re.match(r"^pss_service:v2:([0-9a-f]{64}:){3}[0-9a-f]{64}$", token["token"])
    assert token["bearerToken"] == f"ServiceAccount {token['token'].split(':')[2]}"
    works = client.get("/v1/apps/", headers={"Authorization": f"Bearer {token['bearerToken']}"})
    assert (works.status_code, works.get_json()) == (200, {"data": []})


def test_initial_token_name_defaults_to_default(sa_account):
    assert sa_account["initialToken"]["name"] == "Default"


@pytest.mark.parametrize("body, status, message", [
    ({"role": "Service"}, 400, "Missing required field: name"),
    ({"name": "n" * 65, "role": "Service"}, 400, "'name' cannot exceed 64 characters."),
    ({"name": "x", "token_name": "", "role": "Service"}, 400,
     "Missing required field: token_name"),
    ({"name": "x", "token_name": "t" * 65, "role": "Service"}, 400,
     "'token_name' cannot exceed 64 characters."),
    ({"name": "x"}, 400, "Missing required field: role_id"),
    ({"name": "x", "role_id": "nope"}, 404, "Role not found."),
    ({"name": "x", "role_id": 5}, 404, "Role not found."),
    ({"name": "x", "role": "Admin"}, 400, "Service accounts cannot be assigned the 'Admin' role."),
    ({"name": "x", "role": "Owner"}, 400, "Service accounts cannot be assigned the 'Owner' role."),
    ({"name": "x", "role": "Service", "team_id": "t"}, 403,
     "Teams are not available on your organisation's plan."),
])
def test_create_service_account_validation(client, owner_headers, role_ids, db, org_id, body,
                                           status, message):
    if "role" in body:
        body = dict(body)  # a copy: the parameter serves the other backend's run too
        body["role_id"] = role_ids[body.pop("role")]
    response = client.post("/v1/service-accounts/", headers=owner_headers, json=body)
    assert (response.status_code, response.get_json()) == (status, {"error": message})
    assert account_store.list_service_accounts(db, org_id) == []


def test_manager_and_developer_roles_may_create_service_accounts(client, make_user, role_ids):
    body = {"name": "x", "role_id": role_ids["Developer"]}
    assert client.post("/v1/service-accounts/", headers=make_user("Manager"),
                       json=body).status_code == 201
    refused = client.post("/v1/service-accounts/", headers=make_user("Developer"), json=body)
    assert (refused.status_code, refused.get_json()) == (
        403, {"error": "You don't have permission to create service accounts."})


def test_list_service_accounts_newest_first(client, owner_headers, role_ids, make_user, make_sa):
    for name in ("first", "second"):
        client.post("/v1/service-accounts/", headers=owner_headers,
                    json={"name": name, "role_id": role_ids["Service"]})
    data = client.get("/v1/service-accounts/", headers=owner_headers).get_json()["data"]
    assert [sa["name"] for sa in data] == ["second", "first"]
    assert all(list(sa) == SA_KEYS for sa in data)
    assert client.get("/v1/service-accounts/", headers=make_sa()).status_code == 200
    assert client.get("/v1/service-accounts/", headers=make_user("Developer")).get_json() == {
        "error": "You don't have permission to read service accounts."}


def test_service_account_detail(client, owner_headers, sa_account, demo, make_app):
    app, envs = demo
    other, other_envs = make_app("other")
    sa_id = sa_account["id"]
    client.put(f"/v1/service-accounts/{sa_id}/access/", headers=owner_headers, json={"apps": [
        {"id": app["id"], "environments": env_ids(envs, "Production", "Development")},
        {"id": other["id"], "environments": env_ids(other_envs, "Staging")},
    ]})
    client.post(f"/v1/service-accounts/{sa_id}/tokens/", headers=owner_headers,
                json={"name": "rotated"})
    body = client.get(f"/v1/service-accounts/{sa_id}/", headers=owner_headers).get_json()
    assert list(body) == SA_KEYS + ["tokens", "apps"]
    assert [t["name"] for t in body["tokens"]] == ["rotated", "Default"]
    assert all(list(t) == ["id", "name", "createdAt", "expiresAt"] for t in body["tokens"])
    assert body["apps"] == [
        {"id": other["id"], "name": "other", "environments": [
            {"id": other_envs["Staging"]["id"], "name": "Staging", "envType": "staging"}]},
        {"id": app["id"], "name": "demo", "environments": [
            {"id": envs["Development"]["id"], "name": "Development", "envType": "dev"},
            {"id": envs["Production"]["id"], "name": "Production", "envType": "prod"}]},
    ]


def test_update_service_account(client, owner_headers, sa_account, role_ids):
    url = f"/v1/service-accounts/{sa_account['id']}/"
    response = client.put(url, headers=owner_headers,
                          json={"name": "renamed", "role_id": role_ids["Developer"]})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["name"], body["role"]["name"]) == ("renamed", "Developer")
    assert list(body) == SA_KEYS + ["tokens", "apps"]


@pytest.mark.parametrize("body, status, message", [
    ({}, 400, "At least one of 'name' or 'role_id' must be provided."),
    ({"name": ""}, 400, "Missing required field: name"),
    ({"role_id": "nope"}, 404, "Role not found."),
    ({"name": "ok", "role": "Admin"}, 400, "Service accounts cannot be assigned the 'Admin' role."),
])
def test_update_service_account_validation(client, owner_headers, sa_account, role_ids, db,
                                           org_id, body, status, message):
    if "role" in body:
        body = dict(body)  # a copy: the parameter serves the other backend's run too
        body["role_id"] = role_ids[body.pop("role")]
    response = client.put(f"/v1/service-accounts/{sa_account['id']}/", headers=owner_headers,
                          json=body)
    assert (response.status_code, response.get_json()) == (status, {"error": message})
    row = account_store.get_service_account(db, org_id, sa_account["id"])
    assert (row["name"], row["role_name"]) == ("deployer", "Service")


def assert_delete_stops_the_token(client, owner_headers, bearer_token, url):
    """The token works; the Owner's DELETE of ``url`` answers 204 with no body; then the
    token is refused at once."""
    headers = {"Authorization": f"Bearer {bearer_token}"}
    assert client.get("/v1/apps/", headers=headers).status_code == 200
    response = client.delete(url, headers=owner_headers)
    assert response.status_code == 204 and response.data == b""
    assert client.get("/v1/apps/", headers=headers).get_json() == {
        "error": "Token expired or deleted"}


def test_delete_service_account_stops_its_tokens(client, owner_headers, sa_account):
    url = f"/v1/service-accounts/{sa_account['id']}/"
    assert_delete_stops_the_token(client, owner_headers, sa_account["initialToken"]["bearerToken"],
                                  url)
    assert client.get(url, headers=owner_headers).get_json() == {
        "error": "Service account not found."}


@pytest.mark.parametrize("suffix, method", [
    ("/", "get"), ("/", "put"), ("/", "delete"), ("/access/", "put"), ("/tokens/", "post"),
    ("/tokens/00000000-0000-0000-0000-000000000000/", "delete"),
])
def test_unknown_or_foreign_service_account_is_404(client, owner_headers, foreign, suffix,
                                                    method):
    for sa_id in ("nope", foreign["sa"]):
        response = getattr(client, method)(f"/v1/service-accounts/{sa_id}{suffix}",
                                           headers=owner_headers, json={"name": "x"})
        assert (response.status_code, response.get_json()) == (
            404, {"error": "Service account not found."})


# -- service-account access ------------------------------------------------------------------


def grants(client, headers, sa_id):
    body = client.get(f"/v1/service-accounts/{sa_id}/", headers=headers).get_json()
    return {(a["name"], e["name"]) for a in body["apps"] for e in a["environments"]}


def test_access_replaces_the_grants(client, owner_headers, sa_account, demo):
    app, envs = demo
    url = f"/v1/service-accounts/{sa_account['id']}/access/"
    first = client.put(url, headers=owner_headers, json={"apps": [
        {"id": app["id"], "environments": env_ids(envs, "Development")}]})
    assert first.status_code == 200
    assert list(first.get_json()) == SA_KEYS + ["tokens", "apps"]
    assert grants(client, owner_headers, sa_account["id"]) == {("demo", "Development")}
    client.put(url, headers=owner_headers, json={"apps": [
        {"id": app["id"], "environments": env_ids(envs, "Staging", "Production")}]})
    assert grants(client, owner_headers, sa_account["id"]) == {
        ("demo", "Staging"), ("demo", "Production")}
    client.put(url, headers=owner_headers, json={"apps": []})
    assert grants(client, owner_headers, sa_account["id"]) == set()


@pytest.mark.parametrize("apps_value, status, message", [
    (None, 400, "Missing required field: apps"),
    ("all", 400, "'apps' must be a list."),
    (["x"], 400, "Each entry in 'apps' must be an object with 'id' and 'environments'."),
    ([{"environments": []}], 400, "Each app entry must have an 'id' field."),
    ([{"id": "nope", "environments": ["x"]}], 404, "App not found: nope"),
    ([{"id": "{foreign_app}", "environments": ["x"]}], 404, "App not found: {foreign_app}"),
    ([{"id": "{app}"}], 400,
     "Each app entry must have an 'environments' list of environment IDs."),
    ([{"id": "{app}", "environments": []}], 400,
     "'environments' for app '{app}' must not be empty. To revoke all access, remove the app "
     "from the list."),
    ([{"id": "{app}", "environments": ["{other_env}"]}], 404,
     "Environment(s) not found in app 'demo': {other_env}"),
    ([{"id": "{app}", "environments": ["{dev}", "{foreign_env}"]}], 404,
     "Environment(s) not found in app 'demo': {foreign_env}"),
])
def test_access_validation_leaves_grants_unchanged(client, owner_headers, sa_account, demo,
                                                   make_app, foreign, apps_value, status,
                                                   message):
    app, envs = demo
    _, other_envs = make_app("other")
    ids = {"app": app["id"], "dev": envs["Development"]["id"],
           "other_env": other_envs["Development"]["id"], "foreign_app": foreign["app"],
           "foreign_env": foreign["env"]}
    url = f"/v1/service-accounts/{sa_account['id']}/access/"
    client.put(url, headers=owner_headers, json={"apps": [
        {"id": app["id"], "environments": [ids["dev"]]}]})
    body = {} if apps_value is None else {"apps": fill(apps_value, ids)}
    response = client.put(url, headers=owner_headers, json=body)
    assert (response.status_code, response.get_json()) == (status, {"error": fill(message, ids)})
    assert grants(client, owner_headers, sa_account["id"]) == {("demo", "Development")}


def test_non_global_caller_grants_only_what_it_holds(client, owner_headers, sa_account, demo,
                                                     make_app, make_user):
    app, envs = demo
    other, other_envs = make_app("other")
    manager = make_user("Manager", [envs["Development"]])
    url = f"/v1/service-accounts/{sa_account['id']}/access/"
    no_app = client.put(url, headers=manager, json={"apps": [
        {"id": other["id"], "environments": env_ids(other_envs, "Development")}]})
    assert (no_app.status_code, no_app.get_json()) == (
        403, {"error": "You don't have access to app 'other'."})
    no_env = client.put(url, headers=manager, json={"apps": [
        {"id": app["id"], "environments": env_ids(envs, "Development", "Staging")}]})
    assert (no_env.status_code, no_env.get_json()) == (
        403, {"error": "You don't have access to one or more environments in app 'demo'."})
    allowed = client.put(url, headers=manager, json={"apps": [
        {"id": app["id"], "environments": env_ids(envs, "Development")}]})
    assert allowed.status_code == 200
    assert grants(client, owner_headers, sa_account["id"]) == {("demo", "Development")}


def test_service_role_may_not_change_access(client, sa_account, make_sa):
    response = client.put(f"/v1/service-accounts/{sa_account['id']}/access/",
                          headers=make_sa(), json={"apps": []})
    assert (response.status_code, response.get_json()) == (
        403, {"error": "You don't have permission to update service accounts."})


def test_granting_and_revoking_takes_effect_at_once(client, owner_headers, sa_account, demo):
    app, envs = demo
    sa_headers = {"Authorization": f"Bearer {sa_account['initialToken']['bearerToken']}"}
    url = f"/v1/service-accounts/{sa_account['id']}/access/"
    listed = f"/v1/environments/?app_id={app['id']}"
    assert client.get(listed, headers=sa_headers).status_code == 401
    client.put(url, headers=owner_headers, json={"apps": [
        {"id": app["id"], "environments": env_ids(envs, "Staging")}]})
    assert [e["name"] for e in client.get(listed, headers=sa_headers).get_json()["data"]] == [
        "Staging"]
    client.put(url, headers=owner_headers, json={"apps": []})
    assert client.get(listed, headers=sa_headers).get_json() == {
        "error": "Service account cannot access this app"}


# -- service-account tokens ------------------------------------------------------------------


def test_mint_token_with_expires_in(client, owner_headers, sa_account):
    before = datetime.now(timezone.utc)
    response = client.post(f"/v1/service-accounts/{sa_account['id']}/tokens/",
                           headers=owner_headers, json={"name": "rotated", "expires_in": 86400})
    assert response.status_code == 201
    body = response.get_json()
    assert list(body) == TOKEN_KEYS
    expires = datetime.fromisoformat(body["expiresAt"])
    assert timedelta(seconds=86390) < expires - before < timedelta(seconds=86410)
    works = client.get("/v1/roles/", headers={"Authorization": f"Bearer {body['bearerToken']}"})
    assert works.status_code == 200


def test_mint_token_with_expires_at(client, owner_headers, sa_account):
    moment = (datetime.now(timezone.utc) + timedelta(days=2)).replace(microsecond=0)
    local = moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    response = client.post(f"/v1/service-accounts/{sa_account['id']}/tokens/",
                           headers=owner_headers,
                           json={"name": "dated", "expires_at": local, "expires_in": 5})
    assert response.status_code == 201
    assert response.get_json()["expiresAt"] == moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("body, message", [
    ({}, "Missing required field: name"),
    ({"name": "n" * 65}, "'name' cannot exceed 64 characters."),
    ({"name": "x", "expiry": 60},
     "Unknown field 'expiry'. Use 'expires_at' (ISO-8601 with timezone) or 'expires_in' "
     "(positive integer seconds)."),
    ({"name": "x", "expires_at": 1234},
     "'expires_at' must be an ISO-8601 datetime string with timezone "
     "(e.g. '2026-12-31T23:59:59Z')."),
    ({"name": "x", "expires_at": "tomorrow"}, "'expires_at' is not a valid ISO-8601 datetime."),
    ({"name": "x", "expires_at": "2999-01-01T00:00:00"},
     "'expires_at' must include a timezone offset (e.g. 'Z' or '+00:00')."),
    ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "'expires_at' must be in the future."),
    ({"name": "x", "expires_in": 0}, "'expires_in' must be a positive integer (seconds)."),
    ({"name": "x", "expires_in": -5}, "'expires_in' must be a positive integer (seconds)."),
    ({"name": "x", "expires_in": "60"}, "'expires_in' must be a positive integer (seconds)."),
    ({"name": "x", "expires_in": True}, "'expires_in' must be a positive integer (seconds)."),
    ({"name": "x", "expires_in": 1.5}, "'expires_in' must be a positive integer (seconds)."),
    ({"name": "x", "expires_in": 10 ** 20}, "'expires_in' must be a positive integer (seconds)."),
])
def test_mint_token_validation(client, owner_headers, sa_account, db, body, message):
    response = client.post(f"/v1/service-accounts/{sa_account['id']}/tokens/",
                           headers=owner_headers, json=body)
    assert (response.status_code, response.get_json()) == (400, {"error": message})
    assert len(account_store.list_tokens(db, service_account_id=sa_account["id"])) == 1


def test_service_role_may_not_mint_tokens(client, sa_account, make_sa):
    response = client.post(f"/v1/service-accounts/{sa_account['id']}/tokens/",
                           headers=make_sa(), json={"name": "x"})
    assert (response.status_code, response.get_json()) == (
        403, {"error": "You don't have permission to create service account tokens."})


def test_revoked_token_stops_working_at_once(client, owner_headers, sa_account, role_ids):
    sa_id = sa_account["id"]
    minted = client.post(f"/v1/service-accounts/{sa_id}/tokens/", headers=owner_headers,
                         json={"name": "rotated"}).get_json()
    url = f"/v1/service-accounts/{sa_id}/tokens/{minted['id']}/"
    assert_delete_stops_the_token(client, owner_headers, minted["bearerToken"], url)
    detail = client.get(f"/v1/service-accounts/{sa_id}/", headers=owner_headers).get_json()
    assert [t["name"] for t in detail["tokens"]] == ["Default"]
    again = client.delete(url, headers=owner_headers)
    assert (again.status_code, again.get_json()) == (404, {"error": "Token not found."})
    other = client.post("/v1/service-accounts/", headers=owner_headers,
                        json={"name": "other", "role_id": role_ids["Service"]}).get_json()
    crossed = client.delete(
        f"/v1/service-accounts/{other['id']}/tokens/{sa_account['initialToken']['id']}/",
        headers=owner_headers)
    assert crossed.get_json() == {"error": "Token not found."}


def test_api_tokens_carry_real_key_material_for_the_phase_clients(client, owner_headers,
                                                                 sa_account, demo):
    app, envs = demo
    token = sa_account["initialToken"]
    headers = {"Authorization": f"Bearer {token['bearerToken']}"}
    access = f"/v1/service-accounts/{sa_account['id']}/access/"
    client.put(access, headers=owner_headers, json={"apps": [
        {"id": app["id"], "environments": env_ids(envs, "Development")}]})
    payload = client.get("/service/secrets/tokens/", headers=headers).get_json()
    [env_key] = payload["apps"][0]["environment_keys"]
    assert env_key["environment"]["name"] == "Development"
    private = phase_crypto.recover_token_private_key(token["token"],
                                                     payload["wrapped_key_share"])
    seed = phase_crypto.decrypt_asymmetric(env_key["wrapped_seed"], private,
                                           token["token"].split(":")[3])
    assert phase_crypto.env_keypair(seed)[0] == env_key["identity_key"]
    client.put(access, headers=owner_headers, json={"apps": []})
    assert client.get("/service/secrets/tokens/", headers=headers).get_json()["apps"] == []
    client.delete(f"/v1/service-accounts/{sa_account['id']}/tokens/{token['id']}/",
                  headers=owner_headers)
    refused = client.get("/service/secrets/tokens/", headers=headers)
    assert (refused.status_code, refused.get_json()) == (
        403, {"error": "Token expired or deleted"})


def test_token_lists_never_hold_secret_parts(client, owner_headers, sa_account):
    body = client.get(f"/v1/service-accounts/{sa_account['id']}/", headers=owner_headers)
    bearer = sa_account["initialToken"]["bearerToken"].split(" ")[1]
    assert bearer not in body.get_data(as_text=True)


# -- audit and documentation -----------------------------------------------------------------


def test_every_write_is_audited_with_its_origin(client, owner, owner_headers, demo, role_ids,
                                                db):
    app, envs = demo
    before = db.scalar("SELECT MAX(id) FROM audit_events")  # the fixtures' own events
    headers = owner_headers | {"User-Agent": "audit-test/1.0"}
    created = client.post("/v1/service-accounts/", headers=headers,
                          json={"name": "a", "role_id": role_ids["Service"]}).get_json()
    sa = f"/v1/service-accounts/{created['id']}"
    env = client.post(f"/v1/environments/?app_id={app['id']}", headers=headers,
                      json={"name": "qa"}).get_json()
    writes = [
        ("put", f"/v1/apps/{app['id']}/", {"name": "renamed"}),
        ("put", f"/v1/environments/{env['id']}/", {"name": "qa2"}),
        ("put", f"{sa}/", {"name": "b"}),
        ("put", f"{sa}/access/", {"apps": [{"id": app["id"], "environments": [env["id"]]}]}),
        ("post", f"{sa}/tokens/", {"name": "t"}),
        ("delete", f"{sa}/tokens/{created['initialToken']['id']}/", None),
        ("delete", f"/v1/environments/{env['id']}/", None),
        ("delete", f"{sa}/", None),
        ("post", "/v1/apps/", {"name": "new"}),
        ("delete", f"/v1/apps/{app['id']}/", None),
    ]
    for method, url, body in writes:
        assert getattr(client, method)(url, headers=headers, json=body).status_code < 300, url
    events = [e for e in reversed(audit_store.list_events(db)) if e["id"] > before]
    assert [(e["action"], e["resource_type"]) for e in events] == [
        ("create", "service_account"), ("create", "environment"), ("update", "app"),
        ("update", "environment"), ("update", "service_account"),
        ("update_access", "service_account"), ("create", "service_account_token"),
        ("delete", "service_account_token"), ("delete", "environment"),
        ("delete", "service_account"), ("create", "app"), ("delete", "app")]
    assert {(e["actor_type"], e["token_id"], e["user_agent"], e["ip_address"], e["channel"])
            for e in events} == {("user", owner.id, "audit-test/1.0", "127.0.0.1", "api")}
    logged = json.dumps([dict(e) for e in events])
    assert created["initialToken"]["bearerToken"].split(" ")[1] not in logged


def test_refused_writes_are_not_audited(client, owner_headers, demo, db):
    app, _ = demo
    before = db.scalar("SELECT MAX(id) FROM audit_events")
    client.post("/v1/apps/", headers=owner_headers, json={"name": ""})
    client.put(f"/v1/apps/{app['id']}/", headers=owner_headers, json={})
    client.post(f"/v1/environments/?app_id={app['id']}", headers=owner_headers,
                json={"name": "Staging"})
    assert db.scalar("SELECT MAX(id) FROM audit_events") == before


def test_openapi_documents_every_operation(client):
    spec = client.get("/openapi.json").get_json()
    expected = {
        "/v1/apps/": {"get", "post"}, "/v1/apps/{app_id}/": {"get", "put", "delete"},
        "/v1/environments/": {"get", "post"},
        "/v1/environments/{env_id}/": {"get", "put", "delete"},
        "/v1/roles/": {"get", "post"}, "/v1/roles/{role_id}/": {"get", "put", "delete"},
        "/v1/service-accounts/": {"get", "post"},
        "/v1/service-accounts/{sa_id}/": {"get", "put", "delete"},
        "/v1/service-accounts/{sa_id}/access/": {"put"},
        "/v1/service-accounts/{sa_id}/tokens/": {"post"},
        "/v1/service-accounts/{sa_id}/tokens/{token_id}/": {"delete"},
    }
    for path, methods in expected.items():
        operations = {m: op for m, op in spec["paths"][path].items() if m != "parameters"}
        assert set(operations) == methods, path
        for method, op in operations.items():
            assert op["summary"] and op["security"] == [{"bearer": []}], (path, method)
            assert {"401", "403"} <= set(op["responses"]), (path, method)
            if method in ("post", "put"):
                assert "requestBody" in op, (path, method)
