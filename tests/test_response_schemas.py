"""Real responses checked against the served OpenAPI document, for every operation.

Each operation is called once to succeed and once (or more) to fail; every answer must carry a
status the operation documents explicitly (not only through ``default``) and a body that its
schema for that status accepts. The validation is schemathesis' (already the suite's
dependency for the fuzz tests): it resolves the document's references and applies OpenAPI 3.0's
rules (``nullable`` included) to the response, which a bare JSON Schema validator does not.
A new operation without a case here fails ``test_every_operation_has_cases``.
"""

import pytest
import schemathesis
from schemathesis.core.transport import Response

import support
from support import Session, bearer_headers, send

MISSING = "00000000-0000-0000-0000-000000000000"
NO_TOKEN = {}
BAD_TOKEN = {"Authorization": "Bearer pss_service:v2:nonsense"}


class World:
    """An app, a service account with its token and a client session, made per case."""

    def __init__(self, client, services, owner):
        self.client = client
        self.owner_token = owner
        self.owner = bearer_headers(owner)
        self.app, self.envs = support.make_app(services, "demo")
        self.dev = self.envs["Development"]
        self.sa, self.sa_token = support.make_service_account(
            services, "ci", "Service", list(self.envs.values()))
        self.sa_headers = bearer_headers(self.sa_token)
        self.service_role = support.role_id(services, "Service")
        self.session = Session.open(client, self.sa_token)

    def call(self, method, url, headers=None, **kwargs):
        headers = self.owner if headers is None else headers
        return self.client.open(url, method=method, headers=headers, **kwargs)

    def secrets_url(self, env="Development"):
        return f"/v1/secrets/?app_id={self.app['id']}&env={env}"

    def rest_secret(self):
        response = self.call("POST", self.secrets_url(), self.sa_headers,
                             json={"secrets": [{"key": "A", "value": "1"}]})
        assert response.status_code == 200, response.json
        return self.call("GET", self.secrets_url(), self.sa_headers).json[0]["id"]

    def extension_url(self, tail, env="Development"):
        return f"/v1/secrets/{tail}?app_id={self.app['id']}&env={env}"

    def etag(self, changed=False):
        """The ETag of a GET of Development (the environment written since, with
        ``changed``)."""
        tag = self.call("GET", self.secrets_url(), self.sa_headers).headers["ETag"]
        if changed:
            self.rest_secret()
        return tag

    def wire_secret(self):
        response = send(self.client, "POST", self.session,
                        {"secrets": [self.session.entry("WIRE", "1")]})
        assert response.status_code == 200, response.get_data(as_text=True)
        listed = self.client.get(support.SECRETS_URL, headers=self.session.headers())
        return listed.json[0]["id"]

    def owner_override(self):
        """A read by the Owner of a secret it holds a personal override of."""
        self.rest_secret()
        session = Session.open(self.client, self.owner_token)
        [row] = self.client.get(support.SECRETS_URL, headers=session.headers()).json
        response = send(self.client, "PUT", session, {"secrets": [{
            **session.entry("A", "1"), "id": row["id"],
            "override": {"value": session.envs["Development"].encrypt("mine"),
                         "isActive": True}}]})
        assert response.status_code == 200, response.get_data(as_text=True)
        read = self.client.get(support.SECRETS_URL, headers=session.headers())
        assert read.json[0]["override"]["is_active"] is True
        return read

    def share(self, views=1):
        """A new Lockbox share of the Owner's (a ciphertext of the right shape)."""
        body = {"ciphertext": "A" * 64, "views": views}
        response = self.call("POST", "/v1/lockbox/", json=body)
        assert response.status_code == 201, response.json
        return response.json

    def share_link(self, views=1):
        """The link's path of a new Lockbox share."""
        return self.share(views)["link"]

    def token_id(self):
        response = self.call("POST", f"/v1/service-accounts/{self.sa['id']}/tokens/",
                             json={"name": "second"})
        assert response.status_code == 201, response.json
        return response.json["id"]


def sa_url(world, tail=""):
    return f"/v1/service-accounts/{world.sa['id']}/{tail}"


