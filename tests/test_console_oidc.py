"""Console sign-in through an OpenID provider, against a real one (``oidc-provider`` on
loopback, see ``openid_provider``): the flow over HTTP with Flask's test client on our side
and requests at the provider, each attack refused with nothing created, auto-joining, password
sign-in turned off, the provider's key rotation, and start-up with a bad or absent provider.
The same flow in Chromium is in ``test_console_oidc_browser``."""

import base64
import dataclasses
import json
import os
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

import support
from live import REPO, database_env, free_port
from openid_provider import (CLIENT_ID, OTHER_CLIENT_ID, SHORT_CLIENT_ID, OpenIDTestProvider,
                             sign_in_at_provider)
from phase_lite.app import create_app
from phase_lite.config import ConfigError, load_config, load_oidc_settings
from phase_lite.console import oidc
from phase_lite.store import accounts as account_store
from phase_lite.store import audit as audit_store

pytestmark = pytest.mark.both_backends

CALLBACK = "http://localhost"


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    started = OpenIDTestProvider(tmp_path_factory.mktemp("oidc")).start()
    yield started
    started.stop()


@pytest.fixture
def oidc_app(config, owner, provider):
    """Build an app signing in through the provider (``client_id``, extra settings)."""
    made = []

    def make(client_id=CLIENT_ID, provider_=None, **env):
        settings, password_sign_in = load_oidc_settings(
            (provider_ or provider).settings_env(client_id, **env))
        flask_app = create_app(dataclasses.replace(config, oidc=settings,
                                                   password_sign_in=password_sign_in))
        made.append(flask_app)
        return flask_app

    yield make
    for flask_app in made:
        flask_app.extensions["phase_lite"].close()


def start(client) -> str:
    """Click "Sign in with ...": the provider's authorization URL."""
    answer = client.get("/console/oidc/sign-in")
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return answer.headers["Location"]


def come_back(client, callback_url):
    """The browser arriving at our callback from the provider."""
    assert callback_url.startswith(CALLBACK + "/console/oidc/callback?")
    return client.get(callback_url[len(CALLBACK):])


def sign_in(client, login):
    return come_back(client, sign_in_at_provider(start(client), login))


def counts(services):
    db = services.db
    return (db.scalar("SELECT count(*) FROM users"),
            db.scalar("SELECT count(*) FROM console_sessions"))


def events(services, limit):
    """The latest audit events, newest first, their details parsed."""
    return [{**row, "details": json.loads(row["details"])}
            for row in audit_store.list_events(services.db, limit=limit)]


def last_event(services):
    return events(services, 1)[0]


def refused(answer, services, before, reason):
    """The callback refused the sign-in: a page that says so, nothing created, the refusal
    in the audit log with the provider named."""
    assert answer.status_code == 403, answer.get_data(as_text=True)[:400]
    assert "Sign-in refused" in answer.get_data(as_text=True)
    assert counts(services) == before
    event = last_event(services)
    assert (event["action"], event["actor_type"]) == ("sign_in_refused", "anonymous")
    assert event["details"]["reason"] == reason
    assert event["details"]["provider"] == "127.0.0.1"
    return event


def replace_query(url, **changes):
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


# -- the flow --------------------------------------------------------------------------------


