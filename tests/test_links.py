"""Every link phase_lite prints or shows is one a user can open: PHASE_LITE_PUBLIC_URL when it
is set; else the request's trusted scheme and host (console, API); else the listen address
(admin command, banner)."""

import base64
import re

import pytest

import support
from live import LiveServer, free_port
from phase_lite import links
from phase_lite.config import ConfigError, load_config

pytestmark = pytest.mark.both_backends

PUBLIC = "https://secrets.example.com"
PROXY = {"REMOTE_ADDR": "127.0.0.1"}
HTTPS_PROXY = {"X-Forwarded-Proto": "https", "Host": "vault.example.org"}
INVITE = re.compile(r">(https?://[^<]+/console/welcome\?token=[^<]+)</code>")


def signed_in(flask_app, **request):
    """A console test client of ``flask_app`` signed in as the Owner (``.csrf`` set)."""
    services = flask_app.extensions["phase_lite"]
    support.set_console_password(services, "owner@example.com", support.CONSOLE_PASSWORD)
    browser = flask_app.test_client()
    assert support.console_sign_in(browser, **request).status_code == 303
    browser.csrf = support.csrf_of(browser.get("/console/apps/", **request))
    return browser


def invite_link(browser, email="new@example.com", **request):
    services = browser.application.extensions["phase_lite"]
    answer = browser.post("/console/members/invite", data={
        "email": email, "role_id": support.role_id(services, "Developer"),
        "csrf_token": browser.csrf}, **request)
    assert answer.status_code == 200
    return INVITE.search(answer.get_data(as_text=True)).group(1)


# -- the console and the API: the request's trusted scheme and host, or the public URL --------


def test_an_invitation_behind_the_trusted_proxy_follows_its_scheme_and_host(app_with):
    proxied = signed_in(app_with(trusted_proxies=("127.0.0.1",)), environ_base=PROXY,
                        headers=HTTPS_PROXY)
    link = invite_link(proxied, environ_base=PROXY, headers=HTTPS_PROXY)
    assert link.startswith("https://vault.example.org/console/welcome?token=")
    # The same header from a peer that is no trusted proxy is not believed.
    direct = signed_in(app_with(), headers={"X-Forwarded-Proto": "https"})
    assert invite_link(direct, "other@example.com", headers={"X-Forwarded-Proto": "https"}
                       ).startswith("http://localhost/console/welcome?token=")


def test_an_invitation_uses_the_public_url(app_with):
    browser = signed_in(app_with(public_url=PUBLIC + "/vault"), headers={"Host": "10.0.0.7"})
    link = invite_link(browser, headers={"Host": "10.0.0.7"})
    assert link.startswith(PUBLIC + "/vault/console/welcome?token=")


@pytest.mark.parametrize("public_url, request_headers, expected", [
    (None, {}, "http://localhost/lockbox/"),
    (None, HTTPS_PROXY, "https://vault.example.org/lockbox/"),
    (PUBLIC, HTTPS_PROXY, PUBLIC + "/lockbox/"),
])
def test_a_lockbox_link_from_the_api_and_the_console(app_with, public_url, request_headers,
                                                     expected, owner_headers):
    flask_app = app_with(public_url=public_url, trusted_proxies=("127.0.0.1",))
    made = flask_app.test_client().post(
        "/v1/lockbox/", json={"ciphertext": support.lockbox_seal()[0]},
        headers={**owner_headers, **request_headers}, environ_base=PROXY)
    assert made.status_code == 201
    assert made.json["url"] == expected + support.lockbox_link_id(made)
    assert made.json["link"] == made.json["url"].removeprefix(expected[:-len("/lockbox/")])
    browser = signed_in(flask_app, environ_base=PROXY, headers=request_headers)
    shown = browser.post("/console/lockbox/new", data={
        "ciphertext": support.lockbox_seal()[0], "expires_in": "3600", "views": "1",
        "csrf_token": browser.csrf}, environ_base=PROXY,
        headers={**request_headers, "Accept": "application/json"})
    assert shown.status_code == 200, shown.get_data(as_text=True)
    assert shown.json["url"] == expected + shown.json["link"].rsplit("/", 1)[1]


# -- the admin command: the public URL, else the listen address --------------------------------