# (operation, case name) -> the call, made on a fresh World. Errors name what they provoke.
CASES = {
    ("GET /", "ok"): lambda w: w.call("GET", "/", NO_TOKEN),
    ("GET /health/", "ok"): lambda w: w.call("GET", "/health/", NO_TOKEN),

    ("GET /v1/secrets/", "ok"): lambda w: (w.rest_secret(),
                                           w.call("GET", w.secrets_url(), w.sa_headers))[1],
    ("GET /v1/secrets/", "no token"): lambda w: w.call("GET", w.secrets_url(), NO_TOKEN),
    ("GET /v1/secrets/", "unknown env"): lambda w: w.call("GET", w.secrets_url("Nope"),
                                                           w.sa_headers),
    ("GET /v1/secrets/", "no app"): lambda w: w.call("GET", "/v1/secrets/?env=Development",
                                                      w.sa_headers),
    ("POST /v1/secrets/", "ok"): lambda w: w.call(
        "POST", w.secrets_url(), w.sa_headers, json={"secrets": [{"key": "B", "value": "2"}]}),
    ("POST /v1/secrets/", "bad body"): lambda w: w.call(
        "POST", w.secrets_url(), w.sa_headers, json={"secrets": [{"value": "2"}]}),
    ("POST /v1/secrets/", "duplicate"): lambda w: (w.rest_secret(), w.call(
        "POST", w.secrets_url(), w.sa_headers,
        json={"secrets": [{"key": "A", "value": "2"}]}))[1],
    ("PUT /v1/secrets/", "ok"): lambda w: w.call(
        "PUT", w.secrets_url(), w.sa_headers,
        json={"secrets": [{"id": w.rest_secret(), "value": "3"}]}),
    ("PUT /v1/secrets/", "unknown id"): lambda w: w.call(
        "PUT", w.secrets_url(), w.sa_headers, json={"secrets": [{"id": MISSING, "value": "3"}]}),
    ("DELETE /v1/secrets/", "ok"): lambda w: w.call(
        "DELETE", w.secrets_url(), w.sa_headers, json={"secrets": [w.rest_secret()]}),
    ("DELETE /v1/secrets/", "bad body"): lambda w: w.call(
        "DELETE", w.secrets_url(), w.sa_headers, json={"secrets": "x"}),

    ("GET /v1/secrets/", "ok not modified"): lambda w: w.call(
        "GET", w.secrets_url(), {**w.sa_headers, "If-None-Match": w.etag()}),
    ("PUT /v1/secrets/", "changed since"): lambda w: w.call(
        "PUT", w.secrets_url(), {**w.sa_headers, "If-Match": w.etag(changed=True)},
        json={"secrets": [{"id": MISSING, "value": "3"}]}),

    ("GET /v1/secrets/{secret_id}/history/", "ok"): lambda w: w.call(
        "GET", w.extension_url(f"{w.rest_secret()}/history/"), w.sa_headers),
    ("GET /v1/secrets/{secret_id}/history/", "unknown"): lambda w: w.call(
        "GET", w.extension_url(f"{MISSING}/history/"), w.sa_headers),
    ("POST /v1/secrets/{secret_id}/restore/", "ok"): lambda w: w.call(
        "POST", w.extension_url(f"{w.rest_secret()}/restore/"), w.sa_headers,
        json={"version": 1}),
    ("POST /v1/secrets/{secret_id}/restore/", "unknown version"): lambda w: w.call(
        "POST", w.extension_url(f"{w.rest_secret()}/restore/"), w.sa_headers,
        json={"version": 9}),
    ("POST /v1/secrets/{secret_id}/restore/", "bad body"): lambda w: w.call(
        "POST", w.extension_url(f"{w.rest_secret()}/restore/"), w.sa_headers,
        json={"version": "1"}),
    ("GET /v1/secrets/deleted/", "ok"): lambda w: (w.call(
        "DELETE", w.secrets_url(), w.sa_headers, json={"secrets": [w.rest_secret()]}), w.call(
        "GET", w.extension_url("deleted/"), w.sa_headers))[1],
    ("GET /v1/secrets/deleted/", "no token"): lambda w: w.call(
        "GET", w.extension_url("deleted/"), NO_TOKEN),

    ("POST /v1/lockbox/", "ok"): lambda w: w.call(
        "POST", "/v1/lockbox/", json={"ciphertext": "A" * 64, "expiresIn": 3600, "views": 2}),
    ("POST /v1/lockbox/", "no token"): lambda w: w.call(
        "POST", "/v1/lockbox/", NO_TOKEN, json={"ciphertext": "A" * 64}),
    ("POST /v1/lockbox/", "too many views"): lambda w: w.call(
        "POST", "/v1/lockbox/", json={"ciphertext": "A" * 64, "views": 101}),
    ("GET /v1/lockbox/{link_id}/", "ok"): lambda w: w.call(
        "GET", f"/v1{w.share_link()}/", NO_TOKEN),
    ("GET /v1/lockbox/{link_id}/", "gone"): lambda w: (
        link := w.share_link(), w.call("GET", f"/v1{link}/", NO_TOKEN),
        w.call("GET", f"/v1{link}/", NO_TOKEN))[2],
    ("GET /v1/lockbox/", "ok"): lambda w: (
        w.call("GET", f"/v1{w.share_link()}/", NO_TOKEN), w.share(views=2),
        w.call("GET", "/v1/lockbox/"))[2],
    ("GET /v1/lockbox/", "no token"): lambda w: w.call("GET", "/v1/lockbox/", NO_TOKEN),
    ("DELETE /v1/lockbox/shares/{share_id}/", "ok"): lambda w: w.call(
        "DELETE", f"/v1/lockbox/shares/{w.share()['id']}/"),
    ("DELETE /v1/lockbox/shares/{share_id}/", "unknown"): lambda w: w.call(
        "DELETE", f"/v1/lockbox/shares/{MISSING}/"),
    ("DELETE /v1/lockbox/shares/{share_id}/", "another account's"): lambda w: w.call(
        "DELETE", f"/v1/lockbox/shares/{w.share()['id']}/", w.sa_headers),
    ("DELETE /v1/lockbox/shares/{share_id}/", "no token"): lambda w: w.call(
        "DELETE", f"/v1/lockbox/shares/{w.share()['id']}/", NO_TOKEN),

    ("GET /v1/apps/", "ok"): lambda w: w.call("GET", "/v1/apps/"),
    ("GET /v1/apps/", "bad token"): lambda w: w.call("GET", "/v1/apps/", BAD_TOKEN),
    ("POST /v1/apps/", "ok"): lambda w: w.call("POST", "/v1/apps/", json={"name": "other"}),
    ("POST /v1/apps/", "no name"): lambda w: w.call("POST", "/v1/apps/", json={}),
    ("POST /v1/apps/", "no token"): lambda w: w.call("POST", "/v1/apps/", NO_TOKEN,
                                                      json={"name": "other"}),
    ("GET /v1/apps/{app_id}/", "ok"): lambda w: w.call("GET", f"/v1/apps/{w.app['id']}/"),
    ("GET /v1/apps/{app_id}/", "unknown"): lambda w: w.call("GET", f"/v1/apps/{MISSING}/"),
    ("PUT /v1/apps/{app_id}/", "ok"): lambda w: w.call("PUT", f"/v1/apps/{w.app['id']}/",
                                                        json={"name": "renamed"}),
    ("PUT /v1/apps/{app_id}/", "bad body"): lambda w: w.call(
        "PUT", f"/v1/apps/{w.app['id']}/", data="[", content_type="application/json"),
    ("DELETE /v1/apps/{app_id}/", "ok"): lambda w: w.call("DELETE", f"/v1/apps/{w.app['id']}/"),
    ("DELETE /v1/apps/{app_id}/", "unknown"): lambda w: w.call("DELETE", f"/v1/apps/{MISSING}/"),

    ("GET /v1/environments/", "ok"): lambda w: w.call(
        "GET", f"/v1/environments/?app_id={w.app['id']}"),
    ("GET /v1/environments/", "no app"): lambda w: w.call("GET", "/v1/environments/"),
    ("POST /v1/environments/", "ok"): lambda w: w.call(
        "POST", f"/v1/environments/?app_id={w.app['id']}", json={"name": "qa"}),
    ("POST /v1/environments/", "no name"): lambda w: w.call(
        "POST", f"/v1/environments/?app_id={w.app['id']}", json={}),
    ("GET /v1/environments/{env_id}/", "ok"): lambda w: w.call(
        "GET", f"/v1/environments/{w.dev['id']}/"),
    ("GET /v1/environments/{env_id}/", "unknown"): lambda w: w.call(
        "GET", f"/v1/environments/{MISSING}/"),
    ("PUT /v1/environments/{env_id}/", "ok"): lambda w: w.call(
        "PUT", f"/v1/environments/{w.dev['id']}/", json={"name": "Dev"}),
    ("PUT /v1/environments/{env_id}/", "taken"): lambda w: w.call(
        "PUT", f"/v1/environments/{w.dev['id']}/", json={"name": "Staging"}),
    ("PUT /v1/environments/{env_id}/", "bad name"): lambda w: w.call(
        "PUT", f"/v1/environments/{w.dev['id']}/", json={"name": "no spaces"}),
    ("DELETE /v1/environments/{env_id}/", "ok"): lambda w: w.call(
        "DELETE", f"/v1/environments/{w.dev['id']}/"),
    ("DELETE /v1/environments/{env_id}/", "unknown"): lambda w: w.call(
        "DELETE", f"/v1/environments/{MISSING}/"),

    ("GET /v1/roles/", "ok"): lambda w: w.call("GET", "/v1/roles/"),
    ("GET /v1/roles/", "no token"): lambda w: w.call("GET", "/v1/roles/", NO_TOKEN),
    ("POST /v1/roles/", "refused"): lambda w: w.call("POST", "/v1/roles/", json={"name": "x"}),
    ("GET /v1/roles/{role_id}/", "ok"): lambda w: w.call("GET", f"/v1/roles/{w.service_role}/"),
    ("GET /v1/roles/{role_id}/", "unknown"): lambda w: w.call("GET", f"/v1/roles/{MISSING}/"),
    ("PUT /v1/roles/{role_id}/", "refused"): lambda w: w.call(
        "PUT", f"/v1/roles/{w.service_role}/", json={"name": "x"}),
    ("PUT /v1/roles/{role_id}/", "unknown"): lambda w: w.call("PUT", f"/v1/roles/{MISSING}/",
                                                               json={"name": "x"}),
    ("DELETE /v1/roles/{role_id}/", "refused"): lambda w: w.call(
        "DELETE", f"/v1/roles/{w.service_role}/"),
    ("DELETE /v1/roles/{role_id}/", "unknown"): lambda w: w.call("DELETE",
                                                                  f"/v1/roles/{MISSING}/"),

    ("GET /v1/service-accounts/", "ok"): lambda w: w.call("GET", "/v1/service-accounts/"),
    ("GET /v1/service-accounts/", "no token"): lambda w: w.call("GET", "/v1/service-accounts/",
                                                                 NO_TOKEN),
    ("POST /v1/service-accounts/", "ok"): lambda w: w.call(
        "POST", "/v1/service-accounts/", json={"name": "new", "role_id": w.service_role}),
    ("POST /v1/service-accounts/", "no role"): lambda w: w.call(
        "POST", "/v1/service-accounts/", json={"name": "new"}),
    ("POST /v1/service-accounts/", "unknown role"): lambda w: w.call(
        "POST", "/v1/service-accounts/", json={"name": "new", "role_id": MISSING}),
    ("GET /v1/service-accounts/{sa_id}/", "ok"): lambda w: w.call("GET", sa_url(w)),
    ("GET /v1/service-accounts/{sa_id}/", "unknown"): lambda w: w.call(
        "GET", f"/v1/service-accounts/{MISSING}/"),
    ("PUT /v1/service-accounts/{sa_id}/", "ok"): lambda w: w.call("PUT", sa_url(w),
                                                                   json={"name": "cd"}),
    ("PUT /v1/service-accounts/{sa_id}/", "bad name"): lambda w: w.call("PUT", sa_url(w),
                                                                         json={"name": ""}),
    ("DELETE /v1/service-accounts/{sa_id}/", "ok"): lambda w: w.call("DELETE", sa_url(w)),
    ("DELETE /v1/service-accounts/{sa_id}/", "unknown"): lambda w: w.call(
        "DELETE", f"/v1/service-accounts/{MISSING}/"),
    ("PUT /v1/service-accounts/{sa_id}/access/", "ok"): lambda w: w.call(
        "PUT", sa_url(w, "access/"),
        json={"apps": [{"id": w.app["id"], "environments": [w.dev["id"]]}]}),
    ("PUT /v1/service-accounts/{sa_id}/access/", "bad body"): lambda w: w.call(
        "PUT", sa_url(w, "access/"), json={"apps": "x"}),
    ("POST /v1/service-accounts/{sa_id}/tokens/", "ok"): lambda w: w.call(
        "POST", sa_url(w, "tokens/"), json={"name": "second"}),
    ("POST /v1/service-accounts/{sa_id}/tokens/", "no name"): lambda w: w.call(
        "POST", sa_url(w, "tokens/"), json={}),
    ("DELETE /v1/service-accounts/{sa_id}/tokens/{token_id}/", "ok"): lambda w: w.call(
        "DELETE", sa_url(w, f"tokens/{w.token_id()}/")),
    ("DELETE /v1/service-accounts/{sa_id}/tokens/{token_id}/", "unknown"): lambda w: w.call(
        "DELETE", sa_url(w, f"tokens/{MISSING}/")),

    ("GET /secrets/tokens/", "ok"): lambda w: w.call("GET", support.TOKENS_URL, w.sa_headers),
    ("GET /secrets/tokens/", "bad token"): lambda w: w.call("GET", support.TOKENS_URL,
                                                             BAD_TOKEN),
    ("GET /secrets/", "ok"): lambda w: (w.wire_secret(), w.call(
        "GET", support.SECRETS_URL, w.session.headers()))[1],
    ("GET /secrets/", "ok camelCase"): lambda w: (w.wire_secret(), w.call(
        "GET", support.SECRETS_URL, w.session.headers(**{"X-Use-Camel-Case": "true"})))[1],
    ("GET /secrets/", "ok override"): lambda w: w.owner_override(),
    ("GET /secrets/tokens/", "ok user"): lambda w: w.call("GET", support.TOKENS_URL, w.owner),
    ("GET /secrets/", "no token"): lambda w: w.call("GET", support.SECRETS_URL, NO_TOKEN),
    ("GET /secrets/", "no environment"): lambda w: w.call("GET", support.SECRETS_URL,
                                                           w.sa_headers),
    ("POST /secrets/", "ok"): lambda w: send(w.client, "POST", w.session,
                                             {"secrets": [w.session.entry("NEW", "1")]}),
    ("POST /secrets/", "bad body"): lambda w: send(w.client, "POST", w.session, b"["),
    ("POST /secrets/", "duplicate"): lambda w: (w.wire_secret(), send(
        w.client, "POST", w.session, {"secrets": [w.session.entry("WIRE", "2")]}))[1],
    ("PUT /secrets/", "ok"): lambda w: send(w.client, "PUT", w.session, {"secrets": [
        {**w.session.entry("WIRE", "2"), "id": w.wire_secret()}]}),
    ("PUT /secrets/", "unknown id"): lambda w: send(w.client, "PUT", w.session, {"secrets": [
        {**w.session.entry("WIRE", "2"), "id": MISSING}]}),
    ("DELETE /secrets/", "ok"): lambda w: send(w.client, "DELETE", w.session,
                                               {"secrets": [w.wire_secret()]}),
    ("DELETE /secrets/", "bad body"): lambda w: send(w.client, "DELETE", w.session, b"["),
}

