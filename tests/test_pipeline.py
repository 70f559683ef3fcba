"""One request pipeline: the fast path that answers secrets GETs before Flask runs the view's
own steps, honours every Flask hook, and refuses exactly as the view does."""

import json

import pytest

import support
from support import bearer_headers
from phase_lite.api import error_response
from phase_lite.app import create_app
from phase_lite.store import accounts as account_store

pytestmark = pytest.mark.both_backends


@pytest.fixture
def apps_pair(config, owner):
    """Two apps on one data directory: ``fast`` as served, ``view`` with the fast path off."""
    made = {}
    for name in ("fast", "view"):
        made[name] = create_app(config)
    support.without_fast_path(made["view"])
    yield made
    for flask_app in made.values():
        flask_app.extensions["phase_lite"].close()


def through_flask_counter(flask_app):
    """Count the requests that reach Flask (past the fast path)."""
    middleware = support.prefix_middleware(flask_app)
    inner, seen = middleware.wsgi_app, []

    def counted(environ, start_response):
        seen.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    middleware.wsgi_app = counted
    return seen


def secrets_url(app_row, env="Development"):
    return f"/v1/secrets/?app_id={app_row['id']}&env={env}"


def client_headers(issued, env_row):
    return {**bearer_headers(issued), "Environment": env_row["id"]}


def test_successful_gets_skip_flask_and_match_the_view(apps_pair, owner, demo, sa_token):
    app_row, envs = demo
    fast, view = (apps_pair[name].test_client() for name in ("fast", "view"))
    fast.post(secrets_url(app_row), headers=bearer_headers(owner),
              json={"secrets": [{"key": "K", "value": "v"}]})
    seen = through_flask_counter(apps_pair["fast"])
    for client in (fast, view):
        assert client.get(secrets_url(app_row), headers=bearer_headers(owner)).status_code == 200
    answers = [(c.get(secrets_url(app_row), headers=bearer_headers(owner)).get_json(),
                c.get("/service/secrets/", headers=client_headers(sa_token,
                                                                  envs["Development"])).json)
               for c in (fast, view)]
    assert answers[0] == answers[1]
    assert answers[0][0][0]["key"] == "K"
    assert seen == []  # every GET above was answered by the fast path


@pytest.mark.parametrize("path", ["/v1/secrets/", "/service/secrets/"])
def test_hooks_registered_after_create_app_apply_to_fast_gets(app, client, owner, demo, path):
    """An app-level hook added later (an allow-list, a maintenance switch) is never skipped:
    not on a cold request, not once the answer is cached."""
    app_row, envs = demo
    url = secrets_url(app_row) if path == "/v1/secrets/" else path
    headers = client_headers(owner, envs["Development"])
    assert client.get(url, headers=headers).status_code == 200  # warm: cached, fast path

    @app.before_request
    def refuse_marked():
        from flask import request

        if request.headers.get("X-Blocked"):
            return error_response("Blocked.", 403)

    for _ in range(2):  # cold and warm alike
        refused = client.get(url, headers=headers | {"X-Blocked": "1"})
        assert (refused.status_code, refused.get_json()) == (403, {"error": "Blocked."})
        assert client.get(url, headers=headers).status_code == 200


def test_after_request_hooks_see_fast_gets_too(app, client, owner, demo):
    app_row, _ = demo
    client.get(secrets_url(app_row), headers=bearer_headers(owner))

    @app.after_request
    def stamp(response):
        response.headers["X-Stamp"] = "yes"
        return response

    response = client.get(secrets_url(app_row), headers=bearer_headers(owner))
    assert (response.status_code, response.headers.get("X-Stamp")) == (200, "yes")


# -- parity of refusals ------------------------------------------------------------------------


