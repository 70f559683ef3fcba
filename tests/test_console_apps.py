"""The console's environments (create, rename, reorder, delete with a typed name) and app
settings (name, description, encryption panel, deletion) over HTTP (Flask test client): the
management API sees every change, refusals carry the API's texts and change nothing, every
write is audited with the console as its channel."""

import html
import re
import urllib.parse

import pytest
import requests

import support
from phase_lite import accounts, rotation, tokens
from phase_lite.accounts import Grantee
from phase_lite.store import audit as audit_store

from support import bearer_headers

pytestmark = pytest.mark.both_backends


def text_of(answer):
    return html.unescape(answer.get_data(as_text=True))


def api_environments(client, owner, app_id):
    """[(name, index)] of the app's environments as the management API lists them."""
    answer = client.get(f"/v1/environments/?app_id={app_id}", headers=bearer_headers(owner))
    assert answer.status_code == 200
    return [(env["name"], env["index"]) for env in answer.get_json()["data"]]


def api_app(client, owner, app_id):
    return client.get(f"/v1/apps/{app_id}/", headers=bearer_headers(owner))


def audited(db, action, resource_type):
    return [event for event in audit_store.list_events(db, limit=1000)
            if event["action"] == action and event["resource_type"] == resource_type]


def post(client, url, **data):
    return client.post(url, data={"csrf_token": client.csrf, **data})


def alert(answer):
    return re.search(r'role="alert">([^<]*)<', text_of(answer)).group(1)


def env_names(client, owner, app_id):
    return [name for name, _ in api_environments(client, owner, app_id)]


@pytest.fixture
def base(demo):
    return f"/console/apps/{demo[0]['id']}/"


@pytest.fixture
def developer(app, services, demo):
    """A Developer's signed-in test client holding every environment of "demo"."""
    user = support.set_console_password(services, "dev@example.com", support.CONSOLE_PASSWORD,
                                        role="Developer")
    support.grant(services, Grantee.of_user(user), list(demo[1].values()))
    signed_in = app.test_client()
    support.console_sign_in(signed_in, email="dev@example.com")
    signed_in.csrf = support.csrf_of(signed_in.get("/console/apps/"))
    return signed_in


# -- environments ----------------------------------------------------------------------------


def test_each_environment_shows_its_secret_and_folder_counts(demo, owner_client, base):
    _, envs = demo
    url = f"{base}environments/{envs['Staging']['id']}/secrets/new"
    for key, path in (("A", "/"), ("B", "/api/v1"), ("C", "/api")):
        assert post(owner_client, url, key=key, value="v", path=path).status_code == 303
    page = text_of(owner_client.get(base))
    cards = re.findall(r'class="env-name">([^<]+)</strong>\s*<span class="count">([^<]+)', page)
    assert cards == [("Development", "0 secrets · 0 folders"),
                     ("Staging", "3 secrets · 2 folders"),
                     ("Production", "0 secrets · 0 folders")]


def test_create_rename_move_delete_as_the_api_sees_them(client, db, owner, services, demo,
                                                       owner_client, base):
    app_row, envs = demo
    assert '<label for="name">Name</label>' in text_of(owner_client.get(base + "environments/new"))
    created = post(owner_client, base + "environments/new", name="qa")
    assert created.status_code == 303
    assert "Environment created." in text_of(owner_client.get(created.location))
    assert api_environments(client, owner, app_row["id"])[-1] == ("qa", 3)
    page = text_of(owner_client.get(base))
    qa_id = re.search(r'environments/([^/"]+)/rename', page[page.index(">qa<"):]).group(1)

    assert post(owner_client, f"{base}environments/{qa_id}/rename",
                name="uat").status_code == 303
    assert post(owner_client, f"{base}environments/{qa_id}/move",
                before=envs["Development"]["id"]).status_code == 303
    assert api_environments(client, owner, app_row["id"]) == [
        ("uat", 0), ("Development", 1), ("Staging", 2), ("Production", 3)]
    post(owner_client, f"{base}environments/{envs['Development']['id']}/move",
         after=envs["Production"]["id"])
    assert env_names(client, owner, app_row["id"]) == ["uat", "Staging", "Production",
                                                       "Development"]
    assert re.findall(r'class="env-name">([^<]+)<', text_of(owner_client.get(base))) == [
        "uat", "Staging", "Production", "Development"]

    asked = owner_client.get(f"{base}environments/{qa_id}/delete")
    assert '<label for="typed_name">Type uat to confirm</label>' in text_of(asked)
    assert '<button type="submit" class="danger">Delete uat</button>' in text_of(asked)
    assert post(owner_client, f"{base}environments/{qa_id}/delete",
                typed_name="uat").status_code == 303
    assert env_names(client, owner, app_row["id"]) == ["Staging", "Production", "Development"]

    user = accounts.user_by_email(services, support.operator(services), "owner@example.com")
    for action, count in (("create", 1), ("update", 1), ("move", 2), ("delete", 1)):
        events = audited(db, action, "environment")
        assert len(events) == count, action
        assert {(e["channel"], e["actor_type"], e["actor_id"]) for e in events} == {
            ("console", "user", user["id"])}, action


