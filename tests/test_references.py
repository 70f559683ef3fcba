"""Secret references: Phase's three patterns (§10.5) and resolution, directly and over HTTP."""

import json

import pytest

from phase_lite import references
from phase_lite.references import CROSS_APP_PATTERN, CROSS_ENV_PATTERN, LOCAL_PATTERN

pytestmark = pytest.mark.both_backends

# -- the patterns (public-api.md §10.5.1) ---------------------------------------------------


@pytest.mark.parametrize("value, cross_app, cross_env, local", [
    ("${LOCAL}+${staging.HOST}", [], [("staging", "HOST")], ["LOCAL"]),
    ("${LOCAL}+${backend::prod.KEY}", [("backend", "prod", "KEY")], [], ["LOCAL"]),
    ("${A}+${staging.HOST}", [], [("staging", "HOST")], ["A"]),
    ("${L2}|${prod.DB}|${app::prod.KEY}", [("app", "prod", "KEY")], [("prod", "DB")], ["L2"]),
    ("${prod./db/KEY}", [], [("prod", "/db/KEY")], []),
    ("${{RAILWAY}}", [], [], []),
    ("${{RAILWAY.KEY}}", [], [], []),
    ("${app::env./path/KEY}", [("app", "env", "/path/KEY")], [], []),
    ("${/path/to/KEY}", [], [], ["/path/to/KEY"]),
    ("${path/KEY}", [], [], ["path/KEY"]),
    ("$KEY {KEY} ${}", [], [], []),
    ("${a.b.c}", [], [("a", "b.c")], []),
])
def test_patterns(value, cross_app, cross_env, local):
    assert CROSS_APP_PATTERN.findall(value) == cross_app
    assert CROSS_ENV_PATTERN.findall(value) == cross_env
    assert LOCAL_PATTERN.findall(value) == local


# -- resolution over an in-memory organisation ----------------------------------------------


class Organisation:
    """A ReferenceSource over {app: {env: {path: {KEY: value}}}}; keys match as written."""

    def __init__(self, apps, unreadable=()):
        self.apps = apps
        self.unreadable = set(unreadable)
        self.finds = 0

    def env(self, app, name):
        return {"id": f"{app}/{name}", "app": app, "name": name}

    def _named(self, names, wanted):
        found = [name for name in names if name.lower() == wanted.lower()]
        return found[0] if len(found) == 1 else None

    def app_environment(self, env, app_name, env_name):
        app = self._named(self.apps, app_name)
        return None if app is None else self.sibling_environment({"app": app}, env_name)

    def sibling_environment(self, env, env_name):
        name = self._named(self.apps[env["app"]], env_name)
        return None if name is None else self.env(env["app"], name)

    def may_read(self, env):
        return env["id"] not in self.unreadable

    def find(self, env, path, key_name):
        self.finds += 1
        value = self.apps[env["app"]][env["name"]].get(path, {}).get(key_name)
        return None if value is None else ((env["id"], path, key_name), value)

    def resolve(self, app, env_name, key, path="/"):
        env = self.env(app, env_name)
        value = self.apps[app][env_name][path][key]
        return references.resolve(value, env, (env["id"], path, key), self)


def test_plain_value_is_unchanged():
    org = Organisation({"app": {"dev": {"/": {"A": "plain $ {value}"}}}})
    assert org.resolve("app", "dev", "A") == "plain $ {value}"
    assert org.finds == 0


def test_cross_environment_reference():
    org = Organisation({"app": {
        "dev": {"/": {"A": "Value is ${Production.API_KEY}", "B": "${Production.backend/API_KEY}",
                      "C": "${production./backend/API_KEY}"}},
        "Production": {"/": {"API_KEY": "secret_api_key"}, "/backend": {"API_KEY": "nested"}},
    }})
    assert org.resolve("app", "dev", "A") == "Value is secret_api_key"
    assert org.resolve("app", "dev", "B") == "nested"
    assert org.resolve("app", "dev", "C") == "nested"


def test_double_braces_are_left_alone():
    org = Organisation({"app": {"dev": {"/": {"A": "${{RAILWAY_REF}} ${{B}}", "B": "b"}}}})
    assert org.resolve("app", "dev", "A") == "${{RAILWAY_REF}} ${{B}}"


