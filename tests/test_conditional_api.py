"""Conditional requests on /v1/secrets/ (a phase_lite extension), over HTTP: an ETag on every
200 GET, 304 for If-None-Match (still authenticated, authorised, throttled and audited), 412
and nothing written for a stale If-Match, nothing different without the headers."""

import json

import pytest

import support
from support import bearer_headers
from phase_lite import history
from phase_lite import secrets as secret_domain
from phase_lite.app import create_app
from phase_lite.errors import PreconditionFailed
from phase_lite.secrets import SecretChange
from phase_lite.store import apps as app_store
from phase_lite.store.audit import EVENTS

pytestmark = pytest.mark.both_backends

PREFIXES = ["", "/public", "/service", "/service/public"]
CHANGED = ("The environment has changed since the ETag given in If-Match was issued; "
           "read it again and retry.")


Env = support.SecretsRoutes


@pytest.fixture
def seeded(pat):
    created = pat.send("POST", [{"key": "A", "value": "1"}, {"key": "B", "value": "2"}])
    assert created.status_code == 200
    return {item["key"]: item["id"] for item in created.json}


def rows(db):
    """Everything a write could change."""
    return [[tuple(row) for row in db.all(f"SELECT * FROM {table} ORDER BY rowid")]
            for table in ("secrets", "secret_versions", "environments")]


def write_events(db):
    return db.scalar("SELECT count(*) FROM audit_events WHERE action IN"
                     " ('secrets.create', 'secrets.update', 'secrets.delete',"
                     " 'secrets.restore')")


# -- ETag and If-None-Match ------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_get_has_an_etag_and_if_none_match_answers_304(client, app_id, owner_headers,
                                                             seeded, prefix):
    env = Env(client, app_id, owner_headers, prefix=prefix)
    answers = [env.get() for _ in range(3)]  # cold, then cached
    assert {a.status_code for a in answers} == {200}
    tags = {a.headers["ETag"] for a in answers}
    assert len(tags) == 1
    (tag,) = tags
    assert tag.startswith('"') and tag.endswith('"')
    for _ in range(2):
        cached = env.get({"If-None-Match": tag})
        assert cached.status_code == 304
        assert cached.data == b""
        assert cached.headers["ETag"] == tag
        assert "Content-Type" not in cached.headers
    for header in ("*", f'"other", W/{tag}'):
        assert env.get({"If-None-Match": header}).status_code == 304
    stale = env.get({"If-None-Match": '"0-00000000-0000000000000000"'})
    assert stale.status_code == 200 and stale.json == answers[0].json


def test_the_fast_path_and_the_view_answer_conditional_gets_alike(config, owner, demo, seeded):
    """The view (fast path off) and the fast path: the same ETag, 304 and refusals."""
    answers = {}
    for name in ("fast", "view"):
        flask_app = create_app(config)
        if name == "view":
            support.without_fast_path(flask_app)
        env = Env(flask_app.test_client(), demo[0]["id"], bearer_headers(owner))
        tag = env.tag()
        answers[name] = [
            (r.status_code, r.data, r.headers.get("ETag"), r.headers.get("Content-Type"))
            for r in (env.get(), env.get({"If-None-Match": tag}),
                      env.get({"If-None-Match": '"0-00000000-0000000000000000"'}),
                      env.get({"If-None-Match": tag, "Authorization": "Bearer nonsense"}))]
        flask_app.extensions["phase_lite"].close()
    assert answers["fast"] == answers["view"]
    assert [a[0] for a in answers["fast"]] == [200, 304, 200, 401]
    assert answers["fast"][1][1:] == (b"", answers["fast"][0][2], None)


def test_the_etag_changes_with_the_environment(pat, seeded):
    tag = pat.tag()
    assert pat.tag() == tag
    assert pat.send("PUT", [{"id": seeded["A"], "value": "changed"}]).status_code == 200
    after_write = pat.tag()
    assert after_write != tag
    assert pat.get({"If-None-Match": tag}).status_code == 200
    assert pat.send("DELETE", [seeded["B"]]).status_code == 200
    assert pat.tag() != after_write


