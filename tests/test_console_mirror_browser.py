"""A mirrored app in a real browser (the harness of test_console_browser.py, with a server of
its own and a second phase_lite server as the source): the app's page shows its source host,
last sync and, to those who may update apps, a "Sync now" button that pulls a change made at
the source; a Developer sees the source but neither the button nor the POST; the console's
write controls on a mirrored app are refused with the message naming the source, and nothing
changes. Every page is checked with axe-core in both themes."""

import pytest
from playwright.sync_api import expect

import support
from phase_lite import accounts, mirror
from phase_lite.accounts import Grantee
from phase_lite.secrets import NewSecret
from phase_lite.store import apps as app_store
from phase_source import PhaseSource

sign_in = support.browser_sign_in
check_page = support.check_console_page


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    made = PhaseSource(tmp_path_factory.mktemp("mirror-source"))
    support.make_app(made.services, "upstream", ["Development", "Production"])
    made.create("upstream", "Development", NewSecret(key="DB_HOST", value="db.upstream"))
    made.server.start()
    yield made
    made.close()


@pytest.fixture(scope="module")
def mirrored(server, source):
    """The server's copy of ``upstream`` (synced once), its Developer granted it."""
    services = server.services
    by = support.operator(services)
    added = mirror.add_source(services, by, host=source.server.url,
                              token_text=source.owner.token, name="upstream")
    mirror.sync_source(services, added)
    app_row = app_store.find_apps_by_name(services.db, by.organisation_id, "upstream")[0]
    dev = accounts.user_by_email(services, by, "dev@example.com")
    support.grant(services, Grantee.of_user(dev),
                  app_store.list_environments(services.db, app_row["id"]))
    return app_row


def local_keys(server, app_row, env_name="Development"):
    from phase_lite import secrets

    env = app_store.find_environment(server.services.db, app_row["id"], env_name)
    return {secret.key for secret in secrets.list_secrets(server.services, None, env)}


def test_the_owner_sees_the_source_and_syncs_now(page, server, source, mirrored):
    sign_in(page)
    page.get_by_role("link", name="upstream", exact=True).click()
    section = page.get_by_role("region", name="Mirror")
    expect(section).to_contain_text(f"This app is mirrored from {source.server.url} "
                                    "(mirror upstream): it is read-only here; change it there.")
    expect(section).to_contain_text("Last sync")
    check_page(page, "mirror-app")
    source.create("upstream", "Development", NewSecret(key="FROM_SOURCE", value="fresh"))
    assert "FROM_SOURCE" not in local_keys(server, mirrored)
    section.get_by_role("button", name="Sync now").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Synced from the source: 1 created, 0 updated, 0 deleted.")
    expect(support.browser_row_of(page, "FROM_SOURCE")).to_be_visible()
    assert "FROM_SOURCE" in local_keys(server, mirrored)
    # A second click with nothing changed at the source changes nothing.
    page.get_by_role("region", name="Mirror").get_by_role("button", name="Sync now").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Synced from the source: 0 created, 0 updated, 0 deleted.")


def test_console_writes_to_a_mirrored_app_are_refused_naming_the_source(page, server, source,
                                                                       mirrored):
    refusal = f"this app is mirrored from {source.server.url}; change it there"
    before = local_keys(server, mirrored)
    sign_in(page)
    env = app_store.find_environment(server.services.db, mirrored["id"], "Development")
    page.goto(support.console_env_url(mirrored, env))
    page.get_by_role("button", name="New secret").click()
    page.get_by_label("Key").fill("LOCAL_ONLY")
    page.get_by_label("Value").fill("nope")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text(refusal)).to_be_visible()
    check_page(page, "mirror-refused")
    page.goto(f"/console/apps/{mirrored['id']}/")
    page.get_by_role("button", name="New environment").click()
    page.get_by_label("Name").fill("qa")
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.get_by_text(refusal)).to_be_visible()
    page.goto(f"/console/apps/{mirrored['id']}/settings")
    page.get_by_label("Name").fill("renamed-here")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text(refusal)).to_be_visible()
    assert local_keys(server, mirrored) == before
    assert [e["name"] for e in app_store.list_environments(server.services.db,
                                                           mirrored["id"])] == \
        ["Development", "Production"]
    assert app_store.get_app(server.services.db, mirrored["organisation_id"],
                             mirrored["id"])["name"] == "upstream"


def test_a_developer_sees_the_source_but_cannot_sync(page, server, source, mirrored):
    sign_in(page, "dev@example.com")
    page.get_by_role("link", name="upstream", exact=True).click()
    section = page.get_by_role("region", name="Mirror")
    expect(section).to_contain_text(f"This app is mirrored from {source.server.url}")
    expect(page.get_by_role("button", name="Sync now")).to_have_count(0)
    check_page(page, "developer-mirror-app")
    source.create("upstream", "Production", NewSecret(key="NOT_PULLED", value="1"))
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = page.request.post(f"/console/apps/{mirrored['id']}/mirror/sync",
                                form={"csrf_token": token})
    assert refused.status == 403
    assert "NOT_PULLED" not in local_keys(server, mirrored, "Production")
