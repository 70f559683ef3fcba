"""``phase auth`` as a new user runs it: the real Phase CLI (phase-cli 1.21.3, default mode)
against a live server, its ``BROWSER`` a script that opens the link in Debian's Chromium with a
signed-in session and presses Authorise (tests/clients/webauth_browser.py); then the stored
credentials serve ``phase secrets`` and ``phase run``. Also, in the browser: Cancel and a
tampered link mint nothing, a second use of a link asks again, and the crypto is Phase's (the
CLI's own ``CryptoUtils`` opens what the server encrypted)."""

import base64
import json
import os
import platform
import pwd
import shlex
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from playwright.sync_api import expect

import support
from live import CHROMIUM, REPO
from phase_lite import accounts, webauth
from phase_lite.console import sessions
from phase_lite.store import accounts as account_store

pytestmark = pytest.mark.clients

PHASE = support.PHASE
CLI_PYTHON = PHASE.parent / "python"
BROWSER_SCRIPT = REPO / "tests" / "clients" / "webauth_browser.py"
TIMEOUT = 90


@pytest.fixture(scope="module", autouse=True)
def clients(installed_clients):
    """The real CLI, installed on first use."""


def owner_of(server):
    return accounts.user_by_email(server.services, support.operator(server.services),
                                  "owner@example.com")


def live_tokens(server, name):
    rows = account_store.list_tokens(server.services.db, user_id=owner_of(server)["id"])
    return [row for row in rows if row["name"] == name]


def session_cookie(server):
    """A signed-in console session of the Owner (the cookie's value)."""
    settings = sessions.SessionSettings(idle=timedelta(hours=1), absolute=timedelta(hours=1))
    return sessions.open_session(server.services.db, settings, owner_of(server)["id"],
                                 support.TEST_META)