def test_a_member_signs_in_and_lands_on_apps(oidc_app, provider):
    flask_app = oidc_app()
    services = flask_app.extensions["phase_lite"]
    client = flask_app.test_client()
    page = client.get("/console/sign-in").get_data(as_text=True)
    assert "Sign in with 127.0.0.1" in page and 'name="password"' in page
    authorization = start(client)
    query = parse_qs(urlsplit(authorization).query)
    assert authorization.startswith(provider.issuer + "/auth?")
    assert query["code_challenge_method"] == ["S256"] and query["redirect_uri"] == [
        CALLBACK + "/console/oidc/callback"]
    assert {"state", "nonce", "code_challenge"} <= set(query)
    users_before = counts(services)[0]
    answer = come_back(client, sign_in_at_provider(authorization, "owner"))
    assert answer.status_code == 303 and answer.headers["Location"] == "/console/apps/"
    assert any(c.startswith("phase_lite_session=") for c in answer.headers.getlist("Set-Cookie"))
    apps = client.get("/console/apps/")
    assert apps.status_code == 200 and "<h1>Apps</h1>" in apps.get_data(as_text=True)
    assert counts(services)[0] == users_before
    event = last_event(services)
    assert (event["action"], event["resource_type"]) == ("sign_in", "console_session")
    assert event["details"] == {"provider": "127.0.0.1", "via": "oidc"}
    assert event["channel"] == "console"
    # Sign-out, as after a password sign-in.
    token = support.csrf_of(apps)
    assert client.post("/console/sign-out", data={"csrf_token": token}).status_code == 303
    assert client.get("/console/apps/").status_code == 303


def test_the_redirect_uri_starts_with_the_public_url(oidc_app, config, owner, provider):
    settings, password_sign_in = load_oidc_settings(provider.settings_env(CLIENT_ID))
    flask_app = create_app(dataclasses.replace(
        config, oidc=settings, password_sign_in=password_sign_in,
        public_url="https://secrets.example.com/vault"))
    try:
        query = parse_qs(urlsplit(start(flask_app.test_client())).query)
        assert query["redirect_uri"] == [
            "https://secrets.example.com/vault/console/oidc/callback"]
    finally:
        flask_app.extensions["phase_lite"].close()


def test_the_display_name_and_next_page(oidc_app):
    flask_app = oidc_app(PHASE_LITE_OIDC_NAME="Team SSO")
    client = flask_app.test_client()
    page = client.get("/console/sign-in?next=/console/account").get_data(as_text=True)
    assert "Sign in with Team SSO" in page
    assert "/console/oidc/sign-in?next=/console/account" in page
    authorization = client.get("/console/oidc/sign-in?next=/console/account").headers["Location"]
    answer = come_back(client, sign_in_at_provider(authorization, "owner"))
    assert answer.headers["Location"] == "/console/account"
    event = last_event(flask_app.extensions["phase_lite"])
    assert event["details"]["provider"] == "Team SSO"


def test_phase_auth_s_page_is_reached_through_the_provider(oidc_app):
    # `phase auth` opens /webauth/<data>: a visitor signs in with the provider and comes back.
    flask_app = oidc_app()
    client = flask_app.test_client()
    data = base64.b64encode(f"17001-{'ab' * 32}-alice@laptop".encode()).decode()
    bounced = client.get("/webauth/" + data)
    assert bounced.status_code == 303 and "/console/sign-in?next=" in bounced.headers["Location"]
    authorization = client.get("/console/oidc/sign-in", query_string={
        "next": "/webauth/" + data}).headers["Location"]
    answer = come_back(client, sign_in_at_provider(authorization, "owner"))
    assert answer.headers["Location"] == "/webauth/" + data
    page = client.get("/webauth/" + data).get_data(as_text=True)
    assert "Authorise the Phase CLI on alice@laptop" in page


def test_an_unknown_email_is_refused_with_a_clear_page(oidc_app):
    flask_app = oidc_app()
    services, client = flask_app.extensions["phase_lite"], flask_app.test_client()
    before = counts(services)
    answer = sign_in(client, "stranger")
    event = refused(answer, services, before, "unknown")
    assert event["details"]["email"] == "stranger@elsewhere.example"
    assert ("stranger@elsewhere.example is not a member of this organisation"
            in answer.get_data(as_text=True))
    assert client.get("/console/apps/").status_code == 303  # not signed in
    # The Owner sees the refusal in the console's audit log.
    assert sign_in(client, "owner").status_code == 303
    log = client.get("/console/audit/")
    assert log.status_code == 200 and "sign_in_refused" in log.get_data(as_text=True)


