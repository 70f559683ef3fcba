"""Nothing lost and daily tasks, in a real browser (the harness of test_console_browser.py,
with a server of its own): a stale edit refused, keys typed as Phase types them, bulk edit's
preview before a delete from inside a folder, multi-line values on screen, "Reveal all" in a
folder, the service-account header that works, the navigation of a Developer, and the
in-place editing and multi-environment forms. Selecting only by role and accessible name."""

import json
import re
from pathlib import Path

import requests
from playwright.sync_api import expect

import support

sign_in = support.browser_sign_in
check_page = support.check_console_page
make_app = support.browser_make_app
new_secret = support.browser_new_secret
row_of = support.browser_row_of

PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
       "bXkgImtleSIgd2l0aCBcIGFuZCAnCg==\n-----END PRIVATE KEY-----")


def api_update(server, page, key, value):
    """Another client changes a secret (the REST API, with a token of the Owner)."""
    token = support.user_token(server.services, "owner@example.com", "another client")
    headers = {"Authorization": f"Bearer {token.bearer_token}"}
    app_id = page.url.split("/apps/")[1].split("/")[0]
    env_id = page.url.split("/environments/")[1].split("/")[0]
    listed = requests.get(f"{server.url}/v1/secrets/?app_id={app_id}",
                          headers=headers | {"Environment": env_id}, timeout=10).json()
    found = next(item for item in listed if item["key"] == key)
    answer = requests.put(f"{server.url}/v1/secrets/?app_id={app_id}",
                          headers=headers | {"Environment": env_id},
                          json={"secrets": [{"id": found["id"], "value": value}]}, timeout=10)
    assert answer.status_code == 200, answer.text


def test_a_stale_edit_is_refused_and_nothing_is_written(context, page, server):
    sign_in(page)
    make_app(page, "stale")
    page.get_by_role("link", name="Staging", exact=True).click()
    new_secret(page, "API_URL", "https://one")
    row_of(page, "API_URL").get_by_role("link", name=re.compile("^Edit")).click()
    expect(page.get_by_label("Value")).to_have_value("https://one")
    other = context.new_page()  # another tab saves first
    other.goto(page.url)
    other.get_by_label("Value").fill("https://from-the-other-tab")
    other.get_by_role("button", name="Save").click()
    expect(other.get_by_role("status")).to_contain_text("Secret saved.")
    page.get_by_label("Value").fill("https://mine")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("changed since you opened this page")
    expect(page.get_by_label("Value")).to_have_value("https://mine")  # still there to copy
    check_page(page, "secret-edit-stale")
    page.get_by_role("link", name="Cancel").click()
    row = row_of(page, "API_URL")
    row.get_by_role("button", name=re.compile("^Reveal")).click()
    expect(row.get_by_text("https://from-the-other-tab")).to_be_visible()
    # the API too: a delete asked on a page from before its change is refused
    api_update(server, page, "API_URL", "https://from-the-api")
    row_of(page, "API_URL").get_by_role("button", name=re.compile("^Delete")).click()
    support.browser_confirm(page, "Delete API_URL?", "Delete API_URL")
    expect(page.get_by_role("alert")).to_contain_text("changed since you opened this page")
    page.goto(page.url.split("/secrets/")[0] + "/")
    expect(row_of(page, "API_URL")).to_have_count(1)


def test_keys_are_typed_as_phase_types_them_and_invalid_ones_refused(page, server):
    sign_in(page)
    make_app(page, "keys")
    page.get_by_role("link", name="Development", exact=True).click()
    page.get_by_role("button", name="New secret").click()
    page.get_by_label("Key").press_sequentially("my database url")
    expect(page.get_by_label("Key")).to_have_value("MY_DATABASE_URL")
    page.get_by_label("Key").fill("my-key!")
    page.get_by_label("Value").fill("x")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "A key is a name an environment variable can have")
    page.get_by_label("Key").fill("")
    page.get_by_label("Key").press_sequentially("fine key")
    page.get_by_role("button", name="Save").click()
    expect(row_of(page, "FINE_KEY")).to_be_visible()