# Operations that cannot fail: they answer anyone, whatever is sent.
ALWAYS_SUCCEED = {"GET /", "GET /health/"}
# Operations that always refuse (Phase's texts for what phase_lite does not provide).
ALWAYS_REFUSE = {"POST /v1/roles/", "PUT /v1/roles/{role_id}/", "DELETE /v1/roles/{role_id}/"}
METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}


@pytest.fixture
def document(client):
    return client.get("/openapi.json").json


def served_operations(document):
    return {f"{method.upper()} {path}" for path, item in document["paths"].items()
            for method in item if method in METHODS}


def test_every_operation_has_cases(document):
    """A success and an error for each documented operation, and no case for an unknown one."""
    succeed = {op for op, case in CASES if case.startswith("ok")}
    fail = {op for op, case in CASES if not case.startswith("ok")}
    operations = served_operations(document)
    assert succeed | fail == operations
    assert operations - succeed == ALWAYS_REFUSE
    assert operations - fail == ALWAYS_SUCCEED


@pytest.mark.parametrize("operation, case", list(CASES), ids=[" ".join(k) for k in CASES])
def test_response_matches_the_served_schema(client, services, owner, document, operation,
                                            case):
    world = World(client, services, owner)
    response = CASES[operation, case](world)
    method, path = operation.split(" ")
    responses = document["paths"][path][method.lower()]["responses"]
    status = response.status_code
    assert str(status) in responses, (status, response.get_data(as_text=True))
    assert (status < 400) == (case.startswith("ok")), (status, response.get_data(as_text=True))
    if status >= 400:
        assert set(response.json) == {"error"}
    schema = schemathesis.openapi.from_dict(document)
    schema[path][method].validate_response(Response.from_any(response))
