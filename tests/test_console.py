"""The web console over HTTP (Flask test client): routing beside the API, sign-in, sessions,
CSRF, headers, roles, and every write going through the audited domain functions."""

import html
import re
import sqlite3
import subprocess
import sys

import pytest

import support
from phase_lite import accounts, service_accounts
from phase_lite.accounts import Grantee
from phase_lite.store import apps as app_store
from phase_lite.store import audit as audit_store

PASSWORD = support.CONSOLE_PASSWORD
CONFIRMED = support.CONFIRMED
csrf_of = support.csrf_of
sign_in = support.console_sign_in
env_url = support.console_env_url


def set_password(services, email, password=PASSWORD, role=None):
    return support.set_console_password(services, email, password, role)


def env_version(db, env):
    """What a single-secret form carries: the environment's version when it was opened."""
    return str(app_store.environment_versions(db, [env["id"]])[env["id"]])


def events(db, action=None):
    rows = audit_store.list_events(db, limit=1000)
    return [row for row in rows if action is None or row["action"] == action]


# -- where the console lives -----------------------------------------------------------------


def test_browsers_get_the_console_at_the_root_and_clients_keep_the_api(client):
    page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 303
    assert page.location.startswith("/console/sign-in")
    for path in ("/", "/service/", "/service/public/"):
        for accept in (None, "application/json", "*/*", "text/html"):
            if path == "/" and accept == "text/html":
                continue
            headers = {"Accept": accept} if accept else {}
            answer = client.get(path, headers=headers)
            assert answer.status_code == 200, (path, accept)
            assert answer.get_json()["status"] == "ok"


def test_console_pages_carry_the_security_headers(client):
    page = client.get("/console/sign-in")
    assert page.status_code == 200
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert "<script>" not in page.get_data(as_text=True)
    with client.get("/static/console/console.css") as style:
        assert style.status_code == 200
        assert "prefers-color-scheme" in style.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/console/nope", "/console/apps/x/y/z",
                                  "/static/console/missing.js"])
def test_unknown_console_paths_are_console_pages(client, owner_client, path):
    for visitor in (client, owner_client):
        answer = visitor.get(path)
        text = answer.get_data(as_text=True)
        assert answer.status_code == 404 and answer.mimetype == "text/html"
        assert "<h1>Not found</h1>" in text and 'href="/console/"' in text
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert ">Sign out</button>" in owner_client.get(path).get_data(as_text=True)
    assert ">Sign out</button>" not in client.get(path).get_data(as_text=True)


def test_a_console_path_without_its_slash_is_sent_to_it(client):
    answer = client.get("/console/apps")
    assert answer.status_code == 308 and answer.location.endswith("/console/apps/")
    assert client.get("/health").get_json() == {"error": "Not found."}


def test_console_errors_are_console_pages_and_api_errors_stay_json(
        client, owner_client, demo, monkeypatch):
    app_row, envs = demo
    missing = owner_client.get(f"/console/apps/{app_row['id']}/environments/nope/")
    assert missing.status_code == 404 and "<h1>Not found</h1>" in missing.get_data(as_text=True)
    wrong_method = owner_client.delete("/console/apps/")
    assert wrong_method.status_code == 405 and wrong_method.mimetype == "text/html"
    assert "GET" in wrong_method.headers["Allow"]
    for path in ("/consoles/", "/v1/nope/", "/service/nope/"):
        assert client.get(path).get_json() == {"error": "Not found."}
    assert client.post("/health/").get_json() == {"error": 'Method "POST" not allowed.'}

    def broken(*_):
        raise RuntimeError("a value that must stay private")

    monkeypatch.setattr("phase_lite.console.actions.visible_apps", broken)
    failed = owner_client.get("/console/apps/")
    text = failed.get_data(as_text=True)
    assert failed.status_code == 500 and "<h1>Something went wrong</h1>" in text
    assert "must stay private" not in text and ">Sign out</button>" in text


def test_templates_hold_no_inline_script_or_handler():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "phase_lite" / "console" / "templates"
    for template in folder.glob("*.html"):
        text = template.read_text()
        assert "<script>" not in text and "<script " not in text.replace(
            '<script src="', ""), template.name
        assert not re.search(r"\son[a-z]+=", text), template.name
        assert "style=" not in text, template.name


# -- signing in ------------------------------------------------------------------------------