def test_bulk_edit_from_a_folder_previews_and_asks_before_deleting(page, server):
    sign_in(page)
    make_app(page, "bulk-folder")
    page.get_by_role("link", name="Staging", exact=True).click()
    new_secret(page, "TOP", "stays")
    new_secret(page, "DB_HOST", "db.internal", Path="/backend")
    new_secret(page, "DB_PORT", "5432", Path="/backend")  # (a save shows its folder)
    expect(page.get_by_role("navigation", name="Folders").get_by_text("backend")).to_be_visible()
    page.get_by_role("button", name="Bulk edit").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("/backend")
    text = page.get_by_label("Secrets").input_value()
    assert "DB_HOST=" in text and "TOP=" not in text  # the folder, not the root
    page.get_by_label("Secrets").fill('DB_HOST="db2.internal"\nDB_USER="app"\n')
    page.get_by_role("button", name="Preview changes").click()
    preview = page.get_by_role("table", name="What the bulk edit would do")
    expect(preview.get_by_role("row", name="DB_USER created")).to_be_visible()
    expect(preview.get_by_role("row", name="DB_HOST changed")).to_be_visible()
    expect(preview.get_by_role("row", name="DB_PORT deleted")).to_be_visible()
    check_page(page, "bulk-edit-preview")
    colours = preview.locator("td").evaluate_all(
        "cells => cells.map(cell => getComputedStyle(cell).color)")
    assert len(set(colours)) == 3  # created, changed and deleted look different
    page.get_by_role("button", name="Save all").click()  # not yet: the delete is unticked
    expect(page.get_by_role("table", name="What the bulk edit would do")).to_be_visible()
    page.get_by_role("checkbox", name=re.compile("Delete 1 secret")).check()
    page.get_by_role("button", name="Save all").click()
    expect(page.get_by_role("status")).to_contain_text(
        "1 created, 1 updated, 1 deleted, 0 unchanged")
    expect(page.get_by_role("navigation", name="Folders").get_by_text("backend")).to_be_visible()
    expect(row_of(page, "DB_PORT")).to_have_count(0)
    expect(row_of(page, "DB_USER")).to_be_visible()
    page.get_by_role("button", name="Import .env").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("/backend")


def test_a_pem_key_keeps_its_lines_on_screen_and_reveal_all_stays_in_its_folder(page, server):
    sign_in(page)
    make_app(page, "pem")
    page.get_by_role("link", name="Production", exact=True).click()
    new_secret(page, "ROOT_ONLY", "root value")
    new_secret(page, "TLS_KEY", PEM, Path="/certs")  # (a save shows its folder)
    page.get_by_role("button", name="Reveal all values").click()
    expect(page.get_by_role("navigation", name="Folders").get_by_text("certs")).to_be_visible()
    shown = row_of(page, "TLS_KEY").locator("code.revealed")
    assert shown.inner_text() == PEM  # the line breaks, on screen
    box = shown.bounding_box()
    assert box["height"] > 3 * 14  # four lines tall, not one
    assert "root value" not in page.content()
    with page.expect_download() as download:
        page.get_by_role("link", name="Export JSON with paths").click()
    stored = json.loads(Path(download.value.path()).read_text())
    assert stored == {"/": {"ROOT_ONLY": "root value"}, "/certs": {"TLS_KEY": PEM}}  # LF
    with page.expect_download() as download:
        page.get_by_role("link", name="Export .env").click()  # this folder's file
    assert Path(download.value.path()).read_text() == f'TLS_KEY="{PEM}"\n'
    assert download.value.suggested_filename == "pem-Production-certs.env"
    page.get_by_role("button", name="Bulk edit").click()
    assert PEM in page.get_by_label("Secrets").input_value()


