"""Lockbox shares over REST (``POST /v1/lockbox/``, ``GET /v1/lockbox/<id>/``, the caller's list
``GET /v1/lockbox/`` and ``DELETE /v1/lockbox/shares/<share_id>/``) and the domain functions
behind them, on SQLite and PostgreSQL: the contract (auth, validation, expiry and
views bounds, gone = 404), one view per GET even under concurrent reveals, purges, audit events
without content, and the link's id kept out of the database and the access log."""

import base64
import hashlib
import json
import threading

import pytest
import requests

import support
from phase_lite import lockbox
from phase_lite.errors import DoesNotExist
from phase_lite.store import audit as audit_store

pytestmark = pytest.mark.both_backends

AAD = support.LOCKBOX_AAD
VALUE = support.LOCKBOX_VALUE
GONE = {"error": lockbox.SHARE_GONE}
NOT_FOUND = {"error": lockbox.SHARE_NOT_FOUND}
MISSING = "00000000-0000-0000-0000-000000000000"
PREFIXES = ("", "/public", "/service", "/service/public")
seal = support.lockbox_seal
unseal = support.lockbox_unseal
create = support.lockbox_create
link_id = support.lockbox_link_id


def share_row(db, share_id):
    return db.one("SELECT * FROM lockbox_shares WHERE id = ?", (share_id,))


def actions(db):
    return [row["action"] for row in audit_store.list_events(db, limit=1000)
            if row["action"].startswith("lockbox.")]


def test_a_share_round_trip_opens_once_then_is_gone(client, owner_headers, db):
    ciphertext, key = seal()
    made = client.post("/v1/lockbox/", headers=owner_headers,
                       json={"ciphertext": ciphertext})
    assert made.status_code == 201, made.json
    assert set(made.json) == {"id", "link", "url", "createdAt", "expiresAt", "views"}
    assert made.json["url"] == "http://localhost" + made.json["link"]
    assert made.json["views"] == 1 and made.json["link"].startswith("/lockbox/")
    opened = client.get(f"/v1/lockbox/{link_id(made)}/")  # no token
    assert opened.status_code == 200
    assert opened.json["viewsLeft"] == 0
    assert unseal(opened.json["ciphertext"], key) == VALUE
    again = client.get(f"/v1/lockbox/{link_id(made)}/")
    assert (again.status_code, again.json) == (404, GONE)
    row = share_row(db, made.json["id"])
    assert row["ciphertext"] is None and row["end_reason"] == "viewed"
    assert row["views_left"] == 0


def test_views_count_down_and_the_last_one_deletes(client, owner_headers, db):
    made = create(client, owner_headers, views=3)
    left = [client.get(f"/v1/lockbox/{link_id(made)}/").json["viewsLeft"] for _ in range(3)]
    assert left == [2, 1, 0]
    assert client.get(f"/v1/lockbox/{link_id(made)}/").status_code == 404
    assert share_row(db, made.json["id"])["ciphertext"] is None


def test_every_prefix_and_a_service_account_token(client, sa_headers):
    for prefix in PREFIXES:
        made = create(client, sa_headers, prefix)
        assert made.status_code == 201, (prefix, made.json)
        assert client.get(f"{prefix}/v1/lockbox/{link_id(made)}/").status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer pss_service:v2:nonsense"},
                                     {"Authorization": "Basic eDp5"}])
def test_creating_needs_a_token(client, db, headers):
    answer = create(client, headers)
    assert answer.status_code == 401 and list(answer.json) == ["error"]
    assert db.scalar("SELECT count(*) FROM lockbox_shares") == 0


def test_a_revoked_token_cannot_create(client, services, owner):
    user, issued = support.make_user_token(services, "dev@example.com", "Developer")
    assert create(client, support.bearer_headers(issued)).status_code == 201
    support.revoke(services, issued.id)
    assert create(client, support.bearer_headers(issued)).status_code == 401


