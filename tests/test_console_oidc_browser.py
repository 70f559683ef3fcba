"""Console sign-in through an OpenID provider in a real browser: Debian's Chromium (Playwright)
against live ``phase-lite serve`` processes and a real OpenID provider (``oidc-provider``,
see ``openid_provider``), selecting by accessible names. The protocol's refusals (state,
code, nonce, audience, expiry) are driven over HTTP in ``test_console_oidc``."""

import pytest
from playwright.sync_api import expect

import support
from live import LiveServer
from openid_provider import OpenIDTestProvider
from phase_lite.app import init_data_dir, open_services
from phase_lite.config import load_config
from phase_lite.store import accounts as account_store

check_page = support.check_console_page


def served(tmp_path_factory, name):
    data_dir = tmp_path_factory.mktemp(name) / "data"
    config = load_config({"PHASE_LITE_DATA_DIR": str(data_dir)})
    init_data_dir(config, "owner@example.com")
    services = open_services(config)
    support.make_user(services, "dev@example.com", "Developer")
    support.set_console_password(services, "owner@example.com", support.BROWSER_PASSWORD)
    return data_dir, services


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two servers signing in through one provider: ``joining`` (passwords on, auto-join as
    Developer for team.example) and ``oidc_only`` (password sign-in off)."""
    joining_dir, joining_services = served(tmp_path_factory, "oidc-joining")
    only_dir, only_services = served(tmp_path_factory, "oidc-only")
    joining, oidc_only = LiveServer(joining_dir), LiveServer(only_dir)
    provider = OpenIDTestProvider(tmp_path_factory.mktemp("oidc-provider"), callbacks=[
        f"{s.url}/console/oidc/callback" for s in (joining, oidc_only)]).start()
    joining.env.update(provider.settings_env(
        PHASE_LITE_OIDC_NAME="Team SSO", PHASE_LITE_OIDC_AUTO_JOIN_ROLE="Developer",
        PHASE_LITE_OIDC_AUTO_JOIN_DOMAINS="team.example"))
    oidc_only.env.update(provider.settings_env(PHASE_LITE_PASSWORD_SIGN_IN="off"))
    joining.services, oidc_only.services = joining_services, only_services
    try:
        joining.start()
        oidc_only.start()
        yield {"joining": joining, "oidc_only": oidc_only}
    finally:
        for server in (joining, oidc_only):
            server.stop()
            server.services.close()
        provider.stop()


@pytest.fixture
def server(servers):  # the conftest's context opens pages on this server
    return servers["joining"]


def at_the_provider(page, login):
    """Sign in at the provider's own login form, then allow the console."""
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()


def test_a_member_signs_in_with_the_provider_and_lands_on_apps(page, server):
    page.goto("/console/sign-in")
    check_page(page, "sign-in-oidc")
    expect(page.get_by_label("Password")).to_be_visible()
    page.get_by_role("link", name="Sign in with Team SSO").click()
    at_the_provider(page, "dev")
    expect(page.get_by_role("heading", level=1, name="Apps")).to_be_visible()
    assert page.url == server.url + "/console/apps/"
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in with Team SSO")).to_be_visible()


def test_an_unknown_email_is_refused(page, server):
    users = server.services.db.scalar("SELECT count(*) FROM users")
    page.goto("/console/sign-in")
    page.get_by_role("link", name="Sign in with Team SSO").click()
    at_the_provider(page, "stranger")
    expect(page.get_by_role("heading", level=1, name="Sign-in refused")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text(
        "stranger@elsewhere.example is not a member of this organisation, and its domain may "
        "not join by itself.")
    check_page(page, "oidc-refused")
    assert server.services.db.scalar("SELECT count(*) FROM users") == users
    page.get_by_role("link", name="Back to sign-in").click()
    expect(page.get_by_role("link", name="Sign in with Team SSO")).to_be_visible()


def test_auto_join_gives_the_default_role(page, server):
    page.goto("/console/sign-in")
    page.get_by_role("link", name="Sign in with Team SSO").click()
    at_the_provider(page, "joiner")
    expect(page.get_by_role("heading", level=1, name="Apps")).to_be_visible()
    services = server.services
    user = account_store.get_user_by_email(services.db, support.organisation_id(services),
                                           "joiner@team.example")
    role = account_store.get_role(services.db, user["organisation_id"], user["role_id"])
    assert role["name"] == "Developer"
    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", level=1, name="Members")).to_be_visible()


def test_password_sign_in_off_hides_the_form(browser, servers):
    oidc_only = servers["oidc_only"]
    context = browser.new_context(base_url=oidc_only.url)
    try:
        page = context.new_page()
        page.goto("/console/sign-in")
        expect(page.get_by_role("link", name="Sign in with 127.0.0.1")).to_be_visible()
        expect(page.get_by_label("Password")).to_have_count(0)
        expect(page.get_by_role("button", name="Sign in")).to_have_count(0)
        check_page(page, "sign-in-oidc-only")
        page.get_by_role("link", name="Sign in with 127.0.0.1").click()
        at_the_provider(page, "owner")
        expect(page.get_by_role("heading", level=1, name="Apps")).to_be_visible()
    finally:
        context.close()