def test_history_columns_keep_their_widths(page, server):
    sign_in(page)
    make_app(page, "widths")
    page.get_by_role("link", name="Development", exact=True).click()
    new_secret(page, "SHORT", "a")
    row_of(page, "SHORT").get_by_role("link", name=re.compile("^Edit")).click()
    page.get_by_label("Comment").fill("a much longer comment " * 6)
    page.get_by_label("Tags").fill("one, two")
    page.get_by_role("button", name="Save").click()
    row_of(page, "SHORT").get_by_role("link", name=re.compile("^History")).click()
    lefts = page.locator("table.diff thead th:nth-child(2)").evaluate_all(
        "cells => cells.map(cell => Math.round(cell.getBoundingClientRect().left))")
    assert len(lefts) == 2 and len(set(lefts)) == 1


def test_the_service_account_header_shown_is_the_one_that_works(page, server):
    sign_in(page)
    make_app(page, "header-app")
    app_id = page.url.split("/apps/")[1].split("/")[0]
    page.get_by_role("link", name="Production", exact=True).click()
    new_secret(page, "VISIBLE", "to the account")
    page.get_by_role("link", name="Service accounts").click()
    page.get_by_role("button", name="New service account").click()
    page.get_by_label("Name").fill("header-reader")
    page.get_by_role("button", name="Create service account").click()
    page.get_by_role("link", name="Done").click()
    page.get_by_role("link", name="Service accounts").click()
    page.get_by_role("link", name="header-reader").click()
    page.get_by_role("group", name="header-app").get_by_label("Production").check()
    page.get_by_role("button", name="Save access").click()
    page.get_by_role("button", name="New token").click()
    page.get_by_label("Name").fill("ci")
    page.get_by_role("button", name=re.compile("^Create")).click()
    shown = page.get_by_role("group", name=re.compile("REST API's header")).locator(
        "code").inner_text()
    name, _, value = shown.partition(": ")
    answer = requests.get(f"{server.url}/v1/secrets/?app_id={app_id}&env=Production",
                          headers={name: value}, timeout=10)
    assert answer.status_code == 200 and answer.json()[0]["value"] == "to the account"
    expect(page.get_by_role("button", name="Copy the header")).to_be_visible()


def test_a_developer_is_shown_only_the_pages_they_may_open(page, server):
    sign_in(page, "dev@example.com")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Service accounts")).to_have_count(0)
    links = nav.get_by_role("link").all()
    assert len(links) >= 4
    for number in range(len(links)):
        nav.get_by_role("link").nth(number).click()
        expect(page.get_by_role("heading", level=1, name="Not allowed")).to_have_count(0)


def test_a_new_apps_overview_adds_a_key_to_all_three_environments(page, server):
    sign_in(page)
    make_app(page, "three-at-once")
    page.get_by_role("link", name="Add a secret to every environment").click()
    check_page(page, "new-key-across")
    page.get_by_label("Key").press_sequentially("stripe key")
    for name in ("Development", "Staging", "Production"):
        expect(page.get_by_label(f"Add to {name}")).to_be_checked()
        page.get_by_label(f"Value in {name}").fill(f"sk_{name.lower()}")
    page.get_by_label("Comment").fill("payments")
    page.get_by_label("Tags").fill("billing")
    page.get_by_label("Type").select_option("config")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Secret created in 3 environment(s).")
    row = page.get_by_role("row").filter(has_text="STRIPE_KEY")
    for number in range(3):
        expect(row.get_by_role("cell").nth(number)).to_contain_text("present")
    for name in ("Development", "Staging", "Production"):
        page.get_by_role("link", name=name, exact=True).first.click()
        secret = row_of(page, "STRIPE_KEY")
        expect(secret.get_by_role("cell").nth(1)).to_have_text("payments")
        expect(secret.get_by_role("cell").nth(2)).to_contain_text("billing")
        page.go_back()


