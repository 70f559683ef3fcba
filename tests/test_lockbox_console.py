"""Lockbox in the console over HTTP (Flask test client): the share form (blank and from a
secret), CSRF, the creator's list and revoke, and the share page that counts no view on GET."""

import json
import re

import pytest

import support
from phase_lite import lockbox
from phase_lite.store import audit as audit_store

pytestmark = pytest.mark.both_backends

CONFIRMED = support.CONFIRMED
csrf_of = support.csrf_of
env_url = support.console_env_url
sign_in = support.console_sign_in
seal = support.lockbox_seal
unseal = support.lockbox_unseal


def set_password(services, email, password=support.CONSOLE_PASSWORD, role=None):
    return support.set_console_password(services, email, password, role)

JSON = {"Accept": "application/json"}


def create(client, **fields):
    ciphertext, key = seal()
    body = {"csrf_token": client.csrf, "ciphertext": ciphertext, "expires_in": "86400",
            "views": "1", **fields}
    answer = client.post("/console/lockbox/new", data=body, headers=JSON)
    return answer, key


def lockbox_events(db):
    return [row for row in audit_store.list_events(db, limit=1000)
            if row["action"].startswith("lockbox.")]


def test_the_blank_form_names_its_fields_and_never_posts_the_value(owner_client):
    page = owner_client.get("/console/lockbox/new")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    for label in ("Value", "Expires", "Views"):
        assert re.search(rf'<label for="[^"]+">{label}</label>', text), label
    assert ">Create link</button>" in text and ">Link</label>" in text
    assert re.search(r'<textarea id="share-value"(?![^>]*\bname=)[^>]*>', text)
    assert '<script src="/static/console/lockbox.js" type="module"></script>' in text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    listing = owner_client.get("/console/lockbox/").get_data(as_text=True)
    assert 'href="/console/lockbox/"' in listing and ">New share</button>" in listing
    for name in ("chacha.js", "_arx.js", "_poly1305.js", "utils.js", "LICENSE", "VERSION"):
        with owner_client.get(f"/static/console/vendor/noble-ciphers/{name}") as served:
            assert served.status_code == 200, name
    with owner_client.get("/static/console/lockbox.js") as script:
        assert "javascript" in script.mimetype


def test_a_secret_row_offers_share_filled_with_its_value(owner_client, demo, services, db):
    app_row, envs = demo
    env = envs["Development"]
    client = owner_client
    token = csrf_of(client.get(env_url(app_row, env)))
    for key, value, kind in (("PLAIN", "plain value", "secret"), ("SEALED", "x", "sealed")):
        client.post(env_url(app_row, env) + "secrets/new", data={
            "key": key, "value": value, "type": kind, "csrf_token": token})
    page = client.get(env_url(app_row, env)).get_data(as_text=True)
    services.read_log.flush()
    shares = re.findall(r'href="([^"]+/share)">.*?<span class="visually-hidden">Share (\w+)</span>',
                        page)
    assert [name for _, name in shares] == ["PLAIN"]  # a sealed value is never revealed
    reads = len([e for e in audit_store.list_events(db, limit=1000)
                 if e["action"] == "secrets.read"])
    form = client.get(shares[0][0].replace("&amp;", "&"))
    text = form.get_data(as_text=True)
    assert form.status_code == 200
    assert re.search(r'<textarea id="share-value"[^>]*>plain value</textarea>', text)
    services.read_log.flush()
    assert len([e for e in audit_store.list_events(db, limit=1000)
                if e["action"] == "secrets.read"]) == reads + 1  # the value was revealed
    sealed_id = next(s["id"] for s in client.get(
        f"/v1/secrets/?app_id={app_row['id']}&env=Development",
        headers=support.bearer_headers(support.make_user_token(
            services, "reader@example.com", "Admin")[1])).json if s["key"] == "SEALED")
    refused = client.get(env_url(app_row, env) + f"secrets/{sealed_id}/share")
    assert refused.status_code == 400 and "sealed" in refused.get_data(as_text=True)


def test_creating_needs_the_form_token_and_writes_nothing_without_it(owner_client, db):
    for token in (None, "forged"):
        body = {"ciphertext": seal()[0], "expires_in": "86400", "views": "1"}
        if token:
            body["csrf_token"] = token
        answer = owner_client.post("/console/lockbox/new", data=body, headers=JSON)
        assert answer.status_code == 403
    assert db.scalar("SELECT count(*) FROM lockbox_shares") == 0
    assert lockbox_events(db) == []


def test_a_share_is_created_audited_on_the_console_channel(owner_client, db):
    answer, _ = create(owner_client, views="2", expires_in=str(7 * 86400))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json["link"].startswith("/lockbox/") and answer.json["views"] == 2
    [event] = lockbox_events(db)
    assert (event["action"], event["channel"], event["actor_type"]) == (
        "lockbox.create", "console", "user")