def test_a_head_of_the_callback_does_nothing(oidc_app):
    flask_app = oidc_app()
    services, client = flask_app.extensions["phase_lite"], flask_app.test_client()
    callback = sign_in_at_provider(start(client), "owner")
    before = counts(services)
    assert client.head(callback[len(CALLBACK):]).status_code == 303
    assert counts(services) == before
    assert come_back(client, callback).status_code == 303  # the code is still good


def test_an_unverified_email_is_refused_even_for_a_members_address(oidc_app):
    flask_app = oidc_app()
    services, client = flask_app.extensions["phase_lite"], flask_app.test_client()
    before = counts(services)
    answer = sign_in(client, "impostor")  # claims owner@example.com, not verified
    refused(answer, services, before, "unverified")
    assert "has not verified the email address" in answer.get_data(as_text=True)


def test_no_email_at_all_is_refused(oidc_app):
    flask_app = oidc_app()
    services, client = flask_app.extensions["phase_lite"], flask_app.test_client()
    before = counts(services)
    refused(sign_in(client, "nomail"), services, before, "no_email")


# -- the protocol's checks -------------------------------------------------------------------


def test_a_tampered_state_is_refused(oidc_app):
    flask_app = oidc_app()
    services, client = flask_app.extensions["phase_lite"], flask_app.test_client()
    before = counts(services)
    callback = sign_in_at_provider(start(client), "owner")
    state = parse_qs(urlsplit(callback).query)["state"][0]
    tampered = replace_query(callback, state=state[:-2] + ("AA" if state[-2:] != "AA" else "BB"))
    refused(come_back(client, tampered), services, before, "state")


def test_a_callback_without_the_browsers_flow_is_refused(oidc_app):
    flask_app = oidc_app()
    services, client = flask_app.extensions["phase_lite"], flask_app.test_client()
    before = counts(services)
    callback = sign_in_at_provider(start(client), "owner")
    other_browser = flask_app.test_client()  # an attacker's link opened elsewhere
    refused(come_back(other_browser, callback), services, before, "no_flow")


def test_a_replayed_code_is_refused(oidc_app):
    flask_app = oidc_app()
    services, client = flask_app.extensions["phase_lite"], flask_app.test_client()
    authorization = start(client)
    flow_cookie = client.get_cookie("phase_lite_oidc", path="/console/oidc/").value
    callback = sign_in_at_provider(authorization, "owner")
    assert come_back(client, callback).status_code == 303
    before = counts(services)
    replayer = flask_app.test_client()  # holds the flow cookie and the callback URL
    replayer.set_cookie("phase_lite_oidc", flow_cookie, path="/console/oidc/")
    event = refused(come_back(replayer, callback), services, before, "code")
    assert event["details"]["reason"] == "code"


def test_a_wrong_nonce_is_refused(oidc_app):
    flask_app = oidc_app()
    services, client = flask_app.extensions["phase_lite"], flask_app.test_client()
    before = counts(services)
    authorization = replace_query(start(client), nonce="a-nonce-of-another-sign-in")
    answer = come_back(client, sign_in_at_provider(authorization, "owner"))
    refused(answer, services, before, "id_token")
    assert "wrong nonce" in answer.get_data(as_text=True)


def test_a_code_for_another_client_is_refused(oidc_app):
    """An authorization made for another client of the same provider, brought to our
    callback: the provider will not exchange it for us."""
    flask_app = oidc_app()
    services, client = flask_app.extensions["phase_lite"], flask_app.test_client()
    before = counts(services)
    authorization = replace_query(start(client), client_id=OTHER_CLIENT_ID)
    refused(come_back(client, sign_in_at_provider(authorization, "owner")), services, before,
            "code")