def test_edit_in_place_in_the_list_and_the_overview_with_the_keyboard(context, page, server):
    sign_in(page)
    make_app(page, "in-place")
    page.get_by_role("link", name="Staging", exact=True).click()
    new_secret(page, "REGION", "eu-west-1", Comment="where", Tags="infra")
    new_secret(page, "OTHER", "x")
    row_of(page, "REGION").get_by_role("button", name="Edit in place REGION").click()
    value = page.get_by_label("Value of REGION")
    expect(value).to_be_focused()
    expect(value).to_have_value("eu-west-1")
    value.fill("eu-central-1\nsecond line")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Comment of REGION")).to_be_focused()
    page.keyboard.press("End")
    page.keyboard.type(" (moved)")
    page.get_by_label("Tags of REGION").fill("infra, moved")
    page.get_by_label("Tags of REGION").press("Enter")
    row = row_of(page, "REGION")
    expect(row.get_by_role("cell").nth(1)).to_have_text("where (moved)")
    expect(row.locator("code.revealed")).to_have_text("eu-central-1\nsecond line")
    expect(page.get_by_role("button", name="Edit in place REGION")).to_be_focused()
    check_page(page, "edit-in-place")
    # a second edit on the same page is at the environment's new version
    row_of(page, "OTHER").get_by_role("button", name="Edit in place OTHER").click()
    page.get_by_label("Value of OTHER").fill("y")
    page.get_by_role("button", name="Save OTHER").click()
    expect(row_of(page, "OTHER").locator("code.revealed")).to_have_text("y")
    # Escape closes without saving
    row_of(page, "OTHER").get_by_role("button", name="Edit in place OTHER").click()
    page.get_by_label("Value of OTHER").fill("not saved")
    page.keyboard.press("Escape")
    expect(page.get_by_label("Value of OTHER")).to_have_count(0)
    # opened, then another tab writes: refused in the row, what was typed kept
    row_of(page, "OTHER").get_by_role("button", name="Edit in place OTHER").click()
    other = context.new_page()
    other.goto(page.url)
    row_of(other, "OTHER").get_by_role("button", name="Edit in place OTHER").click()
    other.get_by_label("Value of OTHER").fill("from the other tab")
    other.get_by_role("button", name="Save OTHER").click()
    expect(row_of(other, "OTHER").locator("code.revealed")).to_have_text("from the other tab")
    page.get_by_label("Value of OTHER").fill("mine")
    page.get_by_role("button", name="Save OTHER").click()
    expect(page.get_by_role("alert")).to_contain_text("changed since you opened this page")
    expect(page.get_by_label("Value of OTHER")).to_have_value("mine")
    # the overview: a cell's value edited in place
    page.get_by_role("link", name="in-place").first.click()
    row = page.get_by_role("row").filter(has_text="REGION")
    row.get_by_text("Values").click()
    row.get_by_role("button", name="Edit in place REGION in Staging").click()
    page.get_by_label("Value of REGION in Staging").fill("us-east-1")
    page.get_by_role("button", name="Save REGION in Staging").click()
    expect(row.locator("code.revealed")).to_have_text("us-east-1")
    page.reload()
    page.get_by_role("link", name="Staging", exact=True).first.click()
    row_of(page, "REGION").get_by_role("button", name=re.compile("^Reveal")).click()
    expect(row_of(page, "REGION").locator("code.revealed")).to_have_text("us-east-1")


def test_a_broken_reference_is_warned_about_before_it_is_saved(page, server):
    sign_in(page)
    make_app(page, "references")
    page.get_by_role("link", name="Development", exact=True).click()
    new_secret(page, "HOST", "db.internal")
    page.get_by_role("button", name="New secret").click()
    page.get_by_label("Key").fill("DSN")
    page.get_by_label("Value").fill("postgres://${HOST}:${PORT}/app")
    page.get_by_role("button", name="Save", exact=True).click()
    warning = page.get_by_role("alert")
    expect(warning).to_contain_text("${PORT}")
    expect(warning).not_to_contain_text("${HOST}")
    check_page(page, "reference-warning")
    expect(page.get_by_label("Value")).to_have_value("postgres://${HOST}:${PORT}/app")
    page.get_by_role("button", name="Save anyway").click()
    expect(row_of(page, "DSN")).to_be_visible()