def test_sign_in_sets_a_hardened_cookie_and_stores_only_its_hash(app, db, owner, config, services):
    set_password(services, "owner@example.com")
    client = app.test_client()
    answer = sign_in(client)
    assert answer.status_code == 303 and answer.location == "/console/apps/"
    cookie = next(value for value in answer.headers.getlist("Set-Cookie")
                  if value.startswith("phase_lite_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    session_id = cookie.split(";")[0].split("=", 1)[1]
    assert session_id.encode() not in config.database.read_bytes()
    assert PASSWORD.encode() not in config.database.read_bytes()
    assert client.get("/console/apps/").status_code == 200


def test_the_cookie_is_secure_over_https_and_behind_a_trusted_proxy(app, db, owner, services):
    set_password(services, "owner@example.com")
    assert "Secure" in session_cookie(sign_in(app.test_client(),
                                              base_url="https://console.example"))
    services.config.trusted_proxies = ("127.0.0.1",)
    forwarded = {"X-Forwarded-Proto": "https"}
    assert "Secure" in session_cookie(sign_in(app.test_client(), headers=forwarded))
    services.config.trusted_proxies = ()
    assert "Secure" not in session_cookie(sign_in(app.test_client(), headers=forwarded))


def session_cookie(answer) -> str:
    return next(value for value in answer.headers.getlist("Set-Cookie")
                if value.startswith("phase_lite_session="))


@pytest.mark.parametrize("email,password", [
    ("owner@example.com", "wrong password!"), ("nobody@example.com", PASSWORD), ("", "")])
def test_a_failed_sign_in_says_so_as_an_alert(app, db, owner, email, password, services):
    set_password(services, "owner@example.com")
    answer = sign_in(app.test_client(), email=email, password=password)
    assert answer.status_code == 401
    assert 'role="alert">Wrong email or password.' in answer.get_data(as_text=True)
    assert "phase_lite_session=" not in "".join(answer.headers.getlist("Set-Cookie"))


def test_sign_in_is_throttled_per_email_and_per_address(app, db, owner, services):
    set_password(services, "owner@example.com")
    client = app.test_client()
    for _ in range(10):
        assert sign_in(client, password="wrong password!").status_code == 401
    refused = sign_in(client)  # the right password, but too many attempts for this email
    assert refused.status_code == 429
    assert "Too many sign-in attempts" in refused.get_data(as_text=True)
    for number in range(10):  # other emails from the same address, up to its limit
        sign_in(client, email=f"x{number}@example.com", password="wrong password!")
    assert sign_in(client, email="other@example.com").status_code == 429


def test_sign_in_needs_the_form_token(app, db, owner, services):
    set_password(services, "owner@example.com")
    client = app.test_client()
    answer = client.post("/console/sign-in", data={"email": "owner@example.com",
                                                   "password": PASSWORD})
    assert answer.status_code == 403
    assert "phase_lite_session=" not in "".join(answer.headers.getlist("Set-Cookie"))


def test_notices_come_from_a_fixed_list(owner_client):
    page = owner_client.get("/console/apps/?notice=Call+555+now").get_data(as_text=True)
    assert "Call 555" not in page and 'role="status"' not in page
    page = owner_client.get("/console/apps/?notice=app_created").get_data(as_text=True)
    assert 'role="status">App created.' in page
    page = owner_client.get("/console/apps/?notice=bulk_saved&created=x").get_data(as_text=True)
    assert 'role="status"' not in page


def test_next_only_returns_to_console_pages(app, db, owner, services):
    set_password(services, "owner@example.com")
    for target, expected in (("/console/audit/", "/console/audit/"),
                             ("https://evil.example/", "/console/apps/"),
                             ("//evil.example/console/", "/console/apps/")):
        client = app.test_client()
        token = csrf_of(client.get("/console/sign-in"))
        answer = client.post("/console/sign-in", data={
            "email": "owner@example.com", "password": PASSWORD, "csrf_token": token,
            "next": target})
        assert answer.location == expected


# -- sessions end ----------------------------------------------------------------------------


def test_sign_out_ends_the_session_on_the_server(app, owner_client):
    cookie = owner_client.get_cookie("phase_lite_session").value
    answer = owner_client.post("/console/sign-out", data={"csrf_token": owner_client.csrf})
    assert answer.status_code == 303
    replay = app.test_client()
    replay.set_cookie("phase_lite_session", cookie)
    assert replay.get("/console/apps/").status_code == 303


def test_idle_and_absolute_timeouts_end_sessions(app, owner_client, config):
    conn = sqlite3.connect(config.database)
    with conn:
        conn.execute("UPDATE console_sessions SET last_seen_at = '2000-01-01T00:00:00.000000Z'")
    assert owner_client.get("/console/apps/").status_code == 303
    sign_in(owner_client)
    assert owner_client.get("/console/apps/").status_code == 200
    with conn:
        conn.execute("UPDATE console_sessions SET expires_at = '2000-01-01T00:00:00.000000Z'")
    assert owner_client.get("/console/apps/").status_code == 303
    conn.close()


def test_a_password_change_ends_the_other_sessions(app, db, owner_client):
    other = app.test_client()
    sign_in(other)
    assert other.get("/console/apps/").status_code == 200
    answer = owner_client.post("/console/account/password", data={
        "csrf_token": owner_client.csrf, "current_password": PASSWORD,
        "new_password": "a brand new password", "confirmation": "a brand new password"})
    assert answer.status_code == 303
    assert owner_client.get("/console/apps/").status_code == 200
    assert other.get("/console/apps/").status_code == 303
    assert sign_in(app.test_client(), password="a brand new password").status_code == 303


def test_a_wrong_current_password_changes_nothing(app, owner_client):
    answer = owner_client.post("/console/account/password", data={
        "csrf_token": owner_client.csrf, "current_password": "not my password",
        "new_password": "a brand new password", "confirmation": "a brand new password"})
    assert answer.status_code == 403
    assert sign_in(app.test_client()).status_code == 303


def test_removing_a_member_ends_their_sessions_and_tokens(app, db, owner_client, client, services):
    user = set_password(services, "dev@example.com", role="Developer")
    dev = app.test_client()
    sign_in(dev, email="dev@example.com")
    token = support.user_token(services, user, "dev token")
    headers = {"Authorization": f"Bearer {token.bearer_token}"}
    assert client.get("/v1/apps/", headers=headers).status_code == 200
    answer = owner_client.post(f"/console/members/{user['id']}/remove",
                               data={"csrf_token": owner_client.csrf, "confirmed": "yes"})
    assert answer.status_code == 303
    assert dev.get("/console/apps/").status_code == 303
    assert client.get("/v1/apps/", headers=headers).status_code in (401, 404)
    assert events(db, "delete")[0]["resource_type"] == "user"


def test_sign_out_everywhere_else(app, owner_client):
    other = app.test_client()
    sign_in(other)
    page = owner_client.get("/console/account/").get_data(as_text=True)
    assert "this browser" in page and "Sign out everywhere else" in page
    owner_client.post("/console/account/sign-out-others",
                      data={"csrf_token": owner_client.csrf, "confirmed": "yes"})
    assert other.get("/console/apps/").status_code == 303
    assert owner_client.get("/console/apps/").status_code == 200


# -- CSRF ------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_a_post_without_the_session_token_is_refused_and_writes_nothing(
        db, owner_client, token, services):
    data = {"name": "sneaky"}
    if token is not None:
        data["csrf_token"] = token
    before = len(events(db))
    answer = owner_client.post("/console/apps/new", data=data)
    assert answer.status_code == 403
    assert "did not come from this site" in answer.get_data(as_text=True)
    org_id = support.organisation_id(services)
    assert app_store.find_apps_by_name(db, org_id, "sneaky") == []
    assert len(events(db)) == before


def test_another_sessions_token_is_refused(app, db, owner_client):
    other = app.test_client()
    sign_in(other)
    foreign = csrf_of(other.get("/console/apps/"))
    assert foreign != owner_client.csrf
    assert owner_client.post("/console/apps/new", data={
        "name": "x", "csrf_token": foreign}).status_code == 403


# -- apps, environments and secrets ----------------------------------------------------------


def test_create_an_app_and_a_secret_audited_as_the_user(db, owner, owner_client, services):
    answer = owner_client.post("/console/apps/new", data={
        "name": "shop", "description": "the shop", "csrf_token": owner_client.csrf})
    assert answer.status_code == 303
    overview = owner_client.get(answer.location).get_data(as_text=True)
    for name in ("Development", "Staging", "Production"):
        assert f">{name}</a>" in overview
    org_id = support.organisation_id(services)
    app_row = app_store.find_apps_by_name(db, org_id, "shop")[0]
    prod = app_store.find_environment(db, app_row["id"], "Production")
    url = env_url(app_row, prod)
    created = owner_client.post(url + "secrets/new", data={
        "key": "stripe_key", "value": "sk_live_123", "comment": "payments", "path": "/",
        "tags": "billing, prod", "csrf_token": owner_client.csrf})
    assert created.status_code == 303
    page = owner_client.get(url).get_data(as_text=True)
    assert "STRIPE_KEY" in page and "sk_live_123" not in page
    assert "Reveal" in page and "billing" in page
    user = accounts.user_by_email(services, support.operator(services), "owner@example.com")
    write = events(db, "secrets.create")[0]
    assert write["actor_type"] == "user" and write["actor_id"] == user["id"]
    assert write["channel"] == "console"
    assert {event["channel"] for event in events(db) if event["actor_id"] == user["id"]} == {
        "console"}
    assert write["environment_id"] == prod["id"]
    assert events(db, "create")[0]["actor_id"] == user["id"]


def test_reveal_shows_the_value_resolved_and_records_a_read(db, demo, owner_client,
                                                            services):
    app_row, envs = demo
    url = env_url(app_row, envs["Development"])
    for key, value in (("HOST", "db.local"), ("URL", "postgres://${HOST}/app"),
                       ("BROKEN", "${NOPE}")):
        owner_client.post(url + "secrets/new", data={"key": key, "value": value,
                                                     "confirm_references": "yes",
                                                     "csrf_token": owner_client.csrf})
    page = owner_client.get(url).get_data(as_text=True)
    ids = dict(re.findall(r'<tr id="secret-([^"]+)">\s*<th scope="row" class="mono">([A-Z]+)',
                          page))
    ids = {key: secret_id for secret_id, key in ids.items()}
    services.db.execute("DELETE FROM audit_events")
    answer = owner_client.post(url + "reveal", data={
        "secret": [ids["URL"], ids["BROKEN"]], "csrf_token": owner_client.csrf},
        headers={"Accept": "application/json"})
    shown = answer.get_json()
    assert shown[ids["URL"]] == {"value": "postgres://db.local/app", "unresolved": False,
                                 "override": None}
    assert shown[ids["BROKEN"]]["unresolved"] is True
    html = owner_client.post(url + "reveal", data={"secret": ids["URL"],
                                                   "csrf_token": owner_client.csrf})
    text = html.get_data(as_text=True)
    assert "postgres://db.local/app" in text and "postgres://${HOST}/app" in text
    assert "db.local</code>" not in text.split(ids["HOST"])[1].split("</tr>")[0]
    services.read_log.flush()
    reads = events(db, "secrets.read")
    assert len(reads) == 2 and {read["actor_type"] for read in reads} == {"user"}


def test_edit_delete_history_and_restore(db, demo, owner_client):
    app_row, envs = demo
    url = env_url(app_row, envs["Staging"])
    owner_client.post(url + "secrets/new", data={"key": "API", "value": "one",
                                                 "csrf_token": owner_client.csrf})
    page = owner_client.get(url).get_data(as_text=True)
    secret_id = re.search(r'<tr id="secret-([^"]+)">', page).group(1)
    form = owner_client.get(url + f"secrets/{secret_id}/edit").get_data(as_text=True)
    assert ">one</textarea>" in form
    saved = owner_client.post(url + f"secrets/{secret_id}/edit", data={
        "key": "API", "value": "two", "comment": "second", "path": "/", "tags": "",
        "type": "secret", "env_version": env_version(db, envs["Staging"]),
        "csrf_token": owner_client.csrf})
    assert saved.status_code == 303
    history = owner_client.get(url + f"secrets/{secret_id}/history").get_data(as_text=True)
    assert "Version 2" in history and "Version 1" in history
    assert "owner@example.com" in history and "Restore" in history
    assert "one" not in re.sub(r"<[^>]+>", " ", history).split()  # values only on reveal
    shown = owner_client.post(url + f"secrets/{secret_id}/history",
                              data={"version": "2", "csrf_token": owner_client.csrf})
    assert re.search(r"<del><code [^>]*>one</code></del>", shown.get_data(as_text=True))
    owner_client.post(url + f"secrets/{secret_id}/restore",
                      data={"version": "1", "env_version": env_version(db, envs["Staging"]),
                            "csrf_token": owner_client.csrf})
    exported = owner_client.get(url + "export.env")
    assert exported.get_data(as_text=True) == 'API="one"\n'
    assert "attachment" in exported.headers["Content-Disposition"]
    owner_client.post(url + f"secrets/{secret_id}/delete", data=CONFIRMED | {
        "env_version": env_version(db, envs["Staging"]), "csrf_token": owner_client.csrf})
    assert "API" not in owner_client.get(url).get_data(as_text=True).split("<tbody>")[1]
    assert owner_client.get(url + "export.json").get_json() == {}


def test_a_secret_sealed_later_reveals_no_version_in_its_history(db, demo, owner_client):
    app_row, envs = demo
    url = env_url(app_row, envs["Staging"])
    owner_client.post(url + "secrets/new", data={"key": "TOKEN", "value": "first-plain",
                                                 "csrf_token": owner_client.csrf})
    page = owner_client.get(url).get_data(as_text=True)
    secret_id = re.search(r'<tr id="secret-([^"]+)">', page).group(1)
    for value, kind in (("second-plain", "secret"), ("", "sealed")):
        assert owner_client.post(url + f"secrets/{secret_id}/edit", data={
            "key": "TOKEN", "value": value, "comment": "", "path": "/", "tags": "",
            "type": kind, "env_version": env_version(db, envs["Staging"]),
            "csrf_token": owner_client.csrf}).status_code == 303
    history = url + f"secrets/{secret_id}/history"
    shown = owner_client.get(history).get_data(as_text=True)
    assert "Version 3" in shown and "no version's value is shown" in shown
    assert "Reveal" not in shown
    for version in ("1", "2", "3"):  # a Reveal posted anyway shows nothing either
        revealed = owner_client.post(history, data={"version": version,
                                                    "csrf_token": owner_client.csrf})
        assert revealed.status_code == 200 and "plain" not in revealed.get_data(as_text=True)
    assert "plain" not in owner_client.get(url + "export.json").get_data(as_text=True)


def test_domain_validation_messages_are_shown(demo, owner_client):
    app_row, envs = demo
    url = env_url(app_row, envs["Development"])
    owner_client.post(url + "secrets/new", data={"key": "DUP", "value": "1",
                                                 "csrf_token": owner_client.csrf})
    again = owner_client.post(url + "secrets/new", data={"key": "dup", "value": "2",
                                                         "csrf_token": owner_client.csrf})
    assert again.status_code == 409
    assert 'role="alert">Duplicate secret found' in again.get_data(as_text=True)
    blank = owner_client.post("/console/apps/new", data={"name": " ",
                                                         "csrf_token": owner_client.csrf})
    assert "Missing required field: name" in blank.get_data(as_text=True)


def test_bulk_edit_is_atomic_and_refuses_a_stale_page(db, demo, owner_client):
    app_row, envs = demo
    url = env_url(app_row, envs["Development"])
    for key in ("A", "B"):
        owner_client.post(url + "secrets/new", data={"key": key, "value": key.lower(),
                                                     "csrf_token": owner_client.csrf})
    page = html.unescape(owner_client.get(url + "bulk-edit").get_data(as_text=True))
    assert 'A="a"\nB="b"' in page
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    edited = {"text": 'A="changed"\nC="new"\n', "version": version,
              "csrf_token": owner_client.csrf}
    preview = owner_client.post(url + "bulk-edit", data=edited).get_data(as_text=True)
    assert re.search(r"C</th><td[^>]*>created", preview)
    assert re.search(r"A</th><td[^>]*>changed", preview)
    assert re.search(r"B</th><td[^>]*>deleted", preview)
    assert owner_client.get(url + "export.json").get_json() == {"A": "a", "B": "b"}
    unticked = owner_client.post(url + "bulk-edit", data=edited | {"step": "apply"})
    assert unticked.status_code == 400  # a delete is confirmed first
    assert owner_client.get(url + "export.json").get_json() == {"A": "a", "B": "b"}
    saved = owner_client.post(url + "bulk-edit", data=edited | {"step": "apply",
                                                                "confirm_delete": "yes"})
    assert saved.status_code == 303
    assert "created=1&updated=1&deleted=1&unchanged=0" in saved.location
    assert "1 created, 1 updated, 1 deleted, 0 unchanged" in owner_client.get(
        saved.location).get_data(as_text=True)
    for step in ("apply", None):  # refused when saved, and already when previewed
        stale = owner_client.post(url + "bulk-edit", data={
            "text": 'A="lost"\nC="new"\n', "version": version, "step": step,
            "csrf_token": owner_client.csrf})
        assert stale.status_code == 412  # the API's If-Match rule
        assert "changed since you opened this page" in stale.get_data(as_text=True)
    unversioned = owner_client.post(url + "bulk-edit", data={
        "text": 'A="lost"\nC="new"\n', "step": "apply", "csrf_token": owner_client.csrf})
    assert unversioned.status_code == 412
    assert owner_client.get(url + "export.json").get_json() == {"A": "changed", "C": "new"}
    current = re.search(r'name="version" value="(\d+)"',
                        owner_client.get(url + "bulk-edit").get_data(as_text=True)).group(1)
    bad = owner_client.post(url + "bulk-edit", data={
        "text": 'A="x"\nnot a line\n', "version": current, "step": "apply",
        "csrf_token": owner_client.csrf})
    assert bad.status_code == 400 and "Line 2 is not KEY=value." in bad.get_data(as_text=True)
    assert owner_client.get(url + "export.json").get_json() == {"A": "changed", "C": "new"}


def test_import_previews_then_applies(db, demo, owner_client):
    app_row, envs = demo
    url = env_url(app_row, envs["Production"])
    owner_client.post(url + "secrets/new", data={"key": "KEEP", "value": "same",
                                                 "csrf_token": owner_client.csrf})
    owner_client.post(url + "secrets/new", data={"key": "OLD", "value": "1",
                                                 "csrf_token": owner_client.csrf})
    text = 'KEEP=same\nOLD="2"\nexport NEW_ONE=\'x y\'\n# comment\n'
    preview = owner_client.post(url + "import", data={"text": text,
                                                      "csrf_token": owner_client.csrf})
    body = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert re.search(r"NEW_ONE</th><td[^>]*>created", body)
    assert re.search(r"OLD</th><td[^>]*>updated", body)
    assert re.search(r"KEEP</th><td[^>]*>unchanged", body)
    assert owner_client.get(url + "export.json").get_json() == {"KEEP": "same", "OLD": "1"}
    version = re.search(r'name="version" value="(\d+)"', body).group(1)
    applied = owner_client.post(url + "import", data={
        "text": text, "version": version, "step": "apply", "csrf_token": owner_client.csrf})
    assert applied.status_code == 303
    assert owner_client.get(url + "export.json").get_json() == {
        "KEEP": "same", "OLD": "2", "NEW_ONE": "x y"}


def test_overview_compares_environments(db, demo, owner_client):
    app_row, envs = demo
    values = {"Development": "dev", "Staging": "prod", "Production": "prod"}
    for env_name, value in values.items():
        owner_client.post(env_url(app_row, envs[env_name]) + "secrets/new", data={
            "key": "DB", "value": value, "csrf_token": owner_client.csrf})
    owner_client.post(env_url(app_row, envs["Production"]) + "secrets/new", data={
        "key": "ONLY_PROD", "value": "", "csrf_token": owner_client.csrf})
    page = owner_client.get(f"/console/apps/{app_row['id']}/").get_data(as_text=True)
    row = page.split('data-key="DB"')[1].split("</tr>")[0]
    assert re.findall(r'<td class="state-(\w+)"', row) == ["present", "same", "present"]
    assert "<details>" in row and row.count(">Edit<") == 3 and row.count(">Delete<") == 3
    row = page.split('data-key="ONLY_PROD"')[1].split("</tr>")[0]
    assert re.findall(r'<td class="state-(\w+)"', row) == ["missing", "missing", "empty"]
    assert "prod" not in re.sub(r"<[^>]+>", " ", page)  # values only on reveal
    assert row.count(">Add value<") == 2 and row.count(">Reveal<") == 1
    app_page = f"/console/apps/{app_row['id']}/"
    add = html.unescape(re.search(r'href="([^"]+secrets/new\?like=[^"]+)"', row).group(1))
    assert 'value="ONLY_PROD"' in owner_client.get(app_page + add).get_data(as_text=True)

    db_row = page.split('data-key="DB"')[1].split("</tr>")[0]
    named = re.search(r'name="secret" value="([^"]+)" data-reveal-row', db_row).group(1)
    assert "DB" not in named  # key names stay out of URLs and form values alike
    shown = owner_client.post(app_page + "reveal", data={"secret": named,
                                                         "csrf_token": owner_client.csrf})
    opened = shown.get_data(as_text=True).split('data-key="DB"')[1].split("</tr>")[0]
    assert "<details open>" in opened
    assert re.findall(r'<code class="revealed">(\w+)</code>', opened) == ["dev", "prod", "prod"]
    found = owner_client.post(app_page + "reveal", headers={"Accept": "application/json"},
                              data={"secret": named, "csrf_token": owner_client.csrf}).get_json()
    assert sorted(item["value"] for item in found.values()) == ["dev", "prod", "prod"]
    filtered = owner_client.get(f"/console/apps/{app_row['id']}/?type=config")
    assert "No key matches." in filtered.get_data(as_text=True)


# -- roles -----------------------------------------------------------------------------------


def test_a_developer_sees_only_granted_environments(app, db, demo, owner_client, services):
    app_row, envs = demo
    user = set_password(services, "dev@example.com", role="Developer")
    support.grant(services, Grantee.of_user(user), [envs["Development"]])
    dev = app.test_client()
    sign_in(dev, email="dev@example.com")
    token = csrf_of(dev.get("/console/apps/"))
    apps_page = dev.get("/console/apps/").get_data(as_text=True)
    assert ">demo</a>" in apps_page and "New app" not in apps_page
    overview = dev.get(f"/console/apps/{app_row['id']}/").get_data(as_text=True)
    assert ">Development</a>" in overview and ">Production</a>" not in overview
    assert dev.get(env_url(app_row, envs["Development"])).status_code == 200
    refused = dev.get(env_url(app_row, envs["Production"]))
    assert refused.status_code == 403
    assert "You don&#39;t have access to this environment." in refused.get_data(as_text=True)
    assert dev.post(env_url(app_row, envs["Production"]) + "secrets/new", data={
        "key": "X", "value": "y", "csrf_token": token}).status_code == 403
    assert dev.post("/console/apps/new", data={"name": "mine",
                                               "csrf_token": token}).status_code == 403
    assert dev.get("/console/service-accounts/").status_code == 403
    assert dev.get("/console/apps/not-an-app/").status_code == 404


def test_a_manager_cannot_give_a_role_above_their_own(app, db, owner_client, services):
    set_password(services, "manager@example.com", role="Manager")
    manager = app.test_client()
    sign_in(manager, email="manager@example.com")
    page = manager.get("/console/members/").get_data(as_text=True)
    token = csrf_of(manager.get("/console/members/"))
    roles = dict(re.findall(r'<option value="([^"]+)"[^>]*>(\w+)</option>',
                            page.split('id="invite-role"')[1].split("</select>")[0]))
    assert set(roles.values()) == {"Manager", "Developer"}
    admin_role = accounts.role_by_name(services, support.operator(services), "Admin")
    refused = manager.post("/console/members/invite", data={
        "email": "boss@example.com", "role_id": admin_role["id"], "csrf_token": token})
    assert refused.status_code == 403
    with pytest.raises(Exception):
        accounts.user_by_email(services, support.operator(services), "boss@example.com")


# -- service accounts, invitations, tokens ---------------------------------------------------


def test_a_service_token_made_in_the_console_reads_secrets(demo, owner_client, client,
                                                           services):
    app_row, envs = demo
    url = env_url(app_row, envs["Production"])
    owner_client.post(url + "secrets/new", data={"key": "K", "value": "v",
                                                 "csrf_token": owner_client.csrf})
    role = accounts.role_by_name(services, support.operator(services), "Service")
    created = owner_client.post("/console/service-accounts/new", data={
        "name": "deployer", "role_id": role["id"], "csrf_token": owner_client.csrf})
    assert created.status_code == 200
    assert "pss_service:v2:" in created.get_data(as_text=True)
    listing = owner_client.get("/console/service-accounts/").get_data(as_text=True)
    sa_url = re.search(r'href="(/console/service-accounts/[^"]+/)">deployer</a>', listing).group(1)
    owner_client.post(sa_url + "access", data={"environment": envs["Production"]["id"],
                                               "csrf_token": owner_client.csrf})
    minted = owner_client.post(sa_url + "tokens/new", data={
        "name": "ci", "expires_in": "86400", "csrf_token": owner_client.csrf})
    text = minted.get_data(as_text=True)
    token = re.search(r"pss_service:v2:[0-9a-f:]+", text).group(0)
    bearer = token.split(":")[2]
    answer = client.get(f"/v1/secrets/?app_id={app_row['id']}&env=Production",
                        headers={"Authorization": f"Bearer ServiceAccount {bearer}"})
    assert answer.status_code == 200 and answer.get_json()[0]["value"] == "v"
    again = owner_client.get(sa_url).get_data(as_text=True)
    assert token not in again and ">ci</th>" in again
    token_id = re.search(r'/tokens/([^/]+)/revoke', again).group(1)
    owner_client.post(sa_url + f"tokens/{token_id}/revoke",
                      data={"csrf_token": owner_client.csrf, "confirmed": "yes"})
    assert client.get(f"/v1/secrets/?app_id={app_row['id']}&env=Production", headers={
        "Authorization": f"Bearer ServiceAccount {bearer}"}).status_code == 401


def test_an_invitation_link_works_once(app, db, owner_client, services):
    role = accounts.role_by_name(services, support.operator(services), "Developer")
    invited = owner_client.post("/console/members/invite", data={
        "email": "new@example.com", "role_id": role["id"], "csrf_token": owner_client.csrf})
    link = re.search(r'>http://localhost(/console/welcome\?token=[^<]+)</code>',
                     invited.get_data(as_text=True)).group(1)
    guest = app.test_client()
    page = guest.get(link)
    assert "new@example.com" in page.get_data(as_text=True)
    mismatch = guest.post(link, data={"password": "long enough 1", "confirmation": "other one!!",
                                      "csrf_token": csrf_of(page)})
    assert mismatch.status_code == 400
    done = guest.post(link, data={"password": "long enough 1", "confirmation": "long enough 1",
                                  "csrf_token": csrf_of(page)})
    assert done.status_code == 303
    assert guest.get("/console/apps/").status_code == 200
    assert app.test_client().get(link).status_code == 404
    assert sign_in(app.test_client(), email="new@example.com",
                   password="long enough 1").status_code == 303


def test_personal_tokens_from_the_account_page(db, owner_client, client):
    made = owner_client.post("/console/account/tokens", data={
        "name": "laptop", "expires_in": "", "csrf_token": owner_client.csrf})
    token = re.search(r"pss_user:v1:[0-9a-f:]+", made.get_data(as_text=True)).group(0)
    bearer = token.split(":")[2]
    assert client.get("/v1/apps/", headers={
        "Authorization": f"Bearer User {bearer}"}).status_code == 200
    assert token not in owner_client.get("/console/account/").get_data(as_text=True)


def test_the_audit_log_names_actors_and_filters(db, demo, owner_client):
    app_row, envs = demo
    owner_client.post(env_url(app_row, envs["Development"]) + "secrets/new", data={
        "key": "K", "value": "v", "csrf_token": owner_client.csrf})
    page = owner_client.get("/console/audit/").get_data(as_text=True)
    assert "owner@example.com" in page and "secrets.create" in page
    assert ">demo<" in page and ">Development<" in page
    assert '<span class="mono">K</span>' in page  # the key's name, for a viewer who may read it
    filtered = owner_client.get("/console/audit/?event=sign_in").get_data(as_text=True)
    assert "secrets.create</td>" not in filtered and "sign_in" in filtered


# -- the admin command -----------------------------------------------------------------------


def test_set_password_from_stdin_and_init_prints_a_setup_link(tmp_path):
    env = {"PHASE_LITE_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    init = subprocess.run([sys.executable, "-m", "phase_lite.cli", "init", "--owner-email",
                           "me@example.com"], env=env, capture_output=True, text=True, check=True)
    assert re.search(r"http://127\.0\.0\.1:8080/console/welcome\?token=\S+", init.stdout)
    assert "phase-lite users set-password me@example.com" in init.stdout
    again = subprocess.run([sys.executable, "-m", "phase_lite.cli", "users", "setup-link",
                            "me@example.com"], env=env, capture_output=True, text=True,
                           check=True)
    assert re.fullmatch(r"http://127\.0\.0\.1:8080/console/welcome\?token=\S+\n", again.stdout)
    done = subprocess.run([sys.executable, "-m", "phase_lite.cli", "users", "set-password",
                           "me@example.com", "--password-stdin"], env=env,
                          input="a fine password\n", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    short = subprocess.run([sys.executable, "-m", "phase_lite.cli", "users", "set-password",
                            "me@example.com", "--password-stdin"], env=env, input="short\n",
                           capture_output=True, text=True)
    assert short.returncode == 1
    assert "at least 10 characters" in short.stderr
    from phase_lite.app import create_app
    from phase_lite.config import load_config

    flask_app = create_app(load_config(env, testing=True))
    try:
        assert sign_in(flask_app.test_client(), email="me@example.com",
                       password="a fine password").status_code == 303
    finally:
        flask_app.extensions["phase_lite"].close()


def test_the_audit_log_is_paginated(db, owner_client):
    from phase_lite import audit

    with db.transaction():
        for number in range(60):
            audit.record(db, None, audit.CLI_META, "prune", "audit_log",
                         details={"deleted": number})
    first = owner_client.get("/console/audit/?event=prune").get_data(as_text=True)
    assert first.count("<tr>") == 51 and "Older events" in first and "Newer events" not in first
    second = owner_client.get("/console/audit/?event=prune&page=1").get_data(as_text=True)
    assert second.count("<tr>") == 11 and "Newer events" in second
    assert "Older events" not in second and "(phase-lite command)" in second


def test_personal_override_and_sealed_secrets(db, demo, owner_client):
    app_row, envs = demo
    url = env_url(app_row, envs["Development"])
    for key, kind in (("MINE", "secret"), ("LOCKED", "sealed")):
        owner_client.post(url + "secrets/new", data={"key": key, "value": f"{key} value",
                                                     "type": kind,
                                                     "csrf_token": owner_client.csrf})
    page = owner_client.get(url).get_data(as_text=True)
    ids = {key: secret_id for secret_id, key in re.findall(
        r'<tr id="secret-([^"]+)">\s*<th scope="row" class="mono">([A-Z]+)', page)}
    owner_client.post(url + f"secrets/{ids['MINE']}/edit", data={
        "key": "MINE", "value": "MINE value", "path": "/", "type": "secret",
        "override_value": "only for me", "override_active": "1",
        "env_version": env_version(db, envs["Development"]), "csrf_token": owner_client.csrf})
    shown = owner_client.post(url + "reveal", data={
        "secret": [ids["MINE"], ids["LOCKED"]], "csrf_token": owner_client.csrf},
        headers={"Accept": "application/json"}).get_json()
    assert shown == {ids["MINE"]: {"value": "MINE value", "unresolved": False,
                                   "override": "only for me"}}
    sealed_form = owner_client.get(url + f"secrets/{ids['LOCKED']}/edit")
    assert "LOCKED value" not in sealed_form.get_data(as_text=True)
    assert owner_client.get(url + "export.json").get_json() == {"MINE": "MINE value"}
    every = owner_client.post(url + "reveal", data={"all": "1", "csrf_token": owner_client.csrf})
    assert "LOCKED value" not in every.get_data(as_text=True)
    assert "only for me" in every.get_data(as_text=True)


def test_a_service_accounts_role_can_change(db, owner_client, services):
    by = support.operator(services)
    service, manager = (accounts.role_by_name(services, by, name)
                        for name in ("Service", "Manager"))
    owner_client.post("/console/service-accounts/new", data={
        "name": "bot", "role_id": service["id"], "csrf_token": owner_client.csrf})
    sa = service_accounts.service_account_by_id_or_name(services, by, "bot")
    answer = owner_client.post(f"/console/service-accounts/{sa['id']}/role", data={
        "role_id": manager["id"], "csrf_token": owner_client.csrf})
    assert answer.status_code == 303
    sa = service_accounts.service_account_by_id_or_name(services, by, "bot")
    assert sa["role_name"] == "Manager"
    owner_role = accounts.role_by_name(services, by, "Owner")
    refused = owner_client.post(f"/console/service-accounts/{sa['id']}/role", data={
        "role_id": owner_role["id"], "csrf_token": owner_client.csrf})
    assert refused.status_code == 400
    assert "cannot be assigned the &#39;Owner&#39; role" in refused.get_data(as_text=True)


def test_deleted_secrets_can_be_found_and_restored(db, demo, owner_client):
    app_row, envs = demo
    url = env_url(app_row, envs["Staging"])
    owner_client.post(url + "secrets/new", data={"key": "GONE", "value": "was here",
                                                 "comment": "c", "tags": "t1",
                                                 "csrf_token": owner_client.csrf})
    secret_id = re.search(r'<tr id="secret-([^"]+)">',
                          owner_client.get(url).get_data(as_text=True)).group(1)
    owner_client.post(url + f"secrets/{secret_id}/delete", data=CONFIRMED | {
        "env_version": env_version(db, envs["Staging"]), "csrf_token": owner_client.csrf})
    page = owner_client.get(url + "deleted").get_data(as_text=True)
    assert ">GONE</th>" in page and "was here" not in page
    history = owner_client.get(url + f"secrets/{secret_id}/history").get_data(as_text=True)
    assert "This secret is deleted." in history and "deleted</span>" in history
    restored = owner_client.post(url + f"deleted/{secret_id}/restore", data={
        "env_version": env_version(db, envs["Staging"]), "csrf_token": owner_client.csrf})
    assert restored.status_code == 303
    assert owner_client.get(url + "export.json").get_json() == {"GONE": "was here"}
    again = owner_client.post(url + f"deleted/{secret_id}/restore", data={
        "env_version": env_version(db, envs["Staging"]), "csrf_token": owner_client.csrf})
    assert again.status_code == 404
    assert "This secret is not deleted." in again.get_data(as_text=True)
    page = owner_client.get(url).get_data(as_text=True)  # the same secret, undeleted
    assert f'<tr id="secret-{secret_id}">' in page and ">c</td>" in page and ">t1<" in page
    history = owner_client.get(url + f"secrets/{secret_id}/history").get_data(as_text=True)
    assert "restored from version 1" in history
    owner_client.post(url + f"secrets/{secret_id}/delete", data=CONFIRMED | {
        "env_version": env_version(db, envs["Staging"]), "csrf_token": owner_client.csrf})
    owner_client.post(url + "secrets/new", data={"key": "GONE", "value": "new one",
                                                 "csrf_token": owner_client.csrf})
    taken = owner_client.post(url + f"deleted/{secret_id}/restore", data={
        "env_version": env_version(db, envs["Staging"]), "csrf_token": owner_client.csrf})
    assert taken.status_code == 409
    assert "Duplicate secret found" in taken.get_data(as_text=True)


def test_session_timeouts_are_settings():
    from phase_lite.config import ConfigError, load_config

    config = load_config({"PHASE_LITE_SESSION_IDLE_MINUTES": "5",
                          "PHASE_LITE_SESSION_MAX_HOURS": "2"})
    assert (config.session_idle_minutes, config.session_max_hours) == (5, 2)
    defaults = load_config({})
    assert (defaults.session_idle_minutes, defaults.session_max_hours) == (60, 12)
    with pytest.raises(ConfigError, match="PHASE_LITE_SESSION_IDLE_MINUTES"):
        load_config({"PHASE_LITE_SESSION_IDLE_MINUTES": "0"})


def test_removing_an_invited_member_voids_their_link(app, services, owner_client):
    role = accounts.role_by_name(services, support.operator(services), "Developer")
    invited = owner_client.post("/console/members/invite", data={
        "email": "later@example.com", "role_id": role["id"], "csrf_token": owner_client.csrf})
    link = re.search(r'>http://localhost(/console/welcome\?token=[^<]+)</code>',
                     invited.get_data(as_text=True)).group(1)
    user = accounts.user_by_email(services, support.operator(services), "later@example.com")
    owner_client.post(f"/console/members/{user['id']}/remove",
                      data={"csrf_token": owner_client.csrf, "confirmed": "yes"})
    assert app.test_client().get(link).status_code == 404


# -- destructive actions ask first -----------------------------------------------------------


def _destructive(name, app, services, demo, owner_client):
    """(url, button, alive()) of one destructive action, its target made ready."""
    app_row, envs = demo
    if name == "delete secret":
        url = env_url(app_row, envs["Staging"])
        owner_client.post(url + "secrets/new", data={"key": "DOOMED", "value": "v",
                                                     "csrf_token": owner_client.csrf})
        secret_id = re.search(r'<tr id="secret-([^"]+)">',
                              owner_client.get(url).get_data(as_text=True)).group(1)
        return (url + f"secrets/{secret_id}/delete", "Delete secret",
                lambda: owner_client.get(url + "export.json").get_json() == {"DOOMED": "v"})
    if name in ("delete service account", "revoke service token"):
        role = accounts.role_by_name(services, support.operator(services), "Service")
        sa, _ = service_accounts.create_service_account(services, support.operator(services), {
            "name": "deployer", "role_id": role["id"], "token_name": "ci"}, support.TEST_META)
        sa_url = f"/console/service-accounts/{sa['id']}/"
        page = owner_client.get(sa_url).get_data(as_text=True)
        if name == "delete service account":
            return (sa_url + "delete", "Delete service account",
                    lambda: owner_client.get(sa_url).status_code == 200)
        token_id = re.search(r'/tokens/([^/]+)/revoke', page).group(1)
        return (sa_url + f"tokens/{token_id}/revoke", "Revoke token",
                lambda: ">ci</th>" in owner_client.get(sa_url).get_data(as_text=True))
    if name == "remove member":
        user = set_password(services, "dev@example.com", role="Developer")
        return (f"/console/members/{user['id']}/remove", "Remove member",
                lambda: "dev@example.com" in owner_client.get("/console/members/").get_data(
                    as_text=True))
    if name == "revoke personal token":
        support.user_token(services, "owner@example.com", "laptop")
        page = owner_client.get("/console/account/").get_data(as_text=True)
        token_id = re.search(r'/account/tokens/([^/]+)/revoke', page).group(1)
        return (f"/console/account/tokens/{token_id}/revoke", "Revoke token",
                lambda: ">laptop</th>" in owner_client.get("/console/account/").get_data(
                    as_text=True))
    other = app.test_client()
    sign_in(other)
    return ("/console/account/sign-out-others", "Sign out everywhere else",
            lambda: other.get("/console/apps/").status_code == 200)


@pytest.mark.parametrize("name", ["delete secret", "delete service account",
                                  "revoke service token", "remove member",
                                  "revoke personal token", "sign out everywhere else"])
def test_destructive_actions_ask_first_without_script(name, app, services, demo, owner_client):
    url, button, alive = _destructive(name, app, services, demo, owner_client)
    asked = owner_client.post(url, data={"csrf_token": owner_client.csrf})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and alive()
    form = re.search(r'<form method="post" action="([^"]+)" class="confirm">(.*?)</form>', page,
                     re.S)
    assert form.group(1) == url
    assert f'<button type="submit" class="danger">{button}</button>' in form.group(2)
    assert '<input type="hidden" name="confirmed" value="yes">' in form.group(2)
    assert owner_client.post(url, data=CONFIRMED | {"csrf_token": "forged"}).status_code == 403
    assert alive()
    carried = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">',
                              form.group(2)))
    done = owner_client.post(url, data=carried | {"csrf_token": csrf_of(asked)})
    assert done.status_code == 303 and not alive()


def test_destructive_buttons_carry_the_scripts_question(demo, owner_client):
    app_row, envs = demo
    url = env_url(app_row, envs["Staging"])
    owner_client.post(url + "secrets/new", data={"key": "K", "value": "v",
                                                 "csrf_token": owner_client.csrf})
    assert 'data-confirm="Delete K?"' in owner_client.get(url).get_data(as_text=True)
