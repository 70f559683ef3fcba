"""The web console in a real browser: Debian's Chromium driven by Playwright against a live
``phase-lite serve``, selecting only by the accessible names the issue promises.

One server for the module; each test signs in in its own browser context. Every page visited
is checked with axe-core in the light and the dark theme (no serious or critical violation)
and photographed under ``.screenshots/`` (git-ignored) for review.
"""

import base64
import hashlib
import json
import re
import subprocess
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import nacl.bindings
import pytest
import requests
from playwright.sync_api import expect

import support
from live import REPO
from phase_lite import accounts
from phase_lite.accounts import Grantee

PHASE = REPO / ".clients" / "phase-cli" / "bin" / "phase"
PASSWORD = support.BROWSER_PASSWORD
sign_in = support.browser_sign_in
check_page = support.check_console_page
make_app = support.browser_make_app
new_secret = support.browser_new_secret
row_of = support.browser_row_of
confirm = support.browser_confirm


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

    row_of(page, "API_URL").get_by_role("button", name=re.compile("^Delete")).click()
    asked = page.get_by_role("dialog", name="Delete API_URL?")
    expect(asked).to_be_visible()
    check_page(page, "confirm-dialog")
    asked.get_by_role("button", name="Cancel").click()
    expect(asked).to_be_hidden()
    expect(row_of(page, "API_URL")).to_have_count(1)
    row_of(page, "API_URL").get_by_role("button", name=re.compile("^Delete")).click()
    confirm(page, "Delete API_URL?", "Delete API_URL")
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
    other.get_by_role("button", name="Preview changes").click()
    other.get_by_role("button", name="Save all").click()
    expect(other.get_by_role("status")).to_contain_text("1 updated")
    page.get_by_label("Secrets").fill('ONE="mine"\nTWO="2"\n')
    page.get_by_role("button", name="Preview changes").click()
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


# -- Lockbox ---------------------------------------------------------------------------------

SHARED_VALUE = "correct-horse-battery-staple \u00e9 42"


def capture_requests(page, seen):
    """Record (url, headers, body) of every request the page sends."""
    page.on("request", lambda request: seen.append(
        (request.url, request.headers, request.post_data_buffer or b"")))


def server_files(server):
    """The bytes of the server's database files and its log (the access log included)."""
    folder = Path(server.config.data_dir)
    found = b"".join(path.read_bytes() for path in folder.iterdir() if path.is_file())
    return found + server.log_path.read_bytes()


def test_a_share_made_in_the_browser_opens_once_elsewhere_without_a_session(
        browser, page, server):
    sign_in(page, "manager@example.com")  # (the Owner's sign-ins are near their throttle)
    make_app(page, "share-app")
    page.get_by_role("link", name="Development", exact=True).click()
    new_secret(page, "SHARED_KEY", SHARED_VALUE)
    seen = []
    capture_requests(page, seen)
    row_of(page, "SHARED_KEY").get_by_role("link", name=re.compile("^Share")).click()
    expect(page.get_by_label("Value")).to_have_value(SHARED_VALUE)
    check_page(page, "share-form")
    page.get_by_label("Expires").select_option("7 days")
    expect(page.get_by_label("Views")).to_have_value("1")
    page.get_by_role("button", name="Create link").click()
    expect(page.get_by_label("Link")).to_have_value(re.compile(r"/lockbox/[\w-]{43}#[\w-]{43}$"))
    check_page(page, "share-created")
    link = page.get_by_label("Link").input_value()
    link_id, key = urlsplit(link).path.rsplit("/", 1)[1], urlsplit(link).fragment
    # What the browser stored opens with libsodium's XChaCha20-Poly1305 and the link's key,
    # as the format in phase_lite/lockbox.py says (no view is counted by reading the row).
    [stored] = server.services.db.one(
        "SELECT ciphertext FROM lockbox_shares WHERE link_hash = ?",
        (hashlib.sha256(link_id.encode()).hexdigest(),))
    stored = bytes(stored)
    assert nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        stored[24:], b"phase_lite/lockbox/v1", stored[:24],
        base64.urlsafe_b64decode(key + "=")).decode() == SHARED_VALUE

    guest = browser.new_context(base_url=server.url)
    try:
        assert not [c for c in guest.cookies() if c["name"] == "phase_lite_session"]
        visitor = guest.new_page()
        capture_requests(visitor, seen)
        assert visitor.goto(link).status == 200
        for _ in range(2):  # a chat app's link previews, then a reload: no view is counted
            assert requests.get(link.split("#")[0], timeout=10).status_code == 200
        assert visitor.reload().status == 200
        expect(visitor.get_by_role("heading", level=1)).to_have_text("A value shared with you")
        expect(visitor.get_by_role("button", name="Reveal")).to_be_visible()
        assert SHARED_VALUE not in visitor.content()
        expect(visitor.get_by_text(SHARED_VALUE)).to_have_count(0)
        check_page(visitor, "share-page")
        visitor.get_by_role("button", name="Reveal").click()
        expect(visitor.get_by_label("Value")).to_have_value(SHARED_VALUE)
        expect(visitor.get_by_text(SHARED_VALUE)).to_be_visible()
        assert "#" not in visitor.url  # the key left the address bar once used
        check_page(visitor, "share-revealed")
        visitor = guest.new_page()
        capture_requests(visitor, seen)
        answer = visitor.goto(link)  # the next visit: a one-view share is gone
        assert answer.status == 404
        expect(visitor.get_by_role("heading", level=1)).to_have_text("This share is gone")
        expect(visitor.get_by_role("button", name="Reveal")).to_have_count(0)
        check_page(visitor, "share-gone")
    finally:
        guest.close()

    page.get_by_role("link", name="Lockbox", exact=True).click()
    expect(page.get_by_role("cell", name="gone: viewed")).to_have_count(1)
    check_page(page, "shares")

    raw_key = base64.urlsafe_b64decode(key + "=")
    stored = server_files(server)
    for secret in (key.encode(), raw_key, link_id.encode()):
        assert secret not in stored
    assert SHARED_VALUE.encode() not in stored  # the secret itself is encrypted at rest too
    posted = [(url, headers, body) for url, headers, body in seen if body]
    assert posted, "the flow posts the ciphertext and the reveal"
    for url, headers, body in seen:
        for secret in (SHARED_VALUE, key):
            assert secret.encode() not in body, url
            assert secret not in url.split("#")[0], url
            assert not [name for name, value in headers.items() if secret in value], url
    assert "/lockbox/{id}" in server.log_path.read_text()