def test_the_etag_changes_with_a_referenced_value_of_another_environment(client, app_id,
                                                                         owner_headers, pat):
    staging = Env(client, app_id, owner_headers, env="Staging")
    (target,) = staging.send("POST", [{"key": "HOST", "value": "db-1"}]).json
    pat.send("POST", [{"key": "URL", "value": "pg://${Staging.HOST}"}])
    tag = pat.tag()
    assert staging.send("PUT", [{"id": target["id"], "value": "db-2"}]).status_code == 200
    response = pat.get({"If-None-Match": tag})
    assert response.status_code == 200
    assert response.json[0]["value"] == "pg://db-2"
    assert response.headers["ETag"] != tag


def test_filters_and_callers_seeing_other_answers_get_other_etags(pat, sa, seeded):
    assert pat.tag(key="A") != pat.tag()
    pat.send("PUT", [{"id": seeded["A"], "override": {"value": "mine", "isActive": True}}])
    assert pat.get().json != sa.get().json
    assert pat.tag() != sa.tag()


def test_a_304_is_audited_as_a_read(pat, db, services, seeded):
    tag = pat.tag()

    def reads():
        services.read_log.flush()
        return db.all(f"SELECT details FROM {EVENTS} WHERE action = 'secrets.read'")

    before = len(reads())
    assert pat.get({"If-None-Match": tag}).status_code == 304
    events = reads()
    assert len(events) == before + 1
    assert json.loads(events[-1]["details"]) == {"secrets": list(seeded.values())}


def test_a_304_is_still_authenticated_and_authorised(client, app_id, envs, seeded, pat,
                                                     make_service_token):
    tag = pat.tag()
    anonymous = Env(client, app_id, {})
    response = anonymous.get({"If-None-Match": tag})
    assert (response.status_code, response.json) == (
        401, {"error": "Authentication credentials were not provided."})
    restricted = bearer_headers(make_service_token([envs["Staging"]], name="staging"))
    response = Env(client, app_id, restricted).get({"If-None-Match": tag})
    assert (response.status_code, response.json) == (
        401, {"error": "Service account cannot access this environment"})


def test_a_304_is_throttled(config, owner, demo, seeded):
    config.rate_limit = (2, 60)
    limited = create_app(config)
    try:
        env = Env(limited.test_client(), demo[0]["id"], bearer_headers(owner))
        tag = env.tag()
        assert env.get({"If-None-Match": tag}).status_code == 304
        refused = env.get({"If-None-Match": tag})
        assert refused.status_code == 429 and "Retry-After" in refused.headers
    finally:
        limited.extensions["phase_lite"].close()


# -- If-Match --------------------------------------------------------------------------------


def test_lost_update_the_second_writer_gets_412_and_changes_nothing(pat, sa, db, seeded):
    first_tag, second_tag = pat.tag(), sa.tag()
    assert first_tag == second_tag  # the same answer of the same environment
    won = pat.send("PUT", [{"id": seeded["A"], "value": "first"}], {"If-Match": first_tag})
    assert won.status_code == 200
    before, events = rows(db), write_events(db)
    lost = sa.send("PUT", [{"id": seeded["A"], "value": "second"}], {"If-Match": second_tag})
    assert (lost.status_code, lost.json) == (412, {"error": CHANGED})
    assert (rows(db), write_events(db)) == (before, events)
    assert [s["value"] for s in sa.get(key="A").json] == ["first"]


@pytest.mark.parametrize("method, entry", [
    ("POST", lambda ids: {"key": "C", "value": "3"}),
    ("PUT", lambda ids: {"id": ids["A"], "value": "x"}),
    ("DELETE", lambda ids: ids["B"]),
])
def test_every_write_honours_if_match(pat, db, seeded, method, entry):
    stale = pat.tag()
    pat.send("POST", [{"key": "OTHER", "value": "o"}])
    before = rows(db)
    for header in (stale, "W/" + pat.tag(), '"garbage"'):
        refused = pat.send(method, [entry(seeded)], {"If-Match": header})
        assert (refused.status_code, refused.json) == (412, {"error": CHANGED})
        assert rows(db) == before
    filtered = pat.tag(key="OTHER")  # any answer of the environment at this version
    assert pat.send(method, [entry(seeded)], {"If-Match": f'"x", {filtered}'}).status_code == 200


