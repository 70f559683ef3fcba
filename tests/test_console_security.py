"""The console's own security guarantees over HTTP (Flask test client): a GET or HEAD never
writes, whatever its body; every unsafe method needs the CSRF token; one-time links die with the
password they were for; unauthenticated forms are bounded; ``next`` stays local; the password
change is throttled like sign-in; out-of-range numbers and dates are a 400 page."""

import base64
import pytest
from werkzeug.exceptions import HTTPException
from click.testing import CliRunner

import support
from live import database_env
from phase_lite import accounts
from phase_lite.console.web import CAPABILITY_ENDPOINTS
from phase_lite.cli import main as cli_main
from phase_lite.console import sessions
from phase_lite.store import apps as app_store
from phase_lite.store import audit as audit_store

pytestmark = pytest.mark.both_backends

PASSWORD = support.CONSOLE_PASSWORD
csrf_of = support.csrf_of
sign_in = support.console_sign_in

TABLES = {"sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
          "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"}
READ_ACTIONS = ("secrets.read", "lockbox.read")


def fingerprint(db):
    """Every row of every table, leaving out what reads themselves record (read events, a
    session's or token's last use)."""
    state = {}
    for (table,) in db.all(TABLES[db.backend]):
        if table == "audit_read_sets":
            continue
        rows = [dict(row) for row in db.all(f"SELECT * FROM {table}")]
        if table == "audit_events":
            rows = [row for row in rows if not row["action"].startswith(READ_ACTIONS)]
        state[table] = sorted((tuple(sorted((name, value) for name, value in row.items()
                                            if name not in ("last_used_at", "last_seen_at")))
                               for row in rows), key=repr)
    return state


def events(db, action):
    return [row for row in audit_store.list_events(db, limit=1000) if row["action"] == action]


# -- 1 and 4: a GET or HEAD never writes; every unsafe method needs the token ----------------


@pytest.fixture
def world(app, services, owner_client, demo, owner_headers, client):
    """One of everything a console URL names: {url argument: value}."""
    app_row, envs = demo
    dev = envs["Development"]
    pat = support.SecretsRoutes(client, app_row["id"], owner_headers)
    written = pat.secrets("POST", [{"key": "KEEP", "value": "kept value", "comment": "note",
                                    "tags": ["t"]}])
    secret_id = written[0]["id"]
    sa, issued = support.make_service_account(services, "ci", "Service", [dev])
    member, _ = support.make_user(services, "member@example.com", "Developer", [dev])
    personal = support.user_token(services, "owner@example.com", "personal")
    share = support.lockbox_create(client, owner_headers)
    assert share.status_code == 201
    return {"app_id": app_row["id"], "env_id": dev["id"], "secret_id": secret_id,
            "sa_id": sa["id"], "token_id": issued.id, "user_id": member["id"],
            "share_id": share.json["id"], "kind": "env", "personal_token_id": personal.id,
            "link_id": support.lockbox_link_id(share),
            "data": base64.b64encode(f"17001-{'ab' * 32}-alice@laptop".encode()).decode()}


