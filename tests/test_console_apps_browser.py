"""Environments and app settings in a real browser (the harness of test_console_browser.py,
with a server of its own): environments created, renamed, reordered and deleted in the console
are what the management API lists and what the real ``phase`` CLI picks; the app is renamed,
described and deleted as the API sees it; a typed confirmation with a wrong name changes
nothing; a Developer has neither the controls nor the POSTs; every write is audited with the
console as its channel. Every page is checked with axe-core in both themes."""

import json
import re
import subprocess
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import expect

import support
from live import REPO
from phase_lite import accounts
from phase_lite.accounts import Grantee
from phase_lite.store import apps as app_store
from phase_lite.store import audit as audit_store

PHASE = REPO / ".clients" / "phase-cli" / "bin" / "phase"
sign_in = support.browser_sign_in
check_page = support.check_console_page
make_app = support.browser_make_app
new_secret = support.browser_new_secret


def app_id_of(page):
    return urlsplit(page.url).path.split("/apps/")[1].split("/")[0]


def card_names(page):
    return page.locator("ol.environments .env-name").all_inner_texts()


def reader_token(server, app_id):
    """A service account holding every environment of the app (made after the console's
    changes), as a script or a CI job would use the app."""
    envs = app_store.list_environments(server.services.db, app_id)
    _, issued = support.make_service_account(server.services, f"reader-{app_id[:8]}",
                                             env_rows=envs)
    return issued


def api_get(server, issued, path):
    return requests.get(server.url + path, timeout=10, headers=support.bearer_headers(issued))


