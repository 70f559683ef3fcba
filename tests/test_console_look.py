"""The console's look in a real browser (the harness of test_console_browser.py, with a server
of its own): no page scrolls sideways at 375 px in either theme and an opened overview row is
on screen; copy buttons put the exact stored text on the clipboard (a multi-line PEM-like
value included); a 1080-px-tall window shows many rows with their actions aligned; the theme
switch is remembered and drawn by the server; without script, nothing that needs it shows.
Every page is checked with axe-core in both themes, at 375 px too."""

import re
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import expect

import support
from phase_lite import secrets as secret_domain
from phase_lite.secrets import NewSecret

sign_in = support.browser_sign_in
check_page = support.check_console_page
row_of = support.browser_row_of

PEM = ("-----BEGIN PRIVATE KEY-----\n"
       "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
       "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
       "-----END PRIVATE KEY-----\n")
WINDOWS_LINES = "first line\r\nsecond line\r\n"  # as a browser's textarea posts them
NARROW = {"width": 375, "height": 740}


@pytest.fixture(scope="module")
def shop(server):
    """An app whose Development holds 60 keys, a multi-line PEM, a value with CRLF line
    breaks and a folder, Staging one key;
    {"app": row, "envs": {name: row}}."""
    services = server.services
    app_row, envs = support.make_app(services, "look-shop")
    by = support.operator(services)
    secret_domain.create_secrets(services, by, envs["Development"], [
        NewSecret(key="TLS_KEY", value=PEM, comment="PEM"),
        NewSecret(key="DB_PASSWORD", value="s3cr3t", path="/backend"),
        NewSecret(key="WINDOWS_LINES", value=WINDOWS_LINES),
    ] + [NewSecret(key=f"SERVICE_{number:02d}_URL", value=f"https://svc{number}.internal",
                   comment="endpoint" if number % 3 == 0 else "",
                   tags=("backend",) if number % 4 == 0 else ())
         for number in range(60)])
    secret_domain.create_secrets(services, by, envs["Staging"], [
        NewSecret(key="TLS_KEY", value="short\nvalue", comment="PEM")])
    return {"app": app_row, "envs": envs}


def overview_url(shop):
    return f"/console/apps/{shop['app']['id']}/"


def env_url(shop, name="Development"):
    return support.console_env_url(shop["app"], shop["envs"][name])


# The outermost elements that reach past the window's right edge (for the message).
WIDEST = """() => Array.from(document.querySelectorAll("body *")).filter(
    e => e.getBoundingClientRect().right > window.innerWidth
      && !(e.parentElement.getBoundingClientRect().right > window.innerWidth)).map(
    e => e.tagName.toLowerCase() + "." + e.className).slice(0, 5)"""


def assert_no_sideways_scroll(page, name):
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        width, inner = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]")
        wide = [] if width <= inner else page.evaluate(WIDEST)
        assert width <= inner, f"{name} ({scheme}) is {width} px wide: {wide}"
    page.emulate_media(color_scheme="light")


def assert_on_screen(page, locator):
    box = locator.bounding_box()
    assert box is not None, locator
    assert box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"], box


# -- narrow screens --------------------------------------------------------------------------


def test_no_page_scrolls_sideways_at_375_px_in_either_theme(browser, server, shop):
    narrow = browser.new_context(base_url=server.url, viewport=NARROW)
    try:
        page = narrow.new_page()
        page.goto("/console/sign-in")
        assert_no_sideways_scroll(page, "sign-in")
        check_page(page, "narrow-sign-in")
        sign_in(page)
        sa, _ = support.make_service_account(server.services, "narrow-ci")
        pages = {
            "apps": "/console/apps/", "overview": overview_url(shop),
            "environment": env_url(shop), "settings": overview_url(shop) + "settings",
            "members": "/console/members/", "service-accounts": "/console/service-accounts/",
            "service-account": f"/console/service-accounts/{sa['id']}/",
            "audit": "/console/audit/", "account": "/console/account/",
            "lockbox": "/console/lockbox/", "lockbox-new": "/console/lockbox/new",
        }
        for name, path in pages.items():
            assert page.goto(path).status == 200, name
            assert_no_sideways_scroll(page, name)
            check_page(page, f"narrow-{name}")

        page.goto(env_url(shop))
        page.get_by_role("button", name="Reveal all values").click()
        expect(row_of(page, "TLS_KEY").locator("code.revealed")).to_be_visible()
        assert_no_sideways_scroll(page, "environment revealed")
        assert_on_screen(page, row_of(page, "TLS_KEY").get_by_role("button", name="Copy TLS_KEY"))
        assert_on_screen(page, row_of(page, "TLS_KEY").get_by_role(
            "button", name="Delete TLS_KEY"))
        check_page(page, "narrow-environment-revealed")

        page.goto(overview_url(shop))
        row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="TLS_KEY"))
        row.get_by_text("Values").click()
        row.get_by_role("button", name=re.compile("^Reveal")).click()
        expect(row.get_by_role("button", name="Copy TLS_KEY in Staging")).to_be_visible()
        assert_no_sideways_scroll(page, "overview opened")
        for name in ("Copy TLS_KEY in Development", "Copy TLS_KEY in Staging"):
            assert_on_screen(page, row.get_by_role("button", name=name))
        for name in ("Edit TLS_KEY in Development", "Delete TLS_KEY from Development",
                     "Add value of TLS_KEY to Production"):
            assert_on_screen(page, row.get_by_role("link", name=name))
        assert_on_screen(page, row.get_by_text("-----END PRIVATE KEY-----").first)
        check_page(page, "narrow-overview-opened")
    finally:
        narrow.close()