@pytest.mark.sqlite_only  # a fresh data directory of its own
def test_setup_links_printed_by_init_and_users_use_the_public_url(tmp_path):
    from click.testing import CliRunner

    from phase_lite.cli import main

    fresh = tmp_path / "fresh"
    env = {"PHASE_LITE_DATA_DIR": str(fresh), "PHASE_LITE_PUBLIC_URL": PUBLIC + "/"}
    result = CliRunner().invoke(main, ["init"], env=env)
    assert result.exit_code == 0, result.output
    assert f"    {PUBLIC}/console/welcome?token=" in result.output
    assert f"export PHASE_HOST={PUBLIC}\n" in result.output
    again = CliRunner().invoke(main, ["users", "setup-link", "owner@localhost"], env=env)
    assert again.output.startswith(f"{PUBLIC}/console/welcome?token=")
    plain = CliRunner().invoke(main, ["users", "setup-link", "owner@localhost"], env={
        "PHASE_LITE_DATA_DIR": str(fresh), "PHASE_LITE_LISTEN": "0.0.0.0:9123"})
    assert plain.output.startswith("http://localhost:9123/console/welcome?token=")


@pytest.mark.parametrize("listen, expected", [
    ("127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("0.0.0.0:8080", "http://localhost:8080"),
    ("[::]:8080", "http://localhost:8080"),
    ("[::1]:8080", "http://[::1]:8080"),
])
def test_without_a_public_url_printed_links_follow_the_listen_address(listen, expected):
    config = load_config({"PHASE_LITE_LISTEN": listen})
    assert links.link(config, "/console/") == expected + "/console/"


@pytest.mark.parametrize("value", [
    "secrets.example.com", "ftp://secrets.example.com", "https://", "https:///path",
    "https://secrets.example.com/?a=1", "https://secrets.example.com/#top",
    "https://user:pw@secrets.example.com", "https://secrets.example.com:99999",
])
def test_a_bad_public_url_is_refused_naming_the_setting(value):
    with pytest.raises(ConfigError, match="^PHASE_LITE_PUBLIC_URL: "):
        load_config({"PHASE_LITE_PUBLIC_URL": value})


def test_a_public_url_is_kept_without_its_trailing_slash():
    assert load_config({"PHASE_LITE_PUBLIC_URL": "https://a.example/x/"}).public_url == \
        "https://a.example/x"


# -- the serve banner and the all-interfaces warning ------------------------------------------


@pytest.mark.sqlite_only  # a server process
def test_the_banner_names_the_public_url(config, owner):
    server = LiveServer(config.data_dir, {"PHASE_LITE_PUBLIC_URL": PUBLIC})
    server.start()
    server.stop()
    log = server.log_path.read_text()
    assert f"export PHASE_HOST={PUBLIC}\n" in log
    assert f"REST API:        {PUBLIC}/service/public/v1/secrets/" in log
    assert "over plain HTTP" not in log


@pytest.mark.sqlite_only  # a server process
def test_all_interfaces_over_plain_http_is_one_warning_line(config, owner):
    port = free_port()
    server = LiveServer(config.data_dir, {"PHASE_LITE_LISTEN": f"0.0.0.0:{port}"})
    server.url = f"http://127.0.0.1:{port}"
    server.start()
    server.stop()
    log = server.log_path.read_text()
    warnings = [line for line in log.splitlines() if "over plain HTTP" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], log
    assert f"0.0.0.0:{port}" in warnings[0] and "PHASE_LITE_PUBLIC_URL" in warnings[0]
    assert f"export PHASE_HOST=http://localhost:{port}\n" in log


def test_the_cli_sign_in_page_names_the_public_url_as_the_host_to_give(app_with):
    # `phase auth` only accepts an answer from the origin it was given as PHASE_HOST.
    data = base64.b64encode(f"17001-{'ab' * 32}-alice@laptop".encode()).decode()
    browser = signed_in(app_with(public_url=PUBLIC + "/vault"), headers={"Host": "10.0.0.7"})
    page = browser.get("/webauth/" + data, headers={"Host": "10.0.0.7"}).get_data(as_text=True)
    assert f"must be exactly <code>{PUBLIC}</code>" in page
    direct = signed_in(app_with())
    assert "must be exactly <code>http://localhost</code>" in direct.get(
        "/webauth/" + data).get_data(as_text=True)