TOO_LARGE = "A" * ((24 + lockbox.MAX_VALUE_BYTES + 16) * 4 // 3 + 8)


@pytest.mark.parametrize("body, message", [
    ({}, lockbox.CIPHERTEXT_MISSING),
    ({"ciphertext": ""}, lockbox.CIPHERTEXT_MISSING),
    ({"ciphertext": 12}, lockbox.CIPHERTEXT_INVALID),
    ({"ciphertext": "not base64!"}, lockbox.CIPHERTEXT_INVALID),
    ({"ciphertext": "A" * 53}, lockbox.CIPHERTEXT_INVALID),  # 39 bytes: shorter than nonce+tag
    ({"ciphertext": "A" * 5}, lockbox.CIPHERTEXT_INVALID),  # not a length base64 makes
    ({"ciphertext": TOO_LARGE}, lockbox.VALUE_TOO_LARGE),
    ({"expiresIn": 59}, lockbox.EXPIRY_INVALID),
    ({"expiresIn": 90 * 86400 + 1}, lockbox.EXPIRY_INVALID),
    ({"expiresIn": 0}, lockbox.EXPIRY_INVALID),
    ({"expiresIn": -86400}, lockbox.EXPIRY_INVALID),
    ({"expiresIn": 3600.5}, lockbox.EXPIRY_INVALID),
    ({"expiresIn": True}, lockbox.EXPIRY_INVALID),
    ({"expiresIn": "soon"}, lockbox.EXPIRY_INVALID),
    ({"expiresIn": None}, lockbox.EXPIRY_INVALID),
    ({"views": 0}, lockbox.VIEWS_INVALID),
    ({"views": lockbox.MAX_VIEWS + 1}, lockbox.VIEWS_INVALID),
    ({"views": -1}, lockbox.VIEWS_INVALID),
    ({"views": 1.5}, lockbox.VIEWS_INVALID),
    ({"views": False}, lockbox.VIEWS_INVALID),
    ({"views": [1]}, lockbox.VIEWS_INVALID),
    ({"views": "\u00b2"}, lockbox.VIEWS_INVALID),  # a digit to str.isdigit, not to int()
    ({"views": " 2"}, lockbox.VIEWS_INVALID),
    ({"expiresIn": "\u0663600"}, lockbox.EXPIRY_INVALID),
])
def test_invalid_requests_are_400_and_write_nothing(client, owner_headers, db, body, message):
    full = {"ciphertext": seal()[0], **body}
    if body == {}:
        full = {}
    events = len(audit_store.list_events(db, limit=1000))
    answer = client.post("/v1/lockbox/", headers=owner_headers, json=full)
    assert (answer.status_code, answer.json) == (400, {"error": message})
    assert db.scalar("SELECT count(*) FROM lockbox_shares") == 0
    assert len(audit_store.list_events(db, limit=1000)) == events


@pytest.mark.parametrize("raw", [b"", b"[", b"[1]", b'"text"'])
def test_bodies_that_are_not_json_objects_are_400(client, owner_headers, db, raw):
    answer = client.post("/v1/lockbox/", headers=owner_headers, data=raw,
                         content_type="application/json")
    assert answer.status_code == 400 and list(answer.json) == ["error"]
    assert db.scalar("SELECT count(*) FROM lockbox_shares") == 0


@pytest.mark.parametrize("seconds", [lockbox.MIN_EXPIRY, lockbox.DAY, 7 * lockbox.DAY,
                                     30 * lockbox.DAY, lockbox.MAX_EXPIRY])
def test_expiry_bounds_are_accepted(client, owner_headers, db, seconds):
    made = create(client, owner_headers, expiresIn=seconds, views=lockbox.MAX_VIEWS)
    assert made.status_code == 201, made.json
    row = share_row(db, made.json["id"])
    assert row["expires_at"] == made.json["expiresAt"]
    assert row["max_views"] == row["views_left"] == lockbox.MAX_VIEWS
    from datetime import datetime

    span = (datetime.fromisoformat(row["expires_at"].rstrip("Z"))
            - datetime.fromisoformat(row["created_at"].rstrip("Z")))
    assert span.total_seconds() == seconds


@pytest.mark.parametrize("path", ["unknown", "A" * 43, "A" * 44, "x%00y", "%ED%A0%80"])
def test_unknown_links_are_404_without_a_write(client, db, path):
    generation = db.generation()
    answer = client.get(f"/v1/lockbox/{path}/")
    assert (answer.status_code, answer.json) == (404, GONE)
    assert db.generation() == generation  # no write transaction for a stranger


def test_shares_leave_the_read_caches_alone(client, owner_headers, db, services):
    """No cached read shows a share: creating, viewing, revoking and purging one keep the
    generation (an anonymous reveal must not empty every process's secrets caches)."""
    generation = db.generation()
    kept, revoked = create(client, owner_headers, views=2), create(client, owner_headers)
    assert client.get(f"/v1/lockbox/{link_id(kept)}/").status_code == 200
    lockbox.revoke_share(services, support.operator(services), revoked.json["id"])
    assert db.generation() == generation
    db.execute("UPDATE lockbox_shares SET expires_at = '2000-01-01T00:00:00.000000Z'"
               " WHERE id = ?", (kept.json["id"],))
    generation = db.generation()  # (that UPDATE was outside the domain functions)
    assert lockbox.purge_expired(db) == 1
    assert db.generation() == generation
    assert share_row(db, kept.json["id"])["ciphertext"] is None


def test_an_expired_share_is_gone_and_purged_on_access(client, owner_headers, db):
    made = create(client, owner_headers, views=2)
    db.execute("UPDATE lockbox_shares SET expires_at = '2000-01-01T00:00:00.000000Z'")
    assert client.get(f"/v1/lockbox/{link_id(made)}/").json == GONE
    row = share_row(db, made.json["id"])
    assert row["ciphertext"] is None and row["end_reason"] == "expired"
    assert row["views_left"] == 2
    assert actions(db) == ["lockbox.purge", "lockbox.create"]


def test_the_server_purges_expired_shares(client, owner_headers, services, db):
    old, fresh = create(client, owner_headers), create(client, owner_headers)
    db.execute("UPDATE lockbox_shares SET expires_at = '2000-01-01T00:00:00.000000Z'"
               " WHERE id = ?", (old.json["id"],))
    assert lockbox.purge_expired(db) == 1
    assert lockbox.purge_expired(db) == 0
    assert share_row(db, old.json["id"])["ciphertext"] is None
    assert share_row(db, fresh.json["id"])["ciphertext"] is not None
    assert client.get(f"/v1/lockbox/{link_id(fresh)}/").status_code == 200


def test_only_the_creator_revokes(client, owner_headers, services, owner, db):
    made = create(client, owner_headers, views=5)
    me = support.principal_of(services, owner)
    _, other = support.make_user_token(services, "dev@example.com", "Admin")
    with pytest.raises(DoesNotExist):
        lockbox.revoke_share(services, support.principal_of(services, other), made.json["id"])
    with pytest.raises(DoesNotExist):
        lockbox.revoke_share(services, me, "00000000-0000-0000-0000-000000000000")
    for text in ("x\x00y", made.json["id"].upper(), made.json["id"] + "\n"):
        with pytest.raises(DoesNotExist):  # (the admin command's operator, too)
            lockbox.revoke_share(services, support.operator(services), text)
    assert [row["id"] for row in lockbox.shares_of(services, me)] == [made.json["id"]]
    lockbox.revoke_share(services, me, made.json["id"])
    lockbox.revoke_share(services, me, made.json["id"])  # again: nothing more happens
    assert client.get(f"/v1/lockbox/{link_id(made)}/").status_code == 404
    assert share_row(db, made.json["id"])["end_reason"] == "revoked"
    assert actions(db) == ["lockbox.revoke", "lockbox.create"]
    assert lockbox.shares_of(services, support.principal_of(services, other)) == []


def test_audit_events_name_the_share_never_its_content(client, owner_headers, owner, services,
                                                      db):
    ciphertext, key = seal()
    made = client.post("/v1/lockbox/", headers=owner_headers,
                       json={"ciphertext": ciphertext, "views": 1})
    client.get(f"/v1/lockbox/{link_id(made)}/", headers={"User-Agent": "visitor"})
    events = {row["action"]: row for row in audit_store.list_events(db, limit=1000)}
    create_event, view, purge = (events[name] for name in
                                 ("lockbox.create", "lockbox.view", "lockbox.purge"))
    assert (create_event["actor_type"], create_event["actor_id"]) == (
        "user", support.principal_of(services, owner).account_id)
    assert json.loads(create_event["details"]) == {"views": 1,
                                                   "expiresAt": made.json["expiresAt"]}
    assert (view["actor_type"], view["actor_id"], view["user_agent"]) == (
        "anonymous", None, "visitor")
    assert json.loads(view["details"]) == {"viewsLeft": 0}
    assert json.loads(purge["details"]) == {"reason": "viewed"}
    assert purge["actor_type"] == "server"
    for event in (create_event, view, purge):
        assert event["resource_id"] == made.json["id"]
        assert event["organisation_id"] == create_event["organisation_id"]
        text = repr(dict(event))
        for secret_text in (ciphertext, link_id(made), base64.urlsafe_b64encode(key).decode()):
            assert secret_text[:20] not in text


def test_the_link_id_is_stored_only_as_its_hash(client, owner_headers, db):
    made = create(client, owner_headers)
    row = share_row(db, made.json["id"])
    assert row["link_hash"] == hashlib.sha256(link_id(made).encode()).hexdigest()
    every_value = repr([tuple(r) for r in db.all("SELECT * FROM lockbox_shares")])
    assert link_id(made) not in every_value


def test_concurrent_reveals_of_a_one_view_share_give_it_once(live_server):
    """Over HTTP, four threads racing on each share, two through the REST route and two
    through the share page's Reveal: exactly one 200 per one-view share."""
    headers = support.bearer_headers(live_server.owner)
    links, races = [], 12
    for _ in range(races):
        answer = requests.post(f"{live_server.url}/v1/lockbox/", headers=headers,
                               json={"ciphertext": seal()[0]}, timeout=10)
        assert answer.status_code == 201, answer.text
        links.append(answer.json()["link"])
    statuses = {link: [] for link in links}
    for link in links:
        start = threading.Barrier(4)

        def reveal(page, link=link, start=start):
            with requests.Session() as session:
                start.wait()
                if page:
                    answer = session.post(f"{live_server.url}{link}", timeout=30,
                                          headers={"Accept": "application/json"})
                else:
                    answer = session.get(f"{live_server.url}/v1{link}/", timeout=30)
                statuses[link].append((answer.status_code, answer.json()))

        threads = [threading.Thread(target=reveal, args=(page,))
                   for page in (False, True, False, True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for link, answers in statuses.items():
        assert sorted(status for status, _ in answers) == [200, 404, 404, 404], answers
        assert [body for status, body in answers if status == 404] == [GONE] * 3
    log = live_server.log_once(lambda log: log.count("/lockbox/{id}") >= 4 * races)
    assert '"GET /v1/lockbox/{id}/"' in log and '"POST /lockbox/{id}"' in log
    for link in links:
        assert link.rsplit("/", 1)[1] not in log


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_head_of_a_share_counts_no_view(client, owner_headers, db, prefix):
    """HEAD of the REST route is refused (Phase's 405 shape) and HEAD of the share page is the
    page's GET, which counts nothing: the share still opens its one view afterwards."""
    made = create(client, owner_headers)
    for _ in range(3):
        refused = client.head(f"{prefix}/v1/lockbox/{link_id(made)}/")
        assert (refused.status_code, refused.headers["Allow"]) == (405, "GET")
        assert refused.content_type == "application/json" and refused.data == b""
        page = client.head(f"{prefix}/lockbox/{link_id(made)}")
        assert page.status_code == 200 and page.data == b""
    assert share_row(db, made.json["id"])["views_left"] == 1
    assert "lockbox.view" not in actions(db)
    opened = client.get(f"{prefix}/v1/lockbox/{link_id(made)}/")
    assert opened.status_code == 200 and opened.json["viewsLeft"] == 0
    for method in (client.head, client.get):  # gone now, by either method
        assert method(f"{prefix}/lockbox/{link_id(made)}").status_code == 404


def test_every_prefix_of_a_link_is_redacted_in_the_served_access_log(live_server):
    """The REST route and the share page, under each prefix, through a served process."""
    headers = support.bearer_headers(live_server.owner)
    made = requests.post(f"{live_server.url}/v1/lockbox/", headers=headers, timeout=10,
                         json={"ciphertext": seal()[0], "views": 20})
    assert made.status_code == 201, made.text
    token = made.json()["link"].rsplit("/", 1)[1]
    paths = [path for prefix in PREFIXES
             for path in (f"{prefix}/lockbox/{token}", f"{prefix}/v1/lockbox/{token}/")]
    for path in paths:
        assert requests.get(live_server.url + path, timeout=10).status_code == 200, path
    expected = [path.replace(token, "{id}") for path in paths]
    log = live_server.log_once(lambda log: all(f'"GET {path}" 200' in log for path in expected))
    for path in expected:
        assert f'"GET {path}" 200' in log
    assert token not in log


def test_metrics_label_the_route_never_the_link(client, owner_headers):
    made = create(client, owner_headers)
    client.get(f"/v1/lockbox/{link_id(made)}/")
    client.post(made.json["link"], headers={"Accept": "application/json"})
    exposition = client.get("/metrics").get_data(as_text=True)
    assert 'route="/v1/lockbox/<link_id>/"' in exposition
    assert 'route="/lockbox/<link_id>"' in exposition
    assert link_id(made) not in exposition


def test_the_access_log_writes_the_route_template():
    from phase_lite.access_log import loggable_path

    token = "A" * 43
    share_id = "0" * 8 + "-0000-0000-0000-" + "0" * 12
    for path, logged in ((f"/lockbox/{token}", "/lockbox/{id}"),
                         (f"/v1/lockbox/shares/{share_id}/", f"/v1/lockbox/shares/{share_id}/"),
                         (f"/service/v1/lockbox/shares/{share_id}/",
                          f"/service/v1/lockbox/shares/{share_id}/"),
                         (f"/v1/lockbox/{token}/", "/v1/lockbox/{id}/"),
                         (f"/service/public/v1/lockbox/{token}/",
                          "/service/public/v1/lockbox/{id}/"),
                         (f"/public/lockbox/{token}", "/public/lockbox/{id}"),
                         (f"/service/lockbox/{token}", "/service/lockbox/{id}"),
                         (f"/service/public/lockbox/{token}", "/service/public/lockbox/{id}"),
                         (f"/public/v1/lockbox/{token}/", "/public/v1/lockbox/{id}/"),
                         ("/v1/lockbox/", "/v1/lockbox/"), ("/console/lockbox/new",
                                                            "/console/lockbox/new")):
        assert loggable_path(path) == logged


# -- the caller's shares: GET /v1/lockbox/, DELETE /v1/lockbox/shares/<share_id>/ -------------


def shares_url(prefix="", share_id=None):
    return f"{prefix}/v1/lockbox/" + (f"shares/{share_id}/" if share_id else "")


def listed(client, headers, prefix=""):
    answer = client.get(shares_url(prefix), headers=headers)
    assert answer.status_code == 200, answer.json
    assert list(answer.json) == ["data"]
    return {share["id"]: share for share in answer.json["data"]}, answer


def test_the_list_shows_the_callers_shares_newest_first_with_their_states(
        client, owner_headers, sa_headers, db):
    sealed = [seal()[0] for _ in range(5)]
    made = [client.post("/v1/lockbox/", headers=owner_headers,
                        json={"ciphertext": text, "views": 3, "expiresIn": 3600})
            for text in sealed[:4]]
    viewed, revoked, expired, live = (answer.json["id"] for answer in made)
    theirs = client.post("/v1/lockbox/", headers=sa_headers, json={"ciphertext": sealed[4]})
    for _ in range(3):
        assert client.get(f"/v1/lockbox/{link_id(made[0])}/").status_code == 200
    assert client.get(f"/v1/lockbox/{link_id(made[3])}/").status_code == 200
    assert client.delete(shares_url(share_id=revoked), headers=owner_headers).status_code == 204
    db.execute("UPDATE lockbox_shares SET expires_at = '2000-01-01T00:00:00.000000Z'"
               " WHERE id = ?", (expired,))  # expired, not purged yet

    shares, answer = listed(client, owner_headers)
    assert [share["id"] for share in answer.json["data"]] == [live, expired, revoked, viewed]
    assert {key: (share["state"], share["viewsLeft"], share["views"])
            for key, share in shares.items()} == {
        live: ("live", 2, 3), expired: ("expired", 0, 3), revoked: ("revoked", 0, 3),
        viewed: ("viewed", 0, 3)}
    for share_id in (viewed, revoked, live):
        row = share_row(db, share_id)
        assert (shares[share_id]["createdAt"], shares[share_id]["expiresAt"],
                shares[share_id]["endedAt"]) == (row["created_at"], row["expires_at"],
                                                 row["ended_at"])
    assert shares[live]["endedAt"] is None
    assert shares[expired]["endedAt"] == shares[expired]["expiresAt"] == (
        "2000-01-01T00:00:00.000000Z")
    assert set(shares[live]) == {"id", "createdAt", "expiresAt", "views", "viewsLeft", "state",
                                 "endedAt"}
    text = answer.get_data(as_text=True)
    for answer_made in (*made, theirs):
        assert link_id(answer_made) not in text
    for ciphertext in sealed:
        assert ciphertext not in text and ciphertext[:24] not in text
    assert theirs.json["id"] not in text
    assert list(listed(client, sa_headers)[0]) == [theirs.json["id"]]
    assert lockbox.purge_expired(db) == 1  # the server's purge changes nothing listed
    assert listed(client, owner_headers)[1].json == answer.json
    # Listing counted no view: the live share still has the two views it had.
    assert client.get(f"/v1/lockbox/{link_id(made[3])}/").json["viewsLeft"] == 1


def test_a_caller_without_shares_lists_none(client, sa_headers):
    assert listed(client, sa_headers)[1].json == {"data": []}


def test_revoking_over_rest_closes_the_link_and_is_audited(client, owner_headers, owner,
                                                          services, db):
    made = create(client, owner_headers, views=5)
    share_id = made.json["id"]
    answer = client.delete(shares_url(share_id=share_id),
                           headers={**owner_headers, "User-Agent": "revoker"})
    assert (answer.status_code, answer.get_data()) == (204, b"")
    assert client.get(f"/v1/lockbox/{link_id(made)}/").json == GONE
    assert client.get(f"/v1/lockbox/{link_id(made)}/").status_code == 404
    row = share_row(db, share_id)
    assert row["ciphertext"] is None and row["end_reason"] == "revoked"
    [event] = [row for row in audit_store.list_events(db, limit=1000)
               if row["action"] == "lockbox.revoke"]
    assert (event["channel"], event["actor_type"], event["actor_id"], event["resource_id"],
            event["user_agent"]) == (
        "api", "user", support.principal_of(services, owner).account_id, share_id, "revoker")
    # Revoking a share that is already gone answers the same and records nothing more.
    assert client.delete(shares_url(share_id=share_id), headers=owner_headers).status_code == 204
    assert actions(db) == ["lockbox.revoke", "lockbox.create"]
    assert listed(client, owner_headers)[0][share_id]["state"] == "revoked"


def test_a_service_account_revokes_its_own(client, sa_headers, db):
    made = create(client, sa_headers)
    assert client.delete(shares_url(share_id=made.json["id"]),
                         headers=sa_headers).status_code == 204
    assert client.get(f"/v1/lockbox/{link_id(made)}/").status_code == 404
    event = audit_store.list_events(db, limit=1)[0]
    assert (event["action"], event["actor_type"], event["channel"]) == (
        "lockbox.revoke", "service", "api")


@pytest.mark.parametrize("whose", ["another account's", "unknown", "malformed", "x%00y",
                                   "%ED%A0%80", "A" * 43])
def test_another_accounts_share_or_an_unknown_id_is_404_and_changes_nothing(
        client, owner_headers, sa_headers, services, db, whose):
    made = create(client, sa_headers, views=2)
    _, colleague = support.make_user_token(services, "dev@example.com", "Admin")
    share_id = {"another account's": made.json["id"], "unknown": MISSING,
                "malformed": "not-an-id"}.get(whose, whose)
    before = dict(share_row(db, made.json["id"]))
    events = len(audit_store.list_events(db, limit=1000))
    for headers in (owner_headers, support.bearer_headers(colleague)):
        answer = client.delete(shares_url(share_id=share_id), headers=headers)
        assert (answer.status_code, answer.json) == (404, NOT_FOUND)
    assert dict(share_row(db, made.json["id"])) == before
    assert len(audit_store.list_events(db, limit=1000)) == events
    assert client.get(f"/v1/lockbox/{link_id(made)}/").status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer pss_service:v2:nonsense"},
                                     {"Authorization": "Basic eDp5"}])
def test_listing_and_revoking_need_a_token(client, owner_headers, db, headers):
    made = create(client, owner_headers)
    for method, url in (("GET", shares_url()), ("DELETE", shares_url(share_id=made.json["id"]))):
        answer = client.open(url, method=method, headers=headers)
        assert answer.status_code == 401 and list(answer.json) == ["error"], (method, url)
    assert share_row(db, made.json["id"])["ciphertext"] is not None


def test_a_revoked_token_can_neither_list_nor_revoke(client, services, owner):
    user, issued = support.make_user_token(services, "dev@example.com", "Developer")
    headers = support.bearer_headers(issued)
    made = create(client, headers)
    support.revoke(services, issued.id)
    assert client.get(shares_url(), headers=headers).status_code == 401
    assert client.delete(shares_url(share_id=made.json["id"]), headers=headers).status_code == 401
    assert client.get(f"/v1/lockbox/{link_id(made)}/").status_code == 200


def test_list_and_revoke_under_every_prefix(client, sa_headers):
    for prefix in PREFIXES:
        made = create(client, sa_headers, prefix)
        shares, _ = listed(client, sa_headers, prefix)
        assert shares[made.json["id"]]["state"] == "live", prefix
        answer = client.delete(shares_url(prefix, made.json["id"]), headers=sa_headers)
        assert answer.status_code == 204, (prefix, answer.json)
        assert listed(client, sa_headers, prefix)[0][made.json["id"]]["state"] == "revoked"
        assert client.get(f"{prefix}/v1/lockbox/{link_id(made)}/").status_code == 404


@pytest.mark.parametrize("method, path", [
    ("PUT", "/v1/lockbox/"), ("DELETE", "/v1/lockbox/"), ("GET", f"/v1/lockbox/shares/{MISSING}/"),
    ("POST", f"/service/public/v1/lockbox/shares/{MISSING}/"),
    ("DELETE", "/v1/lockbox/" + "A" * 43 + "/"),  # (not by its link: anyone may hold one)
])
def test_other_methods_are_405(client, owner_headers, method, path):
    answer = client.open(path, method=method, headers=owner_headers)
    assert answer.status_code == 405 and list(answer.json) == ["error"]


def test_listing_and_revoking_count_against_the_accounts_limit(config, owner, owner_headers):
    flask_app = support.limited_app(config, (3, 60))
    try:
        client = flask_app.test_client()
        made = create(client, owner_headers)
        assert client.get(shares_url(), headers=owner_headers).status_code == 200
        assert client.delete(shares_url(share_id=MISSING), headers=owner_headers).status_code \
            == 404
        for method in ("GET", "DELETE"):
            answer = client.open(shares_url(share_id=made.json["id"] if method == "DELETE"
                                            else None), method=method, headers=owner_headers)
            assert answer.status_code == 429 and list(answer.json) == ["error"], method
        row = flask_app.extensions["phase_lite"].db.one(
            "SELECT ciphertext FROM lockbox_shares WHERE id = ?", (made.json["id"],))
        assert row["ciphertext"] is not None  # a refused revocation revoked nothing
    finally:
        flask_app.extensions["phase_lite"].close()