def cli_env(home, **extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "COLUMNS": "250",
           "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    env.update(extra)
    return env


def phase(home, *args, env=None, stdin=""):
    """Run the real ``phase``; return (exit code, stdout + stderr). A CLI still waiting after
    TIMEOUT is ended with what it started (its browser): the whole process group."""
    process = subprocess.Popen([str(PHASE), *args], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=cli_env(home, **(env or {})), cwd=home,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(stdin, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return process.returncode, stdout + stderr


def browser_command(tmp_path, cookie):
    """An executable for the CLI's ``BROWSER`` (one path: Python's webbrowser runs it with
    the link as its only argument, and waits for it)."""
    (tmp_path / "cookie").write_text(cookie)
    wrapper = tmp_path / "browser"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(str(part)) for part in (
        sys.executable, BROWSER_SCRIPT, CHROMIUM, tmp_path / "cookie",
        tmp_path / "result")) + ' "$@"\n')
    wrapper.chmod(0o700)
    return str(wrapper)


def cli_link_data(name):
    """A link as the CLI makes it, with the CLI's own key pair (and that key's private half)."""
    code = ("from phase_cli.utils.crypto import CryptoUtils; import json; pk, sk = "
            "CryptoUtils.random_key_pair(); print(json.dumps([pk.hex(), sk.hex()]))")
    public, private = json.loads(subprocess.run([str(CLI_PYTHON), "-c", code], check=True,
                                                capture_output=True, text=True).stdout)
    data = base64.b64encode(f"15999-{public}-{name}".encode()).decode()
    return data, public, private


def cli_decrypts(pairs):
    """[(ciphertext, private hex, public hex)] opened by the CLI's CryptoUtils."""
    code = textwrap.dedent("""
        import json, sys
        from phase_cli.utils.crypto import CryptoUtils
        print(json.dumps([CryptoUtils.decrypt_asymmetric(*args)
                          for args in json.load(sys.stdin)]))
    """)
    done = subprocess.run([str(CLI_PYTHON), "-c", code], input=json.dumps(pairs), check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


# -- the whole journey -----------------------------------------------------------------------


def test_phase_auth_through_the_console_then_secrets_and_run(server, tmp_path, page,
                                                             context):
    app_row, _ = support.make_app(server.services, "webauth-journey")
    home = tmp_path / "home"
    home.mkdir()
    # The CLI names the token user@hostname (its environment has no USER: the account's name).
    token_name = f"{pwd.getpwuid(os.getuid()).pw_name}@{platform.node()}"
    code, output = phase(home, "auth", env={
        "PHASE_HOST": server.url, "BROWSER": browser_command(tmp_path, session_cookie(server))})
    assert code == 0, output
    assert "Authentication successful" in output, output
    heading, opened = (tmp_path / "result").read_text().splitlines()
    assert f"Please authenticate via the Phase Console: {opened}" in output
    assert heading == "The Phase CLI is signed in"
    assert webauth.parse_request(opened.split("/webauth/", 1)[1]).name == token_name
    [made] = live_tokens(server, token_name)
    assert made["expires_at"] is None

    config = json.loads((home / ".phase" / "secrets" / "config.json").read_text())
    [user] = config["phase-users"]
    assert (user["host"], user["email"], user["id"]) == (
        server.url, "owner@example.com", owner_of(server)["id"])
    assert user["token"].split(":")[2] and support.TOKEN_PATTERN.fullmatch(user["token"])

    app_args = ["--app-id", app_row["id"], "--env", "Development"]
    code, output = phase(home, "secrets", "create", "GREETING", *app_args, stdin="hello\n")
    assert code == 0, output
    code, output = phase(home, "secrets", "list", "--show", *app_args)
    assert code == 0 and "GREETING" in output and "hello" in output, output
    code, output = phase(home, "run", *app_args, "printenv GREETING")
    assert code == 0 and "hello" in output.splitlines(), output

    # The same link again: the page asks again, and the CLI is gone, so what is made then is
    # revoked at once.
    context.add_cookies([{"name": "phase_lite_session", "value": session_cookie(server),
                          "url": server.url + "/"}])
    page.goto(opened)
    expect(page.get_by_role("heading", level=1, name=f"Authorise the Phase CLI on "
                                                     f"{token_name}")).to_be_visible()
    expect(page.get_by_text("You already have 1 live token named")).to_be_visible()
    assert len(live_tokens(server, token_name)) == 1
    support.check_console_page(page, "webauth")
    page.get_by_role("button", name="Authorise").click()
    expect(page.get_by_role("heading", level=2, name="The CLI did not answer")).to_be_visible(
        timeout=30_000)
    expect(page.get_by_role("alert")).to_contain_text("was revoked")
    support.check_console_page(page, "webauth-no-answer")
    assert [row["id"] for row in live_tokens(server, token_name)] == [made["id"]]
    code, output = phase(home, "secrets", "list", *app_args)
    assert code == 0 and "GREETING" in output, output  # the CLI's own token still works


def signed_in(server, context):
    context.add_cookies([{"name": "phase_lite_session", "value": session_cookie(server),
                          "url": server.url + "/"}])


def test_cancel_mints_nothing(server, page, context):
    signed_in(server, context)
    data, _, _ = cli_link_data("cancel@host")
    page.goto(f"/webauth/{data}")
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("heading", level=1, name="Phase CLI not authorised")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Nothing was created.")
    support.check_console_page(page, "webauth-cancelled")
    assert live_tokens(server, "cancel@host") == []


@pytest.mark.parametrize("tamper", [
    lambda data: data[:-6],  # cut short, as a wrapped terminal line
    lambda data: base64.b64encode(base64.b64decode(data).replace(b"15999-", b"99999-")).decode(),
    lambda data: base64.b64encode(base64.b64decode(data).replace(b"-tamper@", b"-\x07@")).decode(),
], ids=["cut", "port", "control-character"])
def test_a_tampered_link_mints_nothing(server, page, context, tamper):
    signed_in(server, context)
    data, _, _ = cli_link_data("tamper@host")
    page.goto(f"/webauth/{tamper(data)}")
    expect(page.get_by_role("heading", level=1,
                            name="This Phase CLI link does not work")).to_be_visible()
    expect(page.get_by_role("button", name="Authorise")).to_have_count(0)
    support.check_console_page(page, "webauth-invalid")
    assert [row for row in account_store.list_tokens(
        server.services.db, user_id=owner_of(server)["id"]) if "@host" in row["name"]
        and "tamper" in row["name"]] == []


def test_a_sign_in_comes_back_to_the_link(server, page):
    data, _, _ = cli_link_data("return@host")
    page.goto(f"/webauth/{data}")
    page.get_by_label("Email").fill("owner@example.com")
    page.get_by_label("Password").fill(support.BROWSER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1,
                            name="Authorise the Phase CLI on return@host")).to_be_visible()
    assert live_tokens(server, "return@host") == []


# -- the crypto, as the CLI reads it ---------------------------------------------------------


def test_the_cli_opens_what_the_server_encrypted_and_phases_own_vector(server):
    data, public, private = cli_link_data("kat@host")
    cli = webauth.parse_request(data)
    owner = owner_of(server)
    by = support.principal_of(server.services, support.user_token(server.services, owner))
    answer = webauth.authorise(server.services, by, owner, cli, support.TEST_META)
    [vector] = support.VECTORS["asymmetric_encrypt"][:1]
    email, token, from_phase = cli_decrypts([
        [answer.body["email"], private, public], [answer.body["pss"], private, public],
        [vector["ciphertext"], vector["recipient_private_key"],
         vector["recipient_public_key"]]])
    assert email == "owner@example.com"
    [made] = live_tokens(server, "kat@host")
    assert made["id"] == answer.token_id and support.TOKEN_PATTERN.fullmatch(token)
    assert made["token_hash"] == support.phase_crypto.hash_bearer(token.split(":")[2])
    assert from_phase == vector["plaintext"]