def shape_environments(page):
    """In the console: add "qa", rename it "uat", move it up twice and Development down,
    add Prod_Copy and move it above Production, delete Staging after typing its name."""
    page.get_by_role("button", name="New environment").click()
    check_page(page, "environment-new")
    page.get_by_label("Name").fill("qa")
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Environment created.")
    page.get_by_role("button", name="Rename qa").click()
    check_page(page, "environment-rename")
    page.get_by_label("Name").fill("uat")
    page.get_by_role("button", name="Rename", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Environment renamed.")
    page.get_by_role("button", name="Move uat up").click()
    page.get_by_role("button", name="Move uat up").click()
    page.get_by_role("button", name="Move Development down").click()
    expect(page.get_by_role("status")).to_contain_text("Environment moved.")
    assert card_names(page) == ["uat", "Development", "Staging", "Production"]
    page.get_by_role("button", name="New environment").click()
    page.get_by_label("Name").fill("Prod_Copy")
    page.get_by_role("button", name="Create", exact=True).click()
    page.get_by_role("button", name="Move Prod_Copy up").click()
    assert card_names(page) == ["uat", "Development", "Staging", "Prod_Copy", "Production"]

    page.get_by_role("button", name="Delete Staging").click()
    expect(page.get_by_role("heading", level=1,
                            name="Delete the environment Staging?")).to_be_visible()
    check_page(page, "environment-delete")
    page.get_by_label("Type Staging to confirm").fill("staging")
    page.get_by_role("button", name="Delete Staging").click()
    expect(page.get_by_role("alert")).to_have_text(
        "The name you typed does not match Staging: nothing was deleted.")
    page.get_by_label("Type Staging to confirm").fill("Staging")
    page.get_by_role("button", name="Delete Staging").click()
    expect(page.get_by_role("status")).to_contain_text("Environment deleted.")
    assert card_names(page) == ["uat", "Development", "Prod_Copy", "Production"]


def test_environments_shaped_in_the_console_are_what_the_api_lists(page, server):
    sign_in(page)
    make_app(page, "envs-api")
    app_id = app_id_of(page)
    page.get_by_role("link", name="Development", exact=True).click()
    new_secret(page, "HOST", "db", Path="/backend/db")
    page.get_by_role("link", name="envs-api").click()
    expect(page.locator("ol.environments li").first).to_contain_text("1 secret · 2 folders")
    shape_environments(page)
    check_page(page, "app-environments")
    issued = reader_token(server, app_id)
    listed = api_get(server, issued, f"/v1/environments/?app_id={app_id}").json()["data"]
    assert [env["name"] for env in listed] == card_names(page)
    indexes = [env["index"] for env in listed]  # a deleted environment leaves its gap
    assert indexes == sorted(set(indexes))
    table = page.get_by_role("table")
    for name in card_names(page):  # the overview's columns follow the order too
        expect(table.get_by_role("columnheader", name=name)).to_be_visible()
    events = {(event["action"], event["channel"]) for event in audit_store.list_events(
        server.services.db, app_id=app_id, limit=100) if event["resource_type"] == "environment"}
    assert events == {("create", "console"), ("update", "console"), ("move", "console"),
                      ("delete", "console")}


@pytest.mark.clients
def test_the_phase_cli_sees_the_environments_shaped_in_the_console(page, server, tmp_path):
    sign_in(page)
    make_app(page, "envs-cli")
    app_id = app_id_of(page)
    shape_environments(page)
    for env_name, value in (("uat", "from uat"), ("Prod_Copy", "from the copy"),
                            ("Production", "from production")):
        page.get_by_role("link", name=env_name, exact=True).click()
        new_secret(page, "WHERE", value)
        page.get_by_role("link", name="envs-cli").click()
    issued = reader_token(server, app_id)
    if not PHASE.exists():
        subprocess.run(["bash", "tests/clients/install.sh"], cwd=REPO, check=True, timeout=900)

    def export(env_name):
        done = subprocess.run(
            [str(PHASE), "secrets", "export", "--format", "json", "--app-id", app_id, "--env",
             env_name], capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PHASE_HOST": server.url,
                 "PHASE_SERVICE_TOKEN": issued.token, "LANG": "C.UTF-8",
                 "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
        output = done.stdout + done.stderr
        return done.returncode, output

    code, output = export("uat")  # the renamed environment, by its new name
    assert code == 0, output
    assert json.loads(output[output.index("{"):]) == {"WHERE": "from uat"}
    assert export("qa")[0] != 0 and export("Staging")[0] != 0  # old name, deleted
    # The CLI takes the first environment whose name holds "prod", in the order it is given:
    # Prod_Copy was moved above Production in the console.
    code, output = export("prod")
    assert code == 0, output
    assert json.loads(output[output.index("{"):]) == {"WHERE": "from the copy"}
    page.get_by_role("button", name="Move Prod_Copy down").click()
    code, output = export("prod")
    assert json.loads(output[output.index("{"):]) == {"WHERE": "from production"}


def test_app_settings_rename_describe_and_delete(page, server):
    sign_in(page)
    make_app(page, "settings-app")
    app_id = app_id_of(page)
    issued = reader_token(server, app_id)
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", level=2, name="Encryption")).to_be_visible()
    expect(page.get_by_text("Never: the app still uses the key it was created with.")
           ).to_be_visible()
    expect(page.get_by_text(f"phase-lite keys rotate-app {app_id}")).to_be_visible()
    check_page(page, "app-settings")
    page.get_by_label("Name").fill("renamed-app")
    page.get_by_label("Description").fill("Now described")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("App saved.")
    expect(page.get_by_role("heading", level=1, name="renamed-app")).to_be_visible()
    body = api_get(server, issued, f"/v1/apps/{app_id}/").json()
    assert (body["name"], body["description"]) == ("renamed-app", "Now described")

    page.get_by_role("button", name="Delete app").click()
    check_page(page, "app-delete")
    page.get_by_label("Type renamed-app to confirm").fill("settings-app")
    page.get_by_role("button", name="Delete app renamed-app").click()
    expect(page.get_by_role("alert")).to_contain_text("does not match renamed-app")
    assert api_get(server, issued, f"/v1/apps/{app_id}/").status_code == 200
    page.get_by_label("Type renamed-app to confirm").fill("renamed-app")
    page.get_by_role("button", name="Delete app renamed-app").click()
    expect(page.get_by_role("status")).to_contain_text("App deleted.")
    expect(page.get_by_role("link", name="renamed-app")).to_have_count(0)
    assert api_get(server, issued, f"/v1/apps/{app_id}/").status_code == 404
    actions = [(event["action"], event["resource_type"], event["channel"])
               for event in audit_store.list_events(server.services.db, app_id=app_id)]
    assert ("update", "app", "console") in actions and ("delete", "app", "console") in actions


def test_a_developer_cannot_delete_environments_or_change_the_app(page, server):
    services = server.services
    app_row, envs = support.make_app(services, "dev-settings")
    dev = accounts.user_by_email(services, support.operator(services), "dev@example.com")
    support.grant(services, Grantee.of_user(dev), list(envs.values()))
    sign_in(page, "dev@example.com")
    page.get_by_role("link", name="dev-settings").click()
    expect(page.get_by_role("button", name="Rename Staging")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    staging = f"/console/apps/{app_row['id']}/environments/{envs['Staging']['id']}/delete"
    refused = page.request.post(staging, form={"csrf_token": token, "typed_name": "Staging"})
    assert refused.status == 403
    page.get_by_role("link", name="Settings").click()
    check_page(page, "developer-app-settings")
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete app")).to_have_count(0)
    refused = page.request.post(f"/console/apps/{app_row['id']}/settings",
                                form={"csrf_token": token, "name": "mine"})
    assert refused.status == 403
    refused = page.request.post(f"/console/apps/{app_row['id']}/delete",
                                form={"csrf_token": token, "typed_name": "dev-settings"})
    assert refused.status == 403
    assert [env["name"] for env in app_store.list_environments(services.db, app_row["id"])] == [
        "Development", "Staging", "Production"]
    assert app_store.get_app(services.db, app_row["organisation_id"],
                             app_row["id"])["name"] == "dev-settings"