def test_restore_honours_if_match(pat, db, seeded):
    """A restore is a write of the environment: a stale, weak or unknown tag is 412 (before the
    body is read) and changes nothing; a tag of the current version, or ``*``, restores."""
    assert pat.send("PUT", [{"id": seeded["A"], "value": "changed"}]).status_code == 200
    stale = pat.tag()
    pat.send("POST", [{"key": "OTHER", "value": "o"}])
    before, events = rows(db), write_events(db)
    for header in (stale, "W/" + pat.tag(), '"garbage"'):
        condition = {**pat.headers, "If-Match": header}
        refused = pat.restore(seeded["A"], 1, headers=condition)
        assert (refused.status_code, refused.json) == (412, {"error": CHANGED})
        refused = pat.restore(seeded["A"], raw="{", headers=condition)
        assert (refused.status_code, refused.json) == (412, {"error": CHANGED})
    assert (rows(db), write_events(db)) == (before, events)
    restored = pat.restore(seeded["A"], 1, headers={
        **pat.headers, "If-Match": f'"x", {pat.tag(key="OTHER")}'})
    assert (restored.status_code, restored.json["value"]) == (200, "1")
    again = pat.restore(seeded["A"], 2, headers={**pat.headers, "If-Match": "*"})
    assert (again.status_code, again.json["value"]) == (200, "changed")


def test_if_match_star_and_no_header_change_nothing(pat, seeded):
    assert pat.send("PUT", [{"id": seeded["A"], "value": "x"}],
                    {"If-Match": "*"}).status_code == 200
    assert pat.send("PUT", [{"id": seeded["A"], "value": "y"}]).status_code == 200


def test_a_stale_if_match_is_412_before_the_body_is_read(pat, seeded):
    stale = pat.tag()
    pat.send("POST", [{"key": "OTHER", "value": "o"}])
    response = pat.client.put(pat.url(), data="{", headers={**pat.headers, "If-Match": stale})
    assert (response.status_code, response.json) == (412, {"error": CHANGED})


def test_an_etag_of_another_environment_does_not_match(client, app_id, owner_headers, pat,
                                                       seeded):
    staging_tag = Env(client, app_id, owner_headers, env="Staging").tag()
    response = pat.send("PUT", [{"id": seeded["A"], "value": "x"}], {"If-Match": staging_tag})
    assert response.status_code == 412


@pytest.mark.parametrize("late_write", [
    lambda services, principal, env, ids, **condition: secret_domain.update_secrets(
        services, principal, env, [SecretChange(id=ids["A"], value="late")], **condition),
    lambda services, principal, env, ids, **condition: history.restore_secret(
        services, principal, env, ids["A"], 1, **condition),
], ids=["update", "restore"])
def test_the_write_checks_the_version_again_under_its_lock(services, owner, db, demo, seeded,
                                                           late_write):
    """A write committed between the request's read of the environment and its own
    transaction is caught inside the transaction."""
    principal = services.auth.authenticate(bearer_headers(owner)["Authorization"])
    env = app_store.find_environment(db, demo[0]["id"], "Development")
    secret_domain.update_secrets(services, principal, env, [SecretChange(id=seeded["B"],
                                                                         value="between")])
    before = rows(db)
    with pytest.raises(PreconditionFailed):
        late_write(services, principal, env, seeded, expected_version=env["version"])
    assert rows(db) == before


# -- nothing changes for Phase's clients -----------------------------------------------------


def test_without_the_headers_answers_are_phase_answers(pat, seeded):
    first, second = pat.get(), pat.get()
    assert first.data == second.data
    assert set(first.headers) - {"ETag"} == set(second.headers) - {"ETag"}
    assert pat.send("PUT", [{"id": seeded["A"], "value": "x"}]).status_code == 200
    assert [s["value"] for s in pat.get(key="A").json] == ["x"]


def test_the_openapi_document_marks_the_headers_as_extensions(client):
    item = client.get("/openapi.json").json["paths"]["/v1/secrets/"]
    get = item["get"]
    (if_none_match,) = [p for p in get["parameters"] if p["name"] == "If-None-Match"]
    assert if_none_match["x-phase-lite-extension"] is True
    assert get["responses"]["200"]["headers"]["ETag"]["x-phase-lite-extension"] is True
    assert "304" in get["responses"]
    restore = client.get("/openapi.json").json["paths"]["/v1/secrets/{secret_id}/restore/"]
    for operation in (item["post"], item["put"], item["delete"], restore["post"]):
        (if_match,) = [p for p in operation["parameters"] if p["name"] == "If-Match"]
        assert if_match["x-phase-lite-extension"] is True
        assert operation["responses"]["412"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}