def test_an_id_token_for_another_audience_is_refused(oidc_app, provider):
    """A real ID token the provider issued to another client fails our audience check."""
    ours = oidc_app().extensions["phase_lite_oidc"]
    theirs = oidc_app(client_id=OTHER_CLIENT_ID).extensions["phase_lite_oidc"]
    flow = oidc.Flow.start(None)
    callback = sign_in_at_provider(theirs.authorization_url(flow, CALLBACK + "/console/oidc/"
                                                            "callback"), "owner")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    token = theirs.app().fetch_access_token(CALLBACK + "/console/oidc/callback", code=code,
                                            code_verifier=flow.code_verifier)
    assert theirs.check_id_token(token, flow.nonce)["aud"] == OTHER_CLIENT_ID
    with pytest.raises(oidc.SignInRefused) as caught:
        ours.check_id_token(token, flow.nonce)
    assert caught.value.reason == "id_token"
    assert "issued to another client" in caught.value.message


def test_an_expired_id_token_is_refused(oidc_app):
    """The provider's ID tokens for this client last one second; ours is checked with no
    leeway on a clock three seconds ahead: expired (the same clock takes hour-long ones)."""
    flask_app = oidc_app(client_id=SHORT_CLIENT_ID)
    services, client = flask_app.extensions["phase_lite"], flask_app.test_client()
    found = flask_app.extensions["phase_lite_oidc"]
    found.leeway, found.clock = 0, lambda: time.time() + 3
    before = counts(services)
    answer = sign_in(client, "owner")
    refused(answer, services, before, "id_token")
    assert "expired" in answer.get_data(as_text=True)

    hour_long = oidc_app()
    hour_long.extensions["phase_lite_oidc"].leeway = 0
    hour_long.extensions["phase_lite_oidc"].clock = lambda: time.time() + 3
    assert sign_in(hour_long.test_client(), "owner").status_code == 303


def test_an_error_from_the_provider_is_refused(oidc_app, provider):
    flask_app = oidc_app()
    services, client = flask_app.extensions["phase_lite"], flask_app.test_client()
    before = counts(services)
    state = parse_qs(urlsplit(start(client)).query)["state"][0]
    answer = client.get("/console/oidc/callback?" + urlencode(
        {"error": "access_denied", "state": state, "iss": provider.issuer}))
    refused(answer, services, before, "provider_error")


def test_the_providers_key_rotation_is_followed(oidc_app, tmp_path):
    rotating = OpenIDTestProvider(tmp_path).start()
    try:
        flask_app = oidc_app(provider_=rotating)
        found = flask_app.extensions["phase_lite_oidc"]
        assert sign_in(flask_app.test_client(), "owner").status_code == 303
        old_kid = rotating.kid
        assert [k["kid"] for k in found.app().server_metadata["jwks"]["keys"]] == [old_kid]
        rotating.restart()  # a new signing key, a new kid
        assert rotating.kid != old_kid
        assert sign_in(flask_app.test_client(), "owner").status_code == 303
        assert [k["kid"] for k in found.app().server_metadata["jwks"]["keys"]] == [rotating.kid]
    finally:
        rotating.stop()


def test_flow_cookie_is_scoped_and_short_lived(oidc_app):
    client = oidc_app().test_client()
    answer = client.get("/console/oidc/sign-in")
    cookie = next(c for c in answer.headers.getlist("Set-Cookie")
                  if c.startswith("phase_lite_oidc="))
    assert "phase_lite_oidc=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/console/oidc/" in cookie and "Max-Age=600" in cookie
    flow = oidc.Flow.from_cookie(client.get_cookie("phase_lite_oidc",
                                                   path="/console/oidc/").value)
    assert flow is not None
    assert oidc.Flow.from_cookie(flow.cookie_value(), now=flow.started + 601) is None
    assert len(flow.code_verifier) == 43 and len({flow.state, flow.nonce,
                                                  flow.code_verifier}) == 3


# -- who may join ----------------------------------------------------------------------------