def test_nested_local_references():
    org = Organisation({"app": {"dev": {"/": {
        "LEVEL0": "L0", "LEVEL1": "${LEVEL0}+L1", "LEVEL2": "${LEVEL1}+L2",
    }}}})
    assert org.resolve("app", "dev", "LEVEL2") == "L0+L1+L2"


def test_nested_cross_environment_references_resolve_in_their_own_environment():
    org = Organisation({"app": {
        "dev": {"/": {"URL": "${staging.DB_URL}"}},
        "staging": {"/": {"DB_URL": "${HOST}:5432", "HOST": "db"}},
    }})
    assert org.resolve("app", "dev", "URL") == "db:5432"


def test_cross_app_reference_with_path():
    org = Organisation({
        "web": {"dev": {"/": {"A": "${Backend::PROD./db/KEY}-${backend::prod.TOP}"}}},
        "backend": {"prod": {"/db": {"KEY": "k"}, "/": {"TOP": "t"}}},
    })
    assert org.resolve("web", "dev", "A") == "k-t"


def test_cycles_terminate():
    org = Organisation({"app": {"dev": {"/": {"A": "${B}", "B": "${A}", "SELF": "x${SELF}"}}}})
    assert org.resolve("app", "dev", "A") == "${A}"
    assert org.resolve("app", "dev", "B") == "${B}"
    assert org.resolve("app", "dev", "SELF") == "x${SELF}"


def test_diamond_is_not_a_cycle():
    org = Organisation({"app": {"dev": {"/": {"TOP": "${L}${R}", "L": "${BASE}", "R": "${BASE}",
                                              "BASE": "b"}}}})
    assert org.resolve("app", "dev", "TOP") == "bb"


@pytest.mark.parametrize("length, expected", [
    (25, "end"),       # K0 .. K24: every link within the depth limit
    (26, "${K25}"),    # K25 would be the 26th secret on the branch
    (40, "${K25}"),
])
def test_depth_limit(length, expected):
    chain = {f"K{i}": f"${{K{i + 1}}}" for i in range(length - 1)}
    chain[f"K{length - 1}"] = "end"
    org = Organisation({"app": {"dev": {"/": chain}}})
    assert org.resolve("app", "dev", "K0") == expected


def test_unresolvable_references_stay_verbatim():
    org = Organisation({"app": {"dev": {"/": {
        "A": "${MISSING} ${nope.KEY} ${ghost::dev.KEY} ${dev.MISSING} ${/p/MISSING}",
        "LOWER": "${key}", "key_lower": "x", "KEY": "upper",
    }}}})
    assert org.resolve("app", "dev", "A") == (
        "${MISSING} ${nope.KEY} ${ghost::dev.KEY} ${dev.MISSING} ${/p/MISSING}")


def test_references_match_the_key_as_written():
    org = Organisation({"app": {"dev": {"/": {"A": "${key}/${KEY}", "KEY": "upper"}}}})
    assert org.resolve("app", "dev", "A") == "${key}/upper"


def test_access_stops_resolution_where_it_stands():
    org = Organisation({
        "app": {
            "dev": {"/": {"LOCAL": "l", "V": "${other::dev.X}|${prod.SECRET}|${LOCAL}",
                          "W": "${prod.SECRET}|${staging.OK}|${LOCAL}"}},
            "prod": {"/": {"SECRET": "s"}},
            "staging": {"/": {"OK": "ok"}},
        },
        "other": {"dev": {"/": {"X": "x"}}},
    }, unreadable={"app/prod"})
    assert org.resolve("app", "dev", "V") == "x|${prod.SECRET}|${LOCAL}"
    assert org.resolve("app", "dev", "W") == "${prod.SECRET}|${staging.OK}|${LOCAL}"


def test_access_stop_inside_a_nested_value_stops_only_that_value():
    org = Organisation({"app": {
        "dev": {"/": {"TOP": "${staging.MID}+${LOCAL}", "LOCAL": "l"}},
        "staging": {"/": {"MID": "${prod.SECRET}+${M}", "M": "m"}},
        "prod": {"/": {"SECRET": "s"}},
    }}, unreadable={"app/prod"})
    assert org.resolve("app", "dev", "TOP") == "${prod.SECRET}+${M}+l"