@pytest.mark.parametrize("fields, message", [
    ({"views": "0"}, lockbox.VIEWS_INVALID), ({"views": "many"}, lockbox.VIEWS_INVALID),
    ({"expires_in": "30"}, lockbox.EXPIRY_INVALID),
    ({"expires_in": str(91 * 86400)}, lockbox.EXPIRY_INVALID),
    ({"ciphertext": "%%%"}, lockbox.CIPHERTEXT_INVALID),
])
def test_invalid_forms_are_refused_with_the_api_messages(owner_client, db, fields, message):
    answer, _ = create(owner_client, **fields)
    assert (answer.status_code, answer.json) == (400, {"error": message})
    assert db.scalar("SELECT count(*) FROM lockbox_shares") == 0


def test_without_the_script_nothing_is_shared(owner_client, db):
    for fields in ({}, {"ciphertext": seal()[0]}):
        answer = owner_client.post("/console/lockbox/new", data={
            "csrf_token": owner_client.csrf, "views": "1", "expires_in": "86400", **fields})
        assert answer.status_code == 400
        assert "needs JavaScript" in answer.get_data(as_text=True)
    assert db.scalar("SELECT count(*) FROM lockbox_shares") == 0
    answer, _ = create(owner_client, ciphertext="")
    assert (answer.status_code, answer.json) == (400, {"error": lockbox.CIPHERTEXT_MISSING})


def test_the_share_page_counts_no_view_until_reveal(owner_client, app, db):
    answer, key = create(owner_client)
    link = answer.json["link"]
    visitor = app.test_client()  # no session
    for _ in range(3):  # link previews and reloads
        page = visitor.get(link)
        text = page.get_data(as_text=True)
        assert page.status_code == 200 and ">Reveal</button>" in text
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert page.headers["Cache-Control"] == "no-store"
    assert db.scalar("SELECT views_left FROM lockbox_shares") == 1
    revealed = visitor.post(link, headers=JSON)  # no CSRF token: the link is the capability
    assert revealed.status_code == 200 and revealed.json["viewsLeft"] == 0
    assert unseal(revealed.json["ciphertext"], key).startswith("hunter2")
    again = visitor.post(link, headers=JSON)
    assert (again.status_code, again.json) == (404, {"error": lockbox.SHARE_GONE})
    gone = visitor.get(link)
    assert gone.status_code == 404 and "This share is gone" in gone.get_data(as_text=True)
    assert ">Reveal</button>" not in gone.get_data(as_text=True)
    view = next(e for e in lockbox_events(db) if e["action"] == "lockbox.view")
    assert (view["channel"], view["actor_type"]) == ("console", "anonymous")


def test_the_creator_lists_and_revokes_shares(owner_client, app, services, db):
    first, _ = create(owner_client, views="3")
    second, _ = create(owner_client)
    listing = owner_client.get("/console/lockbox/").get_data(as_text=True)
    assert listing.count(">live</td>") == 2 and "3 of 3" in listing
    [share_id, _] = [row["id"] for row in db.all(
        "SELECT id FROM lockbox_shares ORDER BY created_at, rowid")]
    revoke = f"/console/lockbox/{share_id}/revoke"
    asked = owner_client.post(revoke, data={"csrf_token": owner_client.csrf})
    assert asked.status_code == 200 and "Revoke this share?" in asked.get_data(as_text=True)
    assert app.test_client().get(first.json["link"]).status_code == 200
    done = owner_client.post(revoke, data={"csrf_token": owner_client.csrf, **CONFIRMED})
    assert done.status_code == 303
    assert app.test_client().get(first.json["link"]).status_code == 404
    listing = owner_client.get(done.location).get_data(as_text=True)
    assert "Share revoked" in listing and "gone: revoked" in listing
    assert listing.count(">live</td>") == 1

    set_password(services, "admin@example.com", role="Admin")
    other = app.test_client()
    sign_in(other, "admin@example.com")
    token = csrf_of(other.get("/console/lockbox/"))
    refused = other.post(f"/console/lockbox/{second.json['id']}/revoke",
                         data={"csrf_token": token, **CONFIRMED})
    assert refused.status_code == 404
    assert ">live</td>" not in other.get("/console/lockbox/").get_data(as_text=True)
    assert app.test_client().get(second.json["link"]).status_code == 200


def test_signed_out_visitors_are_sent_to_sign_in(client):
    for path in ("/console/lockbox/", "/console/lockbox/new"):
        answer = client.get(path)
        assert answer.status_code == 303 and "/console/sign-in" in answer.location


def test_audit_page_names_anonymous_views(owner_client, app, db):
    answer, _ = create(owner_client)
    app.test_client().post(answer.json["link"], headers=JSON)
    page = owner_client.get("/console/audit/").get_data(as_text=True)
    assert "anyone with the link" in page and "the server" in page
    assert json.dumps(answer.json["link"])[2:30] not in page