def test_search_values_without_script(browser, server):
    context = browser.new_context(base_url=server.url, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page)
        make_app(page, "search")
        page.get_by_role("link", name="Production", exact=True).click()
        new_secret(page, "DB_HOST", "db.prod.internal")
        new_secret(page, "API_URL", "https://api.example")
        page.get_by_role("link", name="search").first.click()
        page.get_by_label("Find in values").fill("prod.internal")
        page.get_by_role("button", name="Search values").click()
        expect(page.get_by_role("status")).to_contain_text("1 key whose key or value holds")
        expect(page.get_by_role("row").filter(has_text="DB_HOST")).to_be_visible()
        expect(page.get_by_role("row").filter(has_text="API_URL")).to_have_count(0)
        expect(page.get_by_text("db.prod.internal")).to_be_visible()
    finally:
        context.close()


def test_import_into_two_environments_and_invite_with_environments(browser, page, server):
    sign_in(page)
    make_app(page, "import-two")
    page.get_by_role("link", name="Staging", exact=True).click()
    page.get_by_role("button", name="Import .env").click()
    page.get_by_label("Paste a .env file").fill('FEATURE_X="on"\n')
    page.get_by_role("checkbox", name="Production").check()
    page.get_by_role("button", name="Preview import").click()
    for name in ("Staging", "Production"):
        table = page.get_by_role("table", name=f"What the import would do in {name}")
        expect(table.get_by_role("row", name="FEATURE_X created")).to_be_visible()
    check_page(page, "import-preview-two")
    page.get_by_role("button", name="Apply import").click()
    expect(page.get_by_role("status")).to_contain_text("2 created")
    page.get_by_role("link", name="import-two").click()
    row = page.get_by_role("row").filter(has_text="FEATURE_X")
    expect(row.get_by_role("cell").nth(0)).to_contain_text("missing")
    expect(row.get_by_role("cell").nth(1)).to_contain_text("same as Production")
    expect(row.get_by_role("cell").nth(2)).to_contain_text("present")

    page.get_by_role("link", name="Members").click()
    page.get_by_label("Email").fill("staging.only@example.com")
    page.get_by_label("Role", exact=True).select_option("Developer")
    invite = page.get_by_role("region", name="Invite a member")
    invite.get_by_text(re.compile("^Environments \\(")).click()
    invite.get_by_label("import-two / Staging").check()
    page.get_by_role("button", name="Invite").click()
    first = page.get_by_role("group", name=re.compile("^Invitation link")).get_by_text(
        re.compile("/console/welcome")).inner_text()
    page.get_by_role("button", name="New invitation link for staging.only@example.com").click()
    link = page.get_by_role("group", name=re.compile("^Invitation link")).get_by_text(
        re.compile("/console/welcome")).inner_text()
    assert link != first
    guest = browser.new_context(base_url=server.url)
    try:
        visitor = guest.new_page()
        visitor.goto(first)
        expect(visitor.get_by_role("alert")).to_contain_text("invalid, used or expired")
        visitor.goto(link)
        visitor.get_by_label("New password").fill("staging only password")
        visitor.get_by_label("Repeat the password").fill("staging only password")
        visitor.get_by_role("button", name="Set password").click()
        visitor.get_by_role("link", name="import-two").click()
        expect(visitor.get_by_role("link", name="Staging", exact=True)).to_be_visible()
        expect(visitor.get_by_role("link", name="Production", exact=True)).to_have_count(0)
    finally:
        guest.close()
    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Event").select_option("invite")
    page.get_by_role("button", name="Filter").click()
    invited = page.get_by_role("row").filter(has_text="staging.only@example.com")
    expect(invited.first).to_be_visible()