def test_repeated_reference_is_replaced_everywhere():
    org = Organisation({"app": {"dev": {"/": {"A": "${B}-${B}-${B}", "B": "b"}}}})
    assert org.resolve("app", "dev", "A") == "b-b-b"


# -- over HTTP -------------------------------------------------------------------------------


@pytest.fixture
def post(client, sa_headers):
    def send(app_id, env, entries, headers=None):
        response = client.post(f"/v1/secrets/?app_id={app_id}&env={env}",
                               headers=headers or sa_headers,
                               data=json.dumps({"secrets": entries}))
        assert response.status_code == 200, response.json
        return response.json

    return send


@pytest.fixture
def get_value(client, sa_headers):
    def read(app_id, env, key, headers=None):
        response = client.get(f"/v1/secrets/?app_id={app_id}&env={env}&key={key}",
                              headers=headers or sa_headers)
        assert response.status_code == 200, response.json
        (item,) = response.json
        return item["value"]

    return read


def test_every_syntax_resolves_in_get(demo, make_app, make_service_token, post, get_value):
    from support import bearer_headers
    app_row, envs = demo
    other_row, other_envs = make_app("Billing")
    headers = bearer_headers(make_service_token([*envs.values(), *other_envs.values()],
                                                name="all"))
    app_id, other_id = app_row["id"], other_row["id"]
    post(other_id, "Production", [{"key": "RATE", "value": "7"},
                                  {"key": "RATE", "value": "8", "path": "/eu"}], headers)
    post(app_id, "Staging", [{"key": "HOST", "value": "staging-db"},
                             {"key": "PORT", "value": "5432", "path": "/db"}], headers)
    post(app_id, "Development", [
        {"key": "LOCAL", "value": "l"},
        {"key": "NESTED", "value": "n", "path": "/a/b"},
        {"key": "ALL", "value": "${LOCAL} ${/a/b/NESTED} ${a/b/NESTED} ${staging.HOST}"
                                " ${Staging./db/PORT} ${billing::production.RATE}"
                                " ${BILLING::Production./eu/RATE} ${{LOCAL}}"},
    ], headers)
    assert get_value(app_id, "Development", "ALL", headers) == (
        "l n n staging-db 5432 7 8 ${{LOCAL}}")


def test_access_is_checked_for_cross_environment_references(client, demo, make_service_token,
                                                            post, get_value, sa_headers):
    from support import bearer_headers
    app_row, envs = demo
    app_id = app_row["id"]
    post(app_id, "Production", [{"key": "PROD_ONLY", "value": "p-val"}])
    post(app_id, "Development", [{"key": "LOCAL", "value": "l"},
                                 {"key": "REF", "value": "${Production.PROD_ONLY}+${LOCAL}"}])
    dev_only = bearer_headers(make_service_token([envs["Development"]], name="dev-only"))
    assert get_value(app_id, "Development", "REF", dev_only) == "${Production.PROD_ONLY}+${LOCAL}"
    assert get_value(app_id, "Development", "REF") == "p-val+l"
    # Nor can a restricted caller read another environment by writing a reference.
    (created,) = post(app_id, "Development",
                      [{"key": "PROBE", "value": "${Production.PROD_ONLY}"}], dev_only)
    assert created["value"] == "${Production.PROD_ONLY}"


def test_ambiguous_app_names_stay_verbatim(demo, make_app, post, get_value, make_service_token,
                                           services):
    from support import bearer_headers
    app_row, envs = demo
    twin_a, twin_a_envs = make_app("twin")
    twin_b, twin_b_envs = make_app("other")
    with services.db.transaction():  # names are unique now; an older database may share one
        services.db.execute("UPDATE apps SET name = 'TWIN' WHERE id = ?", (twin_b["id"],))
    headers = bearer_headers(make_service_token(
        [*envs.values(), *twin_a_envs.values(), *twin_b_envs.values()], name="all"))
    post(twin_a["id"], "Development", [{"key": "K", "value": "a"}], headers)
    post(app_row["id"], "Development", [{"key": "R", "value": "${twin::Development.K}"}], headers)
    assert get_value(app_row["id"], "Development", "R", headers) == "${twin::Development.K}"