@pytest.mark.parametrize("name", ["", "bad name!", "x" * 65, "staging"])
def test_a_refused_environment_name_says_what_the_api_says(client, db, owner, demo,
                                                          owner_client, base, name):
    app_row, envs = demo
    api = client.post(f"/v1/environments/?app_id={app_row['id']}", json={"name": name},
                      headers=bearer_headers(owner))
    answer = post(owner_client, base + "environments/new", name=name)
    assert answer.status_code == api.status_code
    assert alert(answer) == api.get_json()["error"]
    assert f'value="{html.escape(name)}"' in answer.get_data(as_text=True)  # the form again
    api_rename = client.put(f"/v1/environments/{envs['Development']['id']}/",
                            json={"name": name}, headers=bearer_headers(owner))
    renamed = post(owner_client, f"{base}environments/{envs['Development']['id']}/rename",
                   name=name)
    assert (renamed.status_code, alert(renamed)) == (api_rename.status_code,
                                                    api_rename.get_json()["error"])
    assert env_names(client, owner, app_row["id"]) == ["Development", "Staging", "Production"]
    assert not audited(db, "create", "environment") and not audited(db, "update", "environment")


@pytest.mark.parametrize("typed", ["", "staging", "Staging ish", "Production"])
def test_a_wrong_typed_name_deletes_nothing(client, db, owner, demo, owner_client, base, typed):
    app_row, envs = demo
    answer = post(owner_client, f"{base}environments/{envs['Staging']['id']}/delete",
                  typed_name=typed)
    assert answer.status_code == 400
    assert alert(answer) == "The name you typed does not match Staging: nothing was deleted."
    assert env_names(client, owner, app_row["id"]) == ["Development", "Staging", "Production"]
    assert not audited(db, "delete", "environment")


def test_environment_writes_need_the_form_token(client, db, owner, demo, owner_client, base):
    app_row, envs = demo
    staging = f"{base}environments/{envs['Staging']['id']}/"
    for url, data in ((base + "environments/new", {"name": "qa"}),
                      (staging + "rename", {"name": "qa"}),
                      (staging + "move", {"before": envs["Development"]["id"]}),
                      (staging + "delete", {"typed_name": "Staging"}),
                      (base + "settings", {"name": "renamed"}),
                      (base + "delete", {"typed_name": "demo"})):
        assert owner_client.post(url, data=data | {"csrf_token": "forged"}).status_code == 403
    assert env_names(client, owner, app_row["id"]) == ["Development", "Staging", "Production"]
    assert api_app(client, owner, app_row["id"]).get_json()["name"] == "demo"