def test_an_expired_share_is_gone_and_a_revoked_one_too(browser, page, server):
    sign_in(page, "dev@example.com")  # any member may share a value of their own
    page.get_by_role("link", name="Lockbox", exact=True).click()
    page.get_by_role("button", name="New share").click()
    page.get_by_label("Value").fill("temporary")
    page.get_by_label("Expires").select_option("Custom")
    later = page.evaluate("""() => {
        const at = new Date(Date.now() + 2 * 3600 * 1000 - new Date().getTimezoneOffset() * 60000);
        return at.toISOString().slice(0, 16); }""")
    page.get_by_label("Custom time").fill(later)
    page.get_by_label("Views").fill("3")
    page.get_by_role("button", name="Create link").click()
    expect(page.get_by_label("Link")).to_have_value(re.compile("#"))
    expired_link = page.get_by_label("Link").input_value()
    db = server.services.db
    newest = db.one("SELECT id, created_at, expires_at FROM lockbox_shares"
                    " ORDER BY created_at DESC LIMIT 1")
    span = (datetime.fromisoformat(newest["expires_at"][:19])
            - datetime.fromisoformat(newest["created_at"][:19])).total_seconds()
    assert 2 * 3600 - 120 < span < 2 * 3600 + 60  # the custom time, as the browser chose it
    with db.transaction():  # the clock moves on: the share's expiry has passed
        db.execute("UPDATE lockbox_shares SET expires_at = '2000-01-01T00:00:00.000000Z'"
                   " WHERE id = ?", (newest["id"],))

    page.get_by_role("link", name="Lockbox", exact=True).click()
    page.get_by_role("button", name="New share").click()
    page.get_by_label("Value").fill("revoke me")
    page.get_by_label("Expires").select_option("1 day")
    page.get_by_role("button", name="Create link").click()
    expect(page.get_by_label("Link")).to_have_value(re.compile("#"))
    revoked_link = page.get_by_label("Link").input_value()
    page.get_by_role("link", name="Lockbox", exact=True).click()
    expect(page.get_by_role("cell", name="gone: expired").first).to_be_visible()
    page.get_by_role("button", name=re.compile("^Revoke share")).first.click()
    page.get_by_role("dialog").get_by_role("button", name=re.compile("^Revoke share")).click()
    expect(page.get_by_role("status")).to_contain_text("Share revoked")

    guest = browser.new_context(base_url=server.url)
    try:
        for link in (expired_link, revoked_link):
            answer = guest.new_page().goto(link)
            assert answer.status == 404
            assert "This share is gone" in answer.text()
    finally:
        guest.close()