def test_references_follow_updates_and_deletes(client, demo, post, get_value, sa_headers):
    app_id = demo[0]["id"]
    target, _ = post(app_id, "Development", [{"key": "TARGET", "value": "one"},
                                             {"key": "REF", "value": "<${TARGET}>"}])
    assert get_value(app_id, "Development", "REF") == "<one>"
    url = f"/v1/secrets/?app_id={app_id}&env=Development"
    client.put(url, headers=sa_headers,
               data=json.dumps({"secrets": [{"id": target["id"], "value": "two"}]}))
    assert get_value(app_id, "Development", "REF") == "<two>"
    client.delete(url, headers=sa_headers, data=json.dumps({"secrets": [target["id"]]}))
    assert get_value(app_id, "Development", "REF") == "<${TARGET}>"


def test_cycle_over_http(demo, post, get_value):
    app_id = demo[0]["id"]
    post(app_id, "Development", [{"key": "A", "value": "${B}"}, {"key": "B", "value": "${A}"}])
    assert get_value(app_id, "Development", "A") == "${A}"
    assert get_value(app_id, "Development", "B") == "${B}"


def test_lower_case_reference_does_not_find_upper_case_key(demo, post, get_value):
    app_id = demo[0]["id"]
    post(app_id, "Development", [{"key": "db_host", "value": "h"},
                                 {"key": "R", "value": "${db_host}|${DB_HOST}"}])
    assert get_value(app_id, "Development", "R") == "${db_host}|h"


def test_a_response_is_resolved_without_a_query_per_reference(demo, post, services, client,
                                                              sa_headers, monkeypatch):
    app_id = demo[0]["id"]
    post(app_id, "Staging", [{"key": f"S{i}", "value": str(i)} for i in range(20)])
    post(app_id, "Development",
         [{"key": f"R{i}", "value": f"${{Staging.S{i}}}${{R{i - 1}}}" if i else "${Staging.S0}"}
          for i in range(20)])
    client.get(f"/v1/secrets/?app_id={app_id}&env=Staging", headers=sa_headers)
    statements = []
    execute = services.db.execute
    monkeypatch.setattr(services.db, "execute",
                        lambda sql, *args: statements.append(sql) or execute(sql, *args))
    response = client.get(f"/v1/secrets/?app_id={app_id}&env=Development", headers=sa_headers)
    monkeypatch.undo()
    assert response.json[-1]["value"] == "".join(str(i) for i in range(19, -1, -1))
    assert len(statements) < 25, statements


def test_write_responses_see_the_request_own_secrets(demo, post, client, sa_headers):
    app_id = demo[0]["id"]
    client.get(f"/v1/secrets/?app_id={app_id}&env=Development", headers=sa_headers)  # cache it
    created = post(app_id, "Development", [{"key": "A", "value": "x"},
                                           {"key": "B", "value": "${A}${C}"},
                                           {"key": "C", "value": "z"}])
    assert [item["value"] for item in created] == ["x", "xz", "z"]


def test_doubling_references_stay_fast_and_bounded(client, demo, sa_headers):
    """``K0=${K1}${K1}, K1=${K2}${K2}, ...`` 25 deep would make ~1 GB; it stays bounded."""
    import time

    from phase_lite.references import MAX_RESOLVED_LENGTH

    app_row, _ = demo
    query = f"?app_id={app_row['id']}&env=Development"
    chain = [{"key": f"K{i}", "value": f"${{K{i + 1}}}${{K{i + 1}}}"} for i in range(25)]
    chain.append({"key": "K25", "value": "x" * 64})
    assert client.post("/v1/secrets/" + query, json={"secrets": chain},
                       headers=sa_headers).status_code == 200
    started = time.monotonic()
    response = client.get("/v1/secrets/" + query + "&key=K0", headers=sa_headers)
    assert response.status_code == 200
    assert time.monotonic() - started < 5
    value = response.get_json()[0]["value"]
    assert len(value) <= MAX_RESOLVED_LENGTH
    assert "${K" in value  # the part that would overflow stays verbatim
    assert set(value.replace("${", "").replace("}", "").replace("K", "")) <= set("0123456789x")
