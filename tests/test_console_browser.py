"""The web console in a real browser: Debian's Chromium driven by Playwright against a live
``phase-lite serve``, selecting only by the accessible names the issue promises.

One server for the module; each test signs in in its own browser context. Every page visited
is checked with axe-core in the light and the dark theme (no serious or critical violation)
and photographed under ``.screenshots/`` (git-ignored) for review.
"""

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

import support
from conftest import REPO
from phase_lite import accounts
from phase_lite.accounts import Grantee

PHASE = REPO / ".clients" / "phase-cli" / "bin" / "phase"
PASSWORD = support.BROWSER_PASSWORD
sign_in = support.browser_sign_in
check_page = support.check_console_page
make_app = support.browser_make_app
new_secret = support.browser_new_secret
row_of = support.browser_row_of


# -- sign-in ---------------------------------------------------------------------------------


def test_first_sign_in_with_the_setup_link_then_sign_out(page, server, context):
    page.goto("/console/sign-in")
    check_page(page, "sign-in")
    page.goto(server.setup_link("owner@example.com"))
    check_page(page, "setup-link")
    page.get_by_label("New password").fill("the owner's own password")
    page.get_by_label("Repeat the password").fill("the owner's own password")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("heading", level=1, name="Apps")).to_be_visible()
    cookie = next(c for c in context.cookies() if c["name"] == "phase_lite_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.get_by_label("Email").fill("owner@example.com")
    page.get_by_label("Password").fill(PASSWORD)  # the old password no longer works
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    page.get_by_label("Password").fill("the owner's own password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1, name="Apps")).to_be_visible()
    support.set_console_password(server.services, "owner@example.com", PASSWORD)


def test_security_headers_and_theme_switch(page, server):
    answer = page.goto("/console/sign-in")
    headers = answer.all_headers()
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    sign_in(page)
    page.emulate_media(color_scheme="light")
    page.get_by_role("button", name="Switch to dark theme").click()
    page.reload()
    assert page.locator("html").get_attribute("data-theme") == "dark"
    page.get_by_role("button", name="Switch to light theme").click()
    page.reload()
    assert page.locator("html").get_attribute("data-theme") == "light"


# -- the owner's journey ---------------------------------------------------------------------


def test_owner_manages_secrets_end_to_end(page, server):
    urls = []
    page.on("request", lambda request: urls.append(request.url))
    sign_in(page)
    check_page(page, "apps")
    make_app(page, "shop")
    check_page(page, "app-overview")
    table = page.get_by_role("table")
    for env_name in ("Development", "Staging", "Production"):
        expect(table.get_by_role("columnheader", name=env_name)).to_be_visible()
    page.get_by_role("link", name="Development", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="Development")).to_be_visible()

    new_secret(page, "database_url", "postgres://db.internal/shop", Comment="primary",
               Tags="backend, db")
    new_secret(page, "API_URL", "https://${DATABASE_URL}")
    check_page(page, "environment")
    assert "postgres://db.internal/shop" not in page.content()
    row = row_of(page, "DATABASE_URL")
    row.get_by_role("button", name=re.compile("^Reveal")).click()
    expect(row.get_by_text("postgres://db.internal/shop")).to_be_visible()
    row_of(page, "API_URL").get_by_role("button", name=re.compile("^Reveal")).click()
    expect(row_of(page, "API_URL").get_by_text(
        "https://postgres://db.internal/shop")).to_be_visible()

    row.get_by_role("link", name=re.compile("^Edit")).click()
    check_page(page, "secret-edit")
    page.get_by_label("Value").fill("postgres://db2.internal/shop")
    page.get_by_role("button", name="Save").click()
    row_of(page, "DATABASE_URL").get_by_role("link", name=re.compile("^History")).click()
    expect(page.get_by_role("heading", level=2, name=re.compile("Version 2"))).to_be_visible()
    check_page(page, "history")
    page.get_by_role("button", name=re.compile("^Restore")).first.click()
    expect(page.get_by_role("status")).to_contain_text("Version 1 restored.")
    page.get_by_role("link", name="Development").click()
    row_of(page, "DATABASE_URL").get_by_role("button", name=re.compile("^Reveal")).click()
    expect(row_of(page, "DATABASE_URL").get_by_text(
        "postgres://db.internal/shop", exact=True)).to_be_visible()

    with page.expect_download() as download:
        page.get_by_role("link", name="Export .env").click()
    text = Path(download.value.path()).read_text()
    assert 'DATABASE_URL="postgres://db.internal/shop"' in text

    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    row_of(page, "API_URL").get_by_role("button", name=re.compile("^Delete")).click()
    expect(row_of(page, "API_URL")).to_have_count(1)
    assert asked == ["Delete API_URL?"]
    page.once("dialog", lambda dialog: dialog.accept())
    row_of(page, "API_URL").get_by_role("button", name=re.compile("^Delete")).click()
    expect(page.get_by_role("status")).to_contain_text("Secret deleted.")
    expect(row_of(page, "API_URL")).to_have_count(0)

    page.get_by_role("link", name="shop").click()
    overview = page.get_by_role("row").filter(has_text="DATABASE_URL")
    expect(overview.get_by_role("cell").nth(0)).to_contain_text("present")
    expect(overview.get_by_role("cell").nth(1)).to_contain_text("missing")
    overview.get_by_text("Values").click()
    expect(overview.get_by_role("link", name="Add value of DATABASE_URL to Staging")).to_be_visible()
    check_page(page, "app-overview-row")
    overview.get_by_role("button", name=re.compile("^Reveal")).click()
    expect(overview.get_by_text("postgres://db.internal/shop", exact=True)).to_be_visible()
    page.get_by_label("Search keys").fill("database")
    expect(page.get_by_role("row").filter(has_text="DATABASE_URL")).to_be_visible()
    page.get_by_label("Search keys").fill("nothing like it")
    expect(page.get_by_role("row").filter(has_text="DATABASE_URL")).to_be_hidden()
    page.get_by_label("Search keys").fill("db.internal")  # a revealed value is searched too
    expect(page.get_by_role("row").filter(has_text="DATABASE_URL")).to_be_visible()

    for secret_text in ("DATABASE_URL", "database_url", "db.internal", "primary", "API_URL"):
        assert not [url for url in urls if secret_text in url], secret_text
        assert secret_text not in server.log_path.read_text()


def test_bulk_edit_refuses_a_page_someone_else_changed(context, page, server):
    sign_in(page)
    make_app(page, "bulk")
    page.get_by_role("link", name="Staging", exact=True).click()
    new_secret(page, "ONE", "1")
    page.get_by_role("button", name="Bulk edit").click()
    check_page(page, "bulk-edit")
    other = context.new_page()
    other.goto(page.url)
    other.get_by_label("Secrets").fill('ONE="from the other tab"\n')
    other.get_by_role("button", name="Save all").click()
    expect(other.get_by_role("status")).to_contain_text("1 updated")
    page.get_by_label("Secrets").fill('ONE="mine"\nTWO="2"\n')
    page.get_by_role("button", name="Save all").click()
    expect(page.get_by_role("alert")).to_contain_text("changed since you opened this page")
    page.get_by_role("link", name="Staging").click()
    expect(row_of(page, "TWO")).to_have_count(0)

    page.get_by_role("button", name="Import .env").click()
    page.get_by_label("Paste a .env file").fill('ONE="from the other tab"\nTHREE=3\n')
    page.get_by_role("button", name="Preview import").click()
    check_page(page, "import-preview")
    preview = page.get_by_role("table", name="What the import would do")
    expect(preview.get_by_role("row", name="THREE created")).to_be_visible()
    expect(preview.get_by_role("row", name="ONE unchanged")).to_be_visible()
    page.get_by_role("button", name="Apply import").click()
    expect(row_of(page, "THREE")).to_be_visible()


@pytest.mark.clients
def test_a_token_minted_in_the_console_works_with_the_phase_cli(page, server, tmp_path):
    sign_in(page)
    make_app(page, "cli-app")
    app_id = urlsplit(page.url).path.rstrip("/").split("/")[-1]
    page.get_by_role("link", name="Production", exact=True).click()
    new_secret(page, "FROM_CONSOLE", "it works")

    page.get_by_role("link", name="Service accounts").click()
    page.get_by_role("button", name="New service account").click()
    page.get_by_label("Name").fill("deployer")
    page.get_by_role("button", name="Create service account").click()
    page.get_by_role("link", name="Done").click()
    page.get_by_role("link", name="Service accounts").click()
    check_page(page, "service-accounts")
    page.get_by_role("link", name="deployer").click()
    page.get_by_role("group", name="cli-app").get_by_label("Production").check()
    page.get_by_role("button", name="Save access").click()
    page.get_by_role("button", name="New token").click()
    page.get_by_label("Name").fill("ci")
    page.get_by_role("button", name=re.compile("^Create")).click()
    shown = page.get_by_role("group", name="New token (shown once)")
    token = shown.get_by_text(re.compile("^pss_service:v2:")).inner_text()
    assert token.startswith("pss_service:v2:")
    check_page(page, "token-created")
    page.get_by_role("link", name="Done").click()
    assert token not in page.content()
    check_page(page, "service-account")

    if not PHASE.exists():
        subprocess.run(["bash", "tests/clients/install.sh"], cwd=REPO, check=True, timeout=900)
    done = subprocess.run(
        [str(PHASE), "secrets", "export", "--format", "json", "--app-id", app_id, "--env",
         "Production"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PHASE_HOST": server.url,
             "PHASE_SERVICE_TOKEN": token, "LANG": "C.UTF-8",
             "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert json.loads(output[output.index("{"):]) == {"FROM_CONSOLE": "it works"}


def test_audit_log_account_and_members_pages(page, server):
    sign_in(page)
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", level=1, name="Audit log")).to_be_visible()
    check_page(page, "audit")
    page.get_by_label("Event").select_option("sign_in")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("cell", name="owner@example.com").first).to_be_visible()
    page.get_by_role("link", name="Account", exact=True).click()
    check_page(page, "account")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_text(re.compile("^pss_user:v1:"))).to_be_visible()
    page.get_by_role("link", name="Members").click()
    check_page(page, "members")
    page.goto("/console/no-such-page")
    expect(page.get_by_role("heading", level=1, name="Not found")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    check_page(page, "not-found")


def test_destructive_actions_ask_first_without_script(browser, server):
    context = browser.new_context(base_url=server.url, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page)
        page.get_by_role("link", name="Account", exact=True).click()
        page.get_by_label("Name").fill("old laptop")
        page.get_by_role("button", name="Create token").click()
        page.get_by_role("link", name="Account", exact=True).click()
        page.get_by_role("button", name="Revoke old laptop").click()
        expect(page.get_by_role("heading", level=1,
                                name="Revoke your token old laptop?")).to_be_visible()
        page.get_by_role("button", name="Revoke token").click()
        expect(page.get_by_role("status")).to_contain_text("Token revoked.")
        expect(page.get_by_role("rowheader", name="old laptop")).to_have_count(0)
    finally:
        context.close()


# -- a Manager and a Developer ---------------------------------------------------------------


def test_a_manager_invites_a_developer_who_chooses_a_password(browser, page, server):
    sign_in(page, "manager@example.com")
    make_app(page, "team-app")
    page.get_by_role("link", name="Members").click()
    page.get_by_label("Email").fill("newdev@example.com")
    page.get_by_label("Role", exact=True).select_option("Developer")
    page.get_by_role("button", name="Invite").click()
    link = page.get_by_role("group", name=re.compile("^Invitation link")).get_by_text(
        re.compile("/console/welcome")).inner_text()
    guest = browser.new_context()
    try:
        visitor = guest.new_page()
        visitor.goto(link)
        visitor.get_by_label("New password").fill("newdev password!")
        visitor.get_by_label("Repeat the password").fill("newdev password!")
        visitor.get_by_role("button", name="Set password").click()
        expect(visitor.get_by_role("heading", level=1, name="Apps")).to_be_visible()
        expect(visitor.get_by_role("link", name="team-app")).to_have_count(0)
        visitor.goto(link)
        expect(visitor.get_by_role("alert")).to_contain_text("invalid, used or expired")
        assert link.split("token=")[1] not in server.log_path.read_text()  # the access log
    finally:
        guest.close()


def test_a_developer_sees_only_granted_environments(page, server):
    services = server.services
    app_row, envs = support.make_app(services, "granted-app")
    app_id = app_row["id"]
    dev = accounts.user_by_email(services, support.operator(services), "dev@example.com")
    support.grant(services, Grantee.of_user(dev), [envs["Development"]])
    sign_in(page, "dev@example.com")
    expect(page.get_by_role("button", name="New app")).to_have_count(0)
    page.get_by_role("link", name="granted-app").click()
    expect(page.get_by_role("link", name="Development", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Production", exact=True)).to_have_count(0)
    check_page(page, "developer-app")
    answer = page.goto(f"/console/apps/{app_id}/environments/{envs['Production']['id']}/")
    assert answer.status == 403
    check_page(page, "developer-refused")
    answer = page.goto("/console/service-accounts/")
    assert answer.status == 403


def test_csrf_refusal_in_the_browser(page, server):
    sign_in(page)
    page.get_by_role("button", name="New app").click()
    page.get_by_label("Name").fill("forged")
    page.locator("#main input[name=csrf_token]").evaluate("input => input.value = 'forged'")
    page.get_by_role("button", name="Create app").click()
    expect(page.get_by_role("alert")).to_contain_text("did not come from this site")
    page.get_by_role("link", name="Apps", exact=True).click()
    expect(page.get_by_role("link", name="forged")).to_have_count(0)


def test_narrow_screens_and_the_keyboard(browser, server):
    narrow = browser.new_context(base_url=server.url, viewport={"width": 375, "height": 740})
    try:
        page = narrow.new_page()
        sign_in(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
    finally:
        narrow.close()