def test_a_developer_may_not_delete_environments_or_change_the_app(client, db, owner, demo,
                                                                  developer, base):
    app_row, envs = demo
    page = text_of(developer.get(base))
    assert '<span class="visually-hidden">Rename Staging</span>' in page  # Phase's Developer may
    assert '<span class="visually-hidden">Delete Staging</span>' not in page
    staging = f"{base}environments/{envs['Staging']['id']}/delete"
    assert developer.get(staging).status_code == 403
    refused = post(developer, staging, typed_name="Staging")
    assert refused.status_code == 403
    assert "You don't have permission to delete environments." in text_of(refused)

    settings = text_of(developer.get(base + "settings"))
    assert "Server-side encryption" in settings
    assert 'name="name"' not in settings and "Danger zone" not in settings
    assert post(developer, base + "settings", name="mine", description="").status_code == 403
    assert developer.get(base + "delete").status_code == 403
    assert post(developer, base + "delete", typed_name="demo").status_code == 403
    assert env_names(client, owner, app_row["id"]) == ["Development", "Staging", "Production"]
    assert api_app(client, owner, app_row["id"]).get_json()["name"] == "demo"
    assert not audited(db, "delete", "environment") and not audited(db, "update", "app")


# -- app settings ----------------------------------------------------------------------------


def test_rename_and_describe_the_app_as_the_api_sees_it(client, db, owner, demo, owner_client,
                                                       base, make_app):
    app_row, _ = demo
    saved = post(owner_client, base + "settings", name="shop", description="The shop")
    assert saved.status_code == 303
    assert "App saved." in text_of(owner_client.get(saved.location))
    body = api_app(client, owner, app_row["id"]).get_json()
    assert (body["name"], body["description"]) == ("shop", "The shop")
    (event,) = audited(db, "update", "app")
    assert event["channel"] == "console"

    make_app("other")
    api = client.put(f"/v1/apps/{app_row['id']}/", json={"name": "OTHER"},
                     headers=bearer_headers(owner))
    taken = post(owner_client, base + "settings", name="OTHER", description="x")
    assert (taken.status_code, alert(taken)) == (409, api.get_json()["error"])
    empty = post(owner_client, base + "settings", name="  ", description="x")
    assert (empty.status_code, alert(empty)) == (400, "Missing required field: name")
    assert api_app(client, owner, app_row["id"]).get_json()["description"] == "The shop"


def test_the_encryption_panel_says_when_the_data_key_was_rotated(services, demo, owner_client,
                                                                 base):
    app_row, _ = demo
    page = text_of(owner_client.get(base + "settings"))
    assert "AES-256-GCM" in page and f"phase-lite keys rotate-app {app_row['id']}" in page
    assert "Never: the app still uses the key it was created with." in page
    assert services.vault.keyring.current_key_id in page
    rotation.rotate_app_key(services.db, services.vault, app_row["id"])
    page = text_of(owner_client.get(base + "settings"))
    assert "Never:" not in page
    stamp = services.db.scalar("SELECT data_key_rotated_at FROM apps WHERE id = ?",
                               (app_row["id"],))
    assert f'<time datetime="{stamp}">' in page


def test_delete_the_app_after_typing_its_name(client, db, owner, demo, owner_client, base):
    app_row, _ = demo
    asked = text_of(owner_client.get(base + "delete"))
    assert '<label for="typed_name">Type demo to confirm</label>' in asked
    wrong = post(owner_client, base + "delete", typed_name="Demo")
    assert wrong.status_code == 400
    assert alert(wrong) == "The name you typed does not match demo: nothing was deleted."
    assert api_app(client, owner, app_row["id"]).status_code == 200
    done = post(owner_client, base + "delete", typed_name="demo")
    assert done.status_code == 303 and done.location.endswith("/console/apps/?notice=app_deleted")
    assert api_app(client, owner, app_row["id"]).status_code == 404
    (event,) = audited(db, "delete", "app")
    assert event["channel"] == "console"


# RFC 6266: a quoted ASCII filename, then (for a name that is not ASCII) filename* in UTF-8
DISPOSITION = re.compile(r'attachment; filename="([ -~]+)"(?:; filename\*=UTF-8\'\'([!-~]+))?')