# -- copy buttons ----------------------------------------------------------------------------


def clipboard(page):
    return page.evaluate("navigator.clipboard.readText()")


def test_copy_buttons_copy_the_exact_stored_text(browser, server, shop):
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    try:
        context.grant_permissions(["clipboard-read", "clipboard-write"],
                                  origin=server.url)
        page = context.new_page()
        sign_in(page)

        page.goto(env_url(shop))
        row = row_of(page, "TLS_KEY")
        row.get_by_role("button", name=re.compile("^Reveal")).click()  # in place (console.js)
        row.get_by_role("button", name="Copy TLS_KEY").click()
        expect(row.get_by_role("button", name="Copy TLS_KEY")).to_have_text("Copied")
        assert clipboard(page) == PEM
        check_page(page, "copy-revealed")

        page.get_by_role("button", name="Reveal all values").click()  # drawn by the server
        row_of(page, "SERVICE_07_URL").get_by_role("button", name="Copy SERVICE_07_URL").click()
        assert clipboard(page) == "https://svc7.internal"
        row_of(page, "TLS_KEY").get_by_role("button", name="Copy TLS_KEY").click()
        assert clipboard(page) == PEM
        row_of(page, "WINDOWS_LINES").get_by_role("button", name="Copy WINDOWS_LINES").click()
        assert clipboard(page) == WINDOWS_LINES  # the carriage returns too
        row_of(page, "TLS_KEY").get_by_role("link", name="History of TLS_KEY").click()
        page.get_by_role("button", name="Reveal the values of version 1").click()
        page.get_by_role("button", name="Copy the value of version 1").click()
        assert clipboard(page) == PEM
        check_page(page, "copy-history")

        page.goto(overview_url(shop))
        row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="TLS_KEY"))
        row.get_by_text("Values").click()
        row.get_by_role("button", name=re.compile("^Reveal")).click()
        row.get_by_role("button", name="Copy TLS_KEY in Staging").click()
        assert clipboard(page) == "short\nvalue"
        row.get_by_role("button", name="Copy TLS_KEY in Development").click()
        assert clipboard(page) == PEM

        page.goto(overview_url(shop) + "settings")
        page.get_by_role("button", name="Copy app ID").click()
        assert clipboard(page) == shop["app"]["id"]

        page.get_by_role("link", name="Service accounts").click()
        page.get_by_role("button", name="New service account").click()
        page.get_by_label("Name").fill("copy-ci")
        page.get_by_role("button", name="Create service account").click()  # its first token
        token = page.locator("#new-token").inner_text()
        assert token.startswith("pss_service:v")
        page.get_by_role("button", name="Copy", exact=True).click()
        assert clipboard(page) == token
        check_page(page, "copy-token")
        page.get_by_role("link", name="Done").click()
        sa_id = urlsplit(page.url).path.rstrip("/").split("/")[-1]
        page.get_by_role("button", name="Copy service account ID").click()
        assert clipboard(page) == sa_id

        page.get_by_role("link", name="Lockbox", exact=True).click()
        page.get_by_role("button", name="New share").click()
        page.get_by_label("Value").fill(PEM)
        page.get_by_role("button", name="Create link").click()
        link = page.get_by_label("Link", exact=True)
        expect(link).to_have_value(re.compile("#"))
        page.get_by_role("button", name="Copy", exact=True).click()
        assert clipboard(page) == link.input_value()
    finally:
        context.close()


# -- density, alignment, icons ---------------------------------------------------------------


def test_a_1080_px_window_shows_20_rows_with_aligned_actions(browser, server, shop):
    tall = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 1080})
    try:
        page = tall.new_page()
        sign_in(page)
        page.goto(env_url(shop))
        rows = page.locator("table.secrets tbody tr")
        assert rows.count() == 62
        boxes = [rows.nth(number).bounding_box() for number in range(30)]
        shown = [box for box in boxes if box["y"] + box["height"] <= 1080]
        assert len(shown) >= 20, f"{len(shown)} rows on screen"  # 15 before
        assert max(box["height"] for box in boxes) <= 40
        page.get_by_role("button", name="Reveal all values").click()
        boxes = [row_of(page, f"SERVICE_{number:02d}_URL").bounding_box() for number in range(30)]
        assert max(box["height"] for box in boxes) <= 40, "a revealed one-line value"
        lefts = {round(row_of(page, f"SERVICE_{number:02d}_URL").get_by_role(
            "button", name=f"Delete SERVICE_{number:02d}_URL").bounding_box()["x"])
            for number in range(12)}
        assert len(lefts) == 1, lefts  # each row's actions in the same place

        folder = page.get_by_role("link", name="backend", exact=True)
        assert folder.locator("svg use").get_attribute("href") == "#i-folder"
        assert "\U0001f4c1" not in page.content()
        icon = page.locator("link[rel=icon]").get_attribute("href")
        answer = requests.get(server.url + icon, timeout=5)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("image/svg+xml")
        assert answer.text.startswith("<svg")
    finally:
        tall.close()