def test_auto_join_gives_the_default_role(oidc_app):
    flask_app = oidc_app(PHASE_LITE_OIDC_AUTO_JOIN_ROLE="developer")
    services, client = flask_app.extensions["phase_lite"], flask_app.test_client()
    assert sign_in(client, "stranger").status_code == 303
    user = account_store.get_user_by_email(services.db, support.organisation_id(services),
                                           "stranger@elsewhere.example")
    assert account_store.get_role(services.db, user["organisation_id"],
                                  user["role_id"])["name"] == "Developer"
    created, signed_in = events(services, 2)[::-1]
    assert (created["action"], created["resource_type"], created["actor_id"]) == (
        "create", "user", user["id"])
    assert created["details"]["provider"] == "127.0.0.1"
    assert created["details"]["role"] == "Developer"
    assert signed_in["action"] == "sign_in" and signed_in["actor_id"] == user["id"]
    assert client.get("/console/apps/").status_code == 200
    # The second time, the same member signs in: nobody new.
    before = counts(services)[0]
    assert sign_in(flask_app.test_client(), "stranger").status_code == 303
    assert counts(services)[0] == before


def test_auto_join_within_domains(oidc_app):
    flask_app = oidc_app(PHASE_LITE_OIDC_AUTO_JOIN_ROLE="Developer",
                         PHASE_LITE_OIDC_AUTO_JOIN_DOMAINS="team.example, @staff.example")
    services = flask_app.extensions["phase_lite"]
    before = counts(services)
    refused(sign_in(flask_app.test_client(), "stranger"), services, before, "domain")
    assert sign_in(flask_app.test_client(), "joiner").status_code == 303
    assert counts(services)[0] == before[0] + 1


def test_auto_join_within_groups(oidc_app):
    flask_app = oidc_app(PHASE_LITE_OIDC_AUTO_JOIN_ROLE="Developer",
                         PHASE_LITE_OIDC_AUTO_JOIN_GROUPS="phase-users,admins")
    services = flask_app.extensions["phase_lite"]
    before = counts(services)
    refused(sign_in(flask_app.test_client(), "loner"), services, before, "group")
    refused(sign_in(flask_app.test_client(), "stranger"), services, before, "group")
    assert sign_in(flask_app.test_client(), "joiner").status_code == 303


@pytest.mark.parametrize("role", ["Owner", "Admin", "Manager", "Service", "Wizard"])
def test_auto_join_never_above_developer(provider, role):
    with pytest.raises(ConfigError, match="PHASE_LITE_OIDC_AUTO_JOIN_ROLE: expected Developer"):
        load_oidc_settings(provider.settings_env(PHASE_LITE_OIDC_AUTO_JOIN_ROLE=role))


# -- password sign-in turned off -------------------------------------------------------------


def test_password_sign_in_off_hides_and_refuses_the_form(oidc_app, app):
    from phase_lite.console import sessions

    services = app.extensions["phase_lite"]
    support.set_console_password(services, "owner@example.com", support.CONSOLE_PASSWORD)
    flask_app = oidc_app(PHASE_LITE_PASSWORD_SIGN_IN="off")
    client = flask_app.test_client()
    text = client.get("/console/sign-in").get_data(as_text=True)
    assert "Sign in with 127.0.0.1" in text
    assert 'name="password"' not in text and 'action="/console/sign-in"' not in text
    user = account_store.get_user_by_email(services.db, support.organisation_id(services),
                                           "owner@example.com")
    token = sessions.issue_link(services.db, "setup", user["id"])
    link = client.get("/console/welcome?token=" + token)  # an anonymous form: a CSRF token
    csrf = support.csrf_of(link)
    answer = client.post("/console/sign-in", data={
        "email": "owner@example.com", "password": support.CONSOLE_PASSWORD, "csrf_token": csrf})
    assert answer.status_code == 403
    assert "Password sign-in is turned off here: sign in with 127.0.0.1." in answer.get_data(
        as_text=True)
    assert not any("phase_lite_session=" in c for c in answer.headers.getlist("Set-Cookie"))
    # The admin command's one-time setup link still rescues an Owner.
    answer = client.post("/console/welcome", data={
        "token": token, "password": "a rescued password", "confirmation": "a rescued password",
        "csrf_token": csrf})
    assert answer.status_code == 303
    assert client.get("/console/apps/").status_code == 200