def console_urls(app, world):
    """(rule, url) of every console route (``/console/``, and the pages outside it: a Lockbox
    link's page, ``phase auth``'s ``/webauth/``), with real ids in its arguments."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        if not rule.endpoint.startswith("console.") or rule.endpoint == "console.static":
            continue
        values = {name: world[name] for name in rule.arguments}
        if rule.endpoint == "console.revoke_personal_token":
            values["token_id"] = world["personal_token_id"]
        yield rule, app.url_map.bind("localhost").build(rule.endpoint, values)


def acts_on_its_url_alone(app, url, method):
    try:
        endpoint, _ = app.url_map.bind("localhost").match(url, method=method)
    except HTTPException:
        return False
    return endpoint in CAPABILITY_ENDPOINTS


def form_body(owner_client, world):
    """A body that would make any console form act, the CSRF token included."""
    return {"csrf_token": owner_client.csrf, "confirmed": "yes", "value": "", "comment": "",
            "tags": "", "key": "CHANGED", "path": "/", "name": "changed", "description": "",
            "typed_name": "demo", "text": "", "step": "apply", "version": "1",
            "role_id": support.role_id(owner_client.application.extensions["phase_lite"],
                                       "Developer"),
            "environment": world["env_id"], "email": "new@example.com",
            "current_password": PASSWORD, "new_password": "x" * 20, "confirmation": "x" * 20,
            "before": world["env_id"], "secret": f"{world['env_id']}/{world['secret_id']}"}


def test_every_console_route_refuses_head_get_bodies_and_unsafe_methods_without_a_token(
        app, db, owner_client, world):
    body = form_body(owner_client, world)
    tokenless = {name: value for name, value in body.items() if name != "csrf_token"}
    before = fingerprint(db)
    checked = 0
    for rule, url in console_urls(app, world):
        for method in ("HEAD", "GET"):
            # a HEAD is routed to the GET view; neither ever acts, whatever its body
            for accept in ("text/html", "application/json"):
                answer = owner_client.open(url, method=method, data=body,
                                           headers={"Accept": accept})
                assert answer.status_code < 500, (method, url, answer.status_code)
            assert fingerprint(db) == before, (method, url)
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            if acts_on_its_url_alone(app, url, method):
                continue  # a Lockbox link's reveal: the capability is the URL itself
            answer = owner_client.open(url, method=method, data=tokenless)
            expected = (403,) if method in rule.methods else (403, 405)
            assert answer.status_code in expected, (method, url, answer.status_code)
            assert fingerprint(db) == before, (method, url)
        checked += 1
    assert checked >= 45  # every console route was tried (the map has 49 today)


def test_head_of_the_editor_and_the_settings_keeps_the_secret_and_the_app(
        owner_client, world, services, db):
    """The holes as reported: ``curl -I`` of the editor emptied the secret, of the settings
    the app's description."""
    base = f"/console/apps/{world['app_id']}"
    owner_client.post(f"{base}/settings", data={"csrf_token": owner_client.csrf,
                                                "name": "demo", "description": "kept"})
    before = fingerprint(db)
    editor = f"{base}/environments/{world['env_id']}/secrets/{world['secret_id']}/edit"
    assert owner_client.head(editor).status_code == 200
    assert owner_client.head(f"{base}/settings").status_code == 200
    assert fingerprint(db) == before
    page = owner_client.get(editor).get_data(as_text=True)
    assert "kept value" in page and "note" in page


def test_a_get_with_a_confirmed_body_neither_deletes_nor_revokes(owner_client, world, db):
    secret = (f"/console/apps/{world['app_id']}/environments/{world['env_id']}/secrets/"
              f"{world['secret_id']}/delete")
    revoke = f"/console/lockbox/{world['share_id']}/revoke"
    before = fingerprint(db)
    for url in (secret, revoke):
        body = {"confirmed": "yes", "csrf_token": owner_client.csrf}
        asked = owner_client.get(url, data=body)
        assert asked.status_code == 200 and "<form" in asked.get_data(as_text=True)
    assert fingerprint(db) == before
    assert not events(db, "secrets.delete") and not events(db, "lockbox.revoke")
    # the same confirmation as a POST with the token acts
    done = owner_client.post(revoke, data={"confirmed": "yes", "csrf_token": owner_client.csrf})
    assert done.status_code == 303 and len(events(db, "lockbox.revoke")) == 1


# -- 5: ``next`` stays a local console path ---------------------------------------------------

UNSAFE_NEXT = [
    "/console/apps/\r\nX-Injected: 1", "/console/apps/\nX-Injected: 1", "/console/\x00",
    "/console/\t", "/console/\x7f", "/console/\x85", "/console/\u2028", "/console/\u200b",
    "/console/a b", "https://evil.example/console/", "//evil.example/console/",
    "///evil.example/console/", "/\\evil.example/console/", "\\\\evil.example/console/",
    "/console\\..\\..\\evil", "javascript:alert(1)//console/", "/console/../../evil",
    " /console/", "/elsewhere/", "console/", "/console/" + "a" * 3000,
]


def test_an_unsafe_next_is_dropped_quietly(client, owner_client):
    for target in UNSAFE_NEXT:
        page = client.get("/console/sign-in", query_string={"next": target})
        assert page.status_code == 200, repr(target)
        assert 'name="next"' not in page.get_data(as_text=True), repr(target)
        signed_in = owner_client.get("/console/sign-in", query_string={"next": target})
        assert signed_in.status_code == 303, repr(target)
        assert signed_in.location == "/console/apps/", repr(target)
        assert "X-Injected" not in signed_in.headers


def test_the_reported_next_answers_the_sign_in_page(client, owner_client):
    path = "/console/sign-in?next=/console/apps/%0D%0AX-Injected:%201"
    assert client.get(path).status_code == 200
    answer = owner_client.get(path)
    assert answer.status_code == 303 and answer.location == "/console/apps/"