def test_theme_is_remembered_and_drawn_by_the_server(page, server, shop):
    sign_in(page)
    page.emulate_media(color_scheme="light")
    page.goto(env_url(shop))
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.get_by_role("button", name="Switch to dark theme").click()
    assert page.evaluate("localStorage.getItem('phase_lite_theme')") == "dark"
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light != dark
    answer = page.goto(env_url(shop))
    assert '<html lang="en" data-theme="dark">' in answer.text()  # no flash of light
    check_page(page, "chosen-dark")  # the choice wins over the system's light
    page.get_by_role("button", name="Switch to light theme").click()
    assert page.evaluate("localStorage.getItem('phase_lite_theme')") == "light"


def test_focus_is_visible_on_every_kind_of_control(page, server, shop):
    sign_in(page)
    page.goto(env_url(shop))
    for locator in (page.get_by_role("button", name="New secret"),
                    row_of(page, "TLS_KEY").get_by_role("link", name="Edit TLS_KEY"),
                    row_of(page, "TLS_KEY").get_by_role("button", name="Delete TLS_KEY"),
                    page.get_by_role("link", name="backend", exact=True)):
        locator.focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")  # focused from the keyboard: :focus-visible
        outline = locator.evaluate(
            "e => [getComputedStyle(e).outlineStyle, getComputedStyle(e).outlineWidth]")
        assert outline[0] != "none" and outline[1] != "0px", (locator, outline)


def test_without_script_nothing_that_needs_it_is_shown(browser, server, shop):
    context = browser.new_context(base_url=server.url, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page)
        page.goto(env_url(shop))
        page.get_by_role("button", name="Reveal all values").click()
        expect(row_of(page, "TLS_KEY").get_by_text("-----END PRIVATE KEY-----")).to_be_visible()
        expect(page.get_by_role("button", name=re.compile("^Copy"))).to_have_count(0)
        expect(page.get_by_role("button", name=re.compile("^Switch to"))).to_have_count(0)
        row_of(page, "SERVICE_59_URL").get_by_role("button", name="Delete SERVICE_59_URL").click()
        expect(page.get_by_role("heading", level=1,
                                name="Delete SERVICE_59_URL from Development?")).to_be_visible()
        page.get_by_role("link", name="Cancel").click()
        expect(row_of(page, "SERVICE_59_URL")).to_have_count(1)
        page.goto(overview_url(shop) + "settings")
        expect(page.get_by_role("button", name="Copy app ID")).to_have_count(0)
    finally:
        context.close()


def test_the_confirmation_dialog_from_the_keyboard(page, server, shop):
    sign_in(page)
    page.goto(env_url(shop))
    delete = row_of(page, "SERVICE_58_URL").get_by_role("button", name="Delete SERVICE_58_URL")
    delete.focus()
    page.keyboard.press("Enter")
    asked = page.get_by_role("dialog", name="Delete SERVICE_58_URL?")
    expect(asked).to_be_visible()
    expect(asked.get_by_role("button", name="Cancel")).to_be_focused()  # the safe answer first
    page.keyboard.press("Escape")
    expect(asked).to_be_hidden()
    expect(delete).to_be_focused()  # back where the person was
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(asked.get_by_role("button", name="Delete SERVICE_58_URL")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Secret deleted.")
    expect(row_of(page, "SERVICE_58_URL")).to_have_count(0)


def test_a_lockbox_link_at_375_px_opens_and_copies_its_value(browser, page, server):
    sign_in(page)
    page.get_by_role("link", name="Lockbox", exact=True).click()
    page.get_by_role("button", name="New share").click()
    page.get_by_label("Value").fill(PEM)
    page.get_by_role("button", name="Create link").click()
    link = page.get_by_label("Link", exact=True)
    expect(link).to_have_value(re.compile("#"))
    assert_no_sideways_scroll(page, "share created")
    shared = link.input_value()

    guest = browser.new_context(base_url=server.url, viewport=NARROW)
    try:
        guest.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        visitor = guest.new_page()
        visitor.goto(shared)
        assert_no_sideways_scroll(visitor, "share page")
        check_page(visitor, "narrow-share-page")
        visitor.get_by_role("button", name="Reveal").click()
        expect(visitor.get_by_label("Value")).to_have_value(PEM)
        assert_no_sideways_scroll(visitor, "share revealed")
        copy = visitor.get_by_role("button", name="Copy", exact=True)
        assert_on_screen(visitor, copy)
        copy.click()
        assert clipboard(visitor) == PEM
        check_page(visitor, "narrow-share-revealed")
    finally:
        guest.close()