def test_an_export_downloads_under_the_app_name_in_any_script(live_server, services, make_app):
    """Through a served process: an app named in Cyrillic, CJK or Latin-1 exports with 200,
    a Content-Disposition of RFC 6266 (an ASCII fallback and the exact name as filename*),
    and the access log writes the 200 the browser got."""
    support.set_console_password(services, "owner@example.com", support.CONSOLE_PASSWORD)
    names = ("Секреты", "秘密の鍵", "Café", "plain")
    headers = bearer_headers(live_server.owner)
    with requests.Session() as browser:
        page = browser.get(live_server.url + "/console/sign-in", timeout=10)
        signed_in = browser.post(live_server.url + "/console/sign-in", timeout=10, data={
            "email": "owner@example.com", "password": support.CONSOLE_PASSWORD,
            "csrf_token": support.CSRF.search(page.text).group(1)}, allow_redirects=False)
        assert signed_in.status_code == 303
        paths = []
        for name in names:
            app_row, envs = make_app(name)
            env = envs["Development"]
            assert requests.post(
                f"{live_server.url}/v1/secrets/?app_id={app_row['id']}&env=Development",
                headers=headers, json={"secrets": [{"key": "K", "value": "v"}]},
                timeout=10).status_code == 200
            for kind in ("env", "json"):
                path = support.console_env_url(app_row, env) + f"export.{kind}"
                answer = browser.get(live_server.url + path, timeout=10)
                assert answer.status_code == 200, (name, answer.text)
                disposition = answer.headers["Content-Disposition"]
                shown = f"{name}-Development.{kind}"
                fallback = DISPOSITION.fullmatch(disposition)
                assert fallback is not None, disposition
                if name.isascii():
                    assert fallback.group(1) == shown and fallback.group(2) is None
                else:  # the fallback in ASCII; browsers take the exact name from filename*
                    assert fallback.group(1).isascii() and fallback.group(1).endswith(
                        f"-Development.{kind}")
                    assert urllib.parse.unquote(fallback.group(2), errors="strict") == shown
                paths.append(path)
        assert browser.get(live_server.url + support.console_env_url(app_row, env)
                           + "export.json", timeout=10).json() == {"K": "v"}
    log = live_server.log_once(lambda log: all(f'"GET {path}"' in log for path in paths))
    assert [re.search(rf'"GET {re.escape(path)}" (\d+)', log).group(1)
            for path in paths] == ["200"] * len(paths)


# -- what a caller sees of others: the audit log and the members page ------------------------


@pytest.fixture
def hidden_world(app, services, demo, make_app):
    """An app the Developer "dev@" cannot access ("hidden-app"), its service account and a
    member holding it; "dev@" holds demo/Development only, as do "dev-ci" and "both@"."""
    hidden_row, hidden_envs = make_app("hidden-app", ["Production"])
    dev = support.set_console_password(services, "dev@example.com", support.CONSOLE_PASSWORD,
                                       role="Developer")
    support.grant(services, Grantee.of_user(dev), [demo[1]["Development"]])
    support.make_user(services, "both@example.com", "Developer",
                      [demo[1]["Development"], hidden_envs["Production"]])
    hidden_sa, _ = support.make_service_account(services, "hidden-ci",
                                                env_rows=[hidden_envs["Production"]])
    tokens.issue_service_account_token(services, support.operator(services), hidden_sa,
                                       {"name": "hidden-token"}, support.TEST_META)
    support.make_service_account(services, "dev-ci", env_rows=[demo[1]["Development"]])
    signed_in = app.test_client()
    assert support.console_sign_in(signed_in, email="dev@example.com").status_code == 303
    return signed_in


HIDDEN = ("hidden-app", "hidden-ci", "hidden-token", "Production")


def test_the_audit_log_shows_a_developer_only_what_it_may_see(hidden_world, owner_client):
    page = text_of(hidden_world.get("/console/audit/"))
    assert "dev-ci" in page and ">demo<" in page and "dev@example.com" in page
    for name in HIDDEN:
        assert name not in page, name
    for query in ("?event=create", "?event=grant_access", "?page=1"):
        listed = text_of(hidden_world.get("/console/audit/" + query))
        assert not any(name in listed for name in HIDDEN), query
    everything = text_of(owner_client.get("/console/audit/"))  # the Owner sees it all
    assert all(name in everything for name in HIDDEN)


def test_the_members_page_shows_only_grants_the_caller_sees(hidden_world, owner_client):
    page = text_of(hidden_world.get("/console/members/"))
    assert "both@example.com" in page and "demo / Development" in page
    assert "hidden-app" not in page and "Production" not in page
    assert "hidden-app / Production" in text_of(owner_client.get("/console/members/"))