def test_password_sign_in_off_needs_a_provider():
    with pytest.raises(ConfigError, match="PHASE_LITE_PASSWORD_SIGN_IN: off needs"):
        load_config({"PHASE_LITE_PASSWORD_SIGN_IN": "off"})


# -- settings and start-up -------------------------------------------------------------------


@pytest.mark.parametrize("env, message", [
    ({"PHASE_LITE_OIDC_ISSUER": "http://id.example.com"}, "plain http only on loopback"),
    ({"PHASE_LITE_OIDC_ISSUER": "id.example.com"}, "expected an https:// URL"),
    ({"PHASE_LITE_OIDC_CLIENT_ID": ""}, "PHASE_LITE_OIDC_CLIENT_ID: needed"),
    ({"PHASE_LITE_OIDC_CLIENT_SECRET": ""}, "PHASE_LITE_OIDC_CLIENT_SECRET: needed"),
    ({"PHASE_LITE_OIDC_CLIENT_SECRET": "", "PHASE_LITE_OIDC_CLIENT_SECRET_FILE": "/nonexistent"},
     "PHASE_LITE_OIDC_CLIENT_SECRET_FILE: cannot read /nonexistent"),
    ({"PHASE_LITE_OIDC_SCOPES": "openid profile"}, "must include openid and email"),
    ({"PHASE_LITE_OIDC_AUTO_JOIN_DOMAINS": "team.example"}, "AUTO_JOIN_ROLE: needed"),
])
def test_settings_are_checked(provider, env, message):
    with pytest.raises(ConfigError, match=message):
        load_oidc_settings(provider.settings_env(**env))


def test_the_secret_from_a_file_and_never_in_repr(provider, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("the secret from a file\n")
    settings, _ = load_oidc_settings(provider.settings_env(
        PHASE_LITE_OIDC_CLIENT_SECRET="", PHASE_LITE_OIDC_CLIENT_SECRET_FILE=str(secret_file)))
    assert settings.client_secret == "the secret from a file"
    assert "the secret from a file" not in repr(settings)
    assert settings.display_name == "127.0.0.1"


def serve(config, provider_env, timeout=30):
    """``phase-lite serve`` with the provider settings: (process, port)."""
    port = free_port()
    env = {**os.environ, **database_env(config), "PHASE_LITE_DATA_DIR": str(config.data_dir),
           "PHASE_LITE_LISTEN": f"127.0.0.1:{port}", **provider_env}
    return subprocess.Popen([sys.executable, "-m", "phase_lite.cli", "serve"], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True), port


def test_a_wrong_issuer_stops_start_up_in_one_line(config, owner, provider):
    process, _ = serve(config, provider.settings_env(
        PHASE_LITE_OIDC_ISSUER=provider.issuer + "/not-the-issuer"))
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert err.strip().count("\n") == 0, err
    assert err.startswith("Error: PHASE_LITE_OIDC_ISSUER: ") and "answers 404" in err


def test_an_unreachable_provider_is_a_console_notice(config, owner, provider):
    import requests

    down = f"http://127.0.0.1:{free_port()}"
    process, port = serve(config, provider.settings_env(PHASE_LITE_OIDC_ISSUER=down,
                                                        PHASE_LITE_OIDC_NAME="Team SSO"))
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if requests.get(url + "/health/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        page = requests.get(url + "/console/sign-in", timeout=5).text
        assert "Sign-in with Team SSO is not available right now" in page
        assert 'name="password"' in page  # passwords still work
        answer = requests.get(url + "/console/oidc/sign-in", timeout=30, allow_redirects=False)
        assert answer.status_code == 503 and "not available right now" in answer.text
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert "OpenID provider Team SSO unavailable at start" in err