def test_a_safe_next_is_followed_after_signing_in(app, services):
    support.set_console_password(services, "owner@example.com", PASSWORD)
    visitor = app.test_client()
    sent = visitor.get("/console/audit/?event=sign_in&page=1")
    assert sent.status_code == 303 and "next=" in sent.location
    token = csrf_of(visitor.get(sent.location))
    answer = visitor.post("/console/sign-in", data={
        "email": "owner@example.com", "password": PASSWORD, "csrf_token": token,
        "next": "/console/audit/?event=sign_in&page=1"})
    assert answer.status_code == 303 and answer.location == "/console/audit/?event=sign_in&page=1"


# -- 12: out-of-range numbers and dates are a 400 page ------------------------------------------

HUGE = str(10 ** 22)


def test_out_of_range_audit_pages_and_days_are_a_400_page(owner_client):
    for query in (f"page={HUGE}", "page=99999999999999999999999", "page=-1", "page=x",
                  "page=\u0663", "until=9999-12-31", "since=10000-01-01", "until=2026-02-30",
                  "since=yesterday"):
        answer = owner_client.get(f"/console/audit/?{query}")
        assert answer.status_code == 400, query
        assert answer.mimetype == "text/html" and "<h1>" in answer.get_data(as_text=True)
    for query in ("page=1", "page=" + str((2 ** 63 - 1) // 50 - 1), "since=0001-01-01",
                  "until=9999-12-30", ""):
        assert owner_client.get(f"/console/audit/?{query}").status_code == 200, query


def test_out_of_range_versions_are_a_400_page_and_change_nothing(owner_client, world, db):
    env = f"/console/apps/{world['app_id']}/environments/{world['env_id']}"
    secret = f"{env}/secrets/{world['secret_id']}"
    before = fingerprint(db)
    for version in (HUGE, str(2 ** 63), "-1", "1e3", "\u0661"):
        for url, extra in ((f"{secret}/restore", {}), (f"{secret}/history", {}),
                           (f"{env}/bulk-edit", {"text": "A=1\n"}),
                           (f"{env}/import", {"text": "A=1\n", "step": "apply"})):
            answer = owner_client.post(url, data={"csrf_token": owner_client.csrf,
                                                  "version": version, **extra})
            assert answer.status_code == 400, (url, version, answer.status_code)
            assert answer.mimetype == "text/html"
    assert fingerprint(db) == before
    for version in (HUGE, "-1", "\u0661"):  # a form's environment version, likewise
        answer = owner_client.post(f"{secret}/edit", data={
            "csrf_token": owner_client.csrf, "value": "x", "env_version": version})
        assert answer.status_code == 400, (version, answer.status_code)
    assert fingerprint(db) == before
    current = app_store.environment_versions(db, [world["env_id"]])[world["env_id"]]
    restored = owner_client.post(f"{secret}/restore", data={
        "csrf_token": owner_client.csrf, "version": "1", "env_version": str(current)})
    assert restored.status_code == 303


def test_a_notice_with_odd_numbers_is_left_out(owner_client):
    for number in ("\u00b2", "9" * 5000, "-1"):
        page = owner_client.get(f"/console/account/?notice=signed_out_others&ended={number}")
        assert page.status_code == 200
        assert "other session(s)" not in page.get_data(as_text=True)
    page = owner_client.get("/console/account/?notice=signed_out_others&ended=2")
    assert "Signed out 2 other session(s)." in page.get_data(as_text=True)


def test_the_rest_api_refuses_out_of_range_numbers_with_its_error_shape(
        client, world, owner_headers):
    pat = support.SecretsRoutes(client, world["app_id"], owner_headers)
    for raw in ('{"version": %s}' % HUGE, '{"version": %d}' % 2 ** 63, '{"version": -1}',
                '{"version": 1e30}'):
        answer = pat.restore(world["secret_id"], raw=raw)
        assert answer.status_code == 400 and list(answer.json) == ["error"], raw
    for query in ({"lease_ttl": HUGE, "dynamic": "true"}, {"lease_ttl": "9" * 5000,
                                                           "dynamic": "true"}):
        answer = pat.get(**query)
        assert answer.status_code in (200, 400) and answer.status_code < 500, query
        if answer.status_code == 400:
            assert list(answer.json) == ["error"]
    for params in ({"secret_id": HUGE}, {"page": HUGE, "until": "9999-12-31"}):
        answer = client.get(pat.url(f"{world['secret_id']}/history/", None, **params),
                            headers=owner_headers)
        assert answer.status_code < 500, params


# -- 2: one-time links die with the password they were for --------------------------------------


def admin(config, *args, stdin=None):
    """The ``phase-lite`` admin command on the test's data, in process; its output."""
    result = CliRunner().invoke(cli_main, list(args), env=database_env(config), input=stdin,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def setup_link(config, email="owner@example.com"):
    """``phase-lite users setup-link``'s link, as a path."""
    url = admin(config, "users", "setup-link", email).strip()
    return url[url.index("/console/"):]


def choose_password(app, link, password="chosen by link 1"):
    """Open a one-time link in a fresh browser and choose a password: (page status, answer)."""
    guest = app.test_client()
    page = guest.get(link)
    if page.status_code != 200:
        return page.status_code, None
    return 200, guest.post(link, data={"password": password, "confirmation": password,
                                       "csrf_token": csrf_of(page)})


def assert_dead(app, link):
    status, _ = choose_password(app, link)
    assert status == 404, link
    guest = app.test_client()
    token = csrf_of(guest.get("/console/sign-in"))
    refused = guest.post(link, data={"password": "chosen by link 1", "csrf_token": token,
                                     "confirmation": "chosen by link 1"})
    assert refused.status_code == 404 and guest.get("/console/apps/").status_code == 303


def test_the_admin_commands_set_password_voids_every_earlier_link(app, config, services):
    link = setup_link(config)
    assert app.test_client().get(link).status_code == 200
    admin(config, "users", "set-password", "owner@example.com", "--password-stdin",
          stdin="set by the operator\n")
    assert_dead(app, link)
    assert sign_in(app.test_client(), password="set by the operator").status_code == 303
    assert sign_in(app.test_client(), password="chosen by link 1").status_code == 401


def test_a_newer_link_voids_the_older_one_and_using_it_voids_the_rest(app, config, services, db):
    older, newer = setup_link(config), setup_link(config)
    assert_dead(app, older)
    status, done = choose_password(app, newer)
    assert status == 200 and done.status_code == 303
    assert_dead(app, older)
    assert_dead(app, newer)
    # an invitation, then a setup link for the same user: only the newest opens
    role = support.role_id(services, "Developer")
    user = accounts.create_user(services, support.operator(services),
                                {"email": "new@example.com", "role_id": role}, support.TEST_META)
    invitation = "/console/welcome?token=" + sessions.issue_link(db, "invite", user["id"])
    fresh = setup_link(config, "new@example.com")
    assert_dead(app, invitation)
    assert app.test_client().get(fresh).status_code == 200


def test_a_console_password_change_voids_the_users_links(app, config, owner_client):
    link = setup_link(config)
    changed = owner_client.post("/console/account/password", data={
        "csrf_token": owner_client.csrf, "current_password": PASSWORD,
        "new_password": "changed in the console", "confirmation": "changed in the console"})
    assert changed.status_code == 303
    assert_dead(app, link)


# -- 3: unauthenticated forms are bounded; throttles count digests -------------------------------


def anonymous_form(client, path="/console/sign-in"):
    """A visitor's form token (the double-submit cookie goes along)."""
    return csrf_of(client.get(path))


def test_a_large_anonymous_body_is_refused_before_it_is_read(app, services, config, world):
    support.set_console_password(services, "owner@example.com", PASSWORD)
    visitor = app.test_client()
    token = anonymous_form(visitor)
    link = setup_link(config, "member@example.com")
    big = "a" * (64 * 1024)
    for path in ("/console/sign-in", link, f"/lockbox/{world['link_id']}", "/console/apps/new",
                 "/console/sign-out"):
        for _ in range(25):  # more than the address may try
            answer = visitor.post(path, data={"csrf_token": token, "email": big + "@x.example",
                                              "password": big, "confirmation": big})
            assert answer.status_code == 413, (path, answer.status_code)
    assert app.test_client().get(link).status_code == 200  # the link is still unused
    assert sign_in(visitor).status_code == 303  # nothing counted against the address


def test_oversized_fields_are_refused_uncounted_and_not_echoed(app, services, config, db):
    support.set_console_password(services, "owner@example.com", PASSWORD)
    visitor = app.test_client()
    token = anonymous_form(visitor)
    long_email = "e" * 250 + "@example.com"
    for fields in ({"email": long_email, "password": "x" * 12},
                   {"email": "owner@example.com", "password": "\u00e9" * 2049}):
        for _ in range(12):  # more than the email may try
            answer = visitor.post("/console/sign-in", data={"csrf_token": token, **fields})
            assert answer.status_code == 400
            text = answer.get_data(as_text=True)
            assert "The email or password is too long." in text and long_email not in text
    assert sign_in(visitor).status_code == 303
    link = setup_link(config)
    guest = app.test_client()
    page = guest.get(link)
    long_password = "p" * 4097
    refused = guest.post(link, data={"csrf_token": csrf_of(page), "password": long_password,
                                     "confirmation": long_password})
    assert refused.status_code == 400
    assert "The email or password is too long." in refused.get_data(as_text=True)


def test_the_sign_in_throttle_keeps_fixed_size_keys(app, services):
    throttle = app.extensions["phase_lite_console_throttle"]
    visitor = app.test_client()
    token = anonymous_form(visitor)
    typed = "Someone.Typed.Their.Password.Here@Example.com"
    visitor.post("/console/sign-in", data={"csrf_token": token, "email": typed,
                                           "password": "x" * 12})
    if isinstance(throttle, sessions.SignInThrottle):  # (node scope: the in-memory windows)
        emails = [value for kind, value in throttle._history if kind == "email"]
        assert emails == [sessions.email_key(typed)] and len(emails[0]) == 64
        assert "password" not in repr(throttle._history).lower()


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_twenty_huge_sign_ins_leave_the_server_s_memory_alone(live_server):
    """The attack as reported, against ``phase-lite serve``: twenty sign-ins with 4 MiB
    emails from one address used to keep ~107 MiB for the throttle's 15 minutes."""
    import requests

    visitor = requests.Session()
    page = visitor.get(live_server.url + "/console/sign-in")
    token = support.CSRF.search(page.text).group(1)
    visitor.post(live_server.url + "/console/sign-in",  # the hashing's memory, once
                 data={"csrf_token": token, "email": "warm@example.com", "password": "x" * 12})
    before = rss_bytes(live_server.process.pid)
    for number in range(19):  # twenty attempts in all, the address's limit
        email = f"{number}" + "a" * (4 * 1024 * 1024) + "@example.com"
        answer = visitor.post(live_server.url + "/console/sign-in",
                              data={"csrf_token": token, "email": email, "password": "x" * 12})
        assert answer.status_code in (401, 413)
    grown = rss_bytes(live_server.process.pid) - before
    assert grown < 24 * 1024 * 1024, f"the server grew by {grown / 2 ** 20:.0f} MiB"


# -- 8: the current password is guessed no faster than at sign-in -------------------------------


def change_password(client, current, new="a brand new password"):
    return client.post("/console/account/password", data={
        "csrf_token": client.csrf, "current_password": current, "new_password": new,
        "confirmation": new})


def test_wrong_current_passwords_are_throttled_and_audited_like_sign_ins(
        app, db, owner_client, services):
    user = accounts.user_by_email(services, support.operator(services), "owner@example.com")
    stored = db.scalar("SELECT password_hash FROM user_passwords WHERE user_id = ?",
                       (user["id"],))
    statuses = [change_password(owner_client, f"guess number {n}").status_code
                for n in range(12)]
    # ten failures, then refused (the fixture's sign-in succeeded: it does not count)
    assert statuses == [403] * 10 + [429] * 2
    refused = change_password(owner_client, PASSWORD)  # even the right one, for now
    assert refused.status_code == 429
    assert "Too many password attempts" in refused.get_data(as_text=True)
    assert sign_in(app.test_client()).status_code == 429  # one budget per user
    assert db.scalar("SELECT password_hash FROM user_passwords WHERE user_id = ?",
                     (user["id"],)) == stored
    refusals = events(db, "password_refused")
    assert len(refusals) == 10
    assert {(row["actor_type"], row["actor_id"], row["resource_id"], row["channel"])
            for row in refusals} == {("user", user["id"], user["id"], "console")}


def test_a_refused_sign_in_of_a_known_user_is_audited(app, db, owner, services):
    user = support.set_console_password(services, "owner@example.com", PASSWORD)
    visitor = app.test_client()
    assert sign_in(visitor, password="not the password").status_code == 401
    assert sign_in(visitor, email="nobody@example.com").status_code == 401
    (refusal,) = events(db, "sign_in_refused")
    assert (refusal["actor_type"], refusal["actor_id"], refusal["resource_id"]) == (
        "visitor", None, user["id"])
    assert refusal["channel"] == "console"
    owner_client = app.test_client()
    sign_in(owner_client)
    page = owner_client.get("/console/audit/?event=sign_in_refused").get_data(as_text=True)
    assert "someone signing in" in page