def refusal_cases(services, demo, owner, sa_token):
    """(name, path, headers) of every refusal the secrets GETs can give."""
    app_row, envs = demo
    org_id = support.organisation_id(services)
    perms = {"permissions": {}, "appPermissions": {"Secrets": ["create"]}}
    with services.db.transaction():
        account_store.insert_role(services.db, org_id, "WriteOnly", "", "", json.dumps(perms),
                                  False)
    _, write_only = support.make_service_account(services, "write-only", "WriteOnly",
                                                 [envs["Development"]])
    _, staging_only = support.make_service_account(services, "staging", "Service",
                                                   [envs["Staging"]])
    _, developer = support.make_user(services, "dev@example.com", "Developer",
                                     [envs["Staging"]])
    owner_auth = bearer_headers(owner)
    dev = envs["Development"]
    url = secrets_url(app_row)
    return [
        ("no credentials", url, {}),
        ("malformed", url, {"Authorization": "Bearer nonsense"}),
        ("unknown token", url, {"Authorization": "Bearer User " + "0" * 64}),
        ("unknown app", "/v1/secrets/?app_id=nope&env=Development", owner_auth),
        ("unknown env", secrets_url(app_row, "Nowhere"), owner_auth),
        ("no environment named", "/v1/secrets/", owner_auth),
        ("service account without access", url, bearer_headers(staging_only)),
        ("user without access", url, bearer_headers(developer)),
        ("role without read", url, bearer_headers(write_only)),
        ("not JSON", url, owner_auth | {"Accept": "text/html"}),
        ("bad lease", url + "&dynamic=true&lease_ttl=soon", owner_auth),
        ("public prefix", "/public/secrets/", client_headers(sa_token, dev)),
        ("client: no credentials", "/service/secrets/", {"Environment": dev["id"]}),
        ("client: unknown env", "/service/secrets/",
         bearer_headers(sa_token) | {"Environment": "0" * 8}),
        ("client: no access", "/service/secrets/", client_headers(staging_only, dev)),
        ("client: role without read", "/service/secrets/", client_headers(write_only, dev)),
    ]


def answer(response):
    return (response.status_code, response.get_json(),
            {name: response.headers.get(name) for name in ("WWW-Authenticate", "Retry-After",
                                                           "Cache-Control")})


def test_every_refusal_is_the_same_through_the_fast_path_and_the_view(apps_pair, owner, demo,
                                                                      sa_token):
    cases = refusal_cases(apps_pair["fast"].extensions["phase_lite"], demo, owner, sa_token)
    fast, view = (apps_pair[name].test_client() for name in ("fast", "view"))
    for name, path, headers in cases:
        for _ in range(2):  # cold, then with everything cached
            got = answer(fast.get(path, headers=headers))
            assert got == answer(view.get(path, headers=headers)), name
            assert got[0] >= 400 and set(got[1]) == {"error"}, name


def test_throttling_is_the_same_and_counted_once(config, owner, demo):
    app_row, _ = demo
    config.rate_limit = (2, 60)
    answers = {}
    for name in ("fast", "view"):
        flask_app = create_app(config)
        if name == "view":
            support.without_fast_path(flask_app)
        client = flask_app.test_client()
        answers[name] = [answer(client.get(secrets_url(app_row), headers=bearer_headers(owner)))
                         for _ in range(3)]
        flask_app.extensions["phase_lite"].close()
    assert answers["fast"] == answers["view"]
    assert [status for status, _, _ in answers["fast"]] == [200, 200, 429]


def test_what_the_fast_path_hands_to_flask_is_logged_once_per_kind(client, demo, sa_token,
                                                                   caplog):
    """A GET the fast path cannot finish goes to Flask, and a debug line says so once per kind
    of refusal: the route and the exception's class, never the query, a token or a value."""
    app_row, _ = demo
    url = f"/service/public/v1/secrets/?app_id={app_row['id']}&env=Development"
    unknown = {"Authorization": "Bearer ServiceAccount " + "f" * 64}
    with caplog.at_level("DEBUG", logger="phase_lite.api"):
        for headers in (unknown, unknown, bearer_headers(sa_token)):
            client.get(url, headers=headers)
        client.get(url.replace("Development", "Nowhere"), headers=bearer_headers(sa_token))
    handed = [record.getMessage() for record in caplog.records
              if record.name == "phase_lite.api" and "handed to Flask" in record.getMessage()]
    assert handed == [
        "fast path: GET /v1/secrets/ handed to Flask on AuthenticationFailed (said once per kind)",
        "fast path: GET /v1/secrets/ handed to Flask on DoesNotExist (said once per kind)"]
    logged = caplog.text
    assert "f" * 64 not in logged and sa_token.bearer_token not in logged
    assert app_row["id"] not in logged
