"""Holes found by attacking phase_lite, each replayed as the attack was: the request that used to
succeed now fails and writes nothing, and what the rule still allows keeps working."""

import json

import pytest

from phase_lite.store import accounts as account_store

import support
from support import bearer_headers

SA_NOT_FOUND = {"error": "Service account not found."}


@pytest.fixture
def make_user(services):
    """A user with a role and the given environment rows; return their request headers."""

    def make(role, envs=(), email=None):
        _, issued = support.make_user(services, email or f"{role.lower()}@example.com", role,
                                      envs)
        return bearer_headers(issued)

    return make


@pytest.fixture
def two_apps(make_app):
    """Apps A and B, each with Development, Staging and Production."""
    return make_app("A")[1], make_app("B")[1]


def make_account(services, envs, name="deployer"):
    """A Service-role account holding ``envs``: (account id, its IssuedToken)."""
    sa, issued = support.make_service_account(services, name, "Service", envs)
    return sa["id"], issued


def audit_count(db):
    return db.one("SELECT count(*) AS n FROM audit_events")["n"]


def live_token_ids(db, sa_id):
    return {row["id"] for row in account_store.list_tokens(db, service_account_id=sa_id)}


# -- 1. minting a token of another service account -------------------------------------------


def test_manager_cannot_mint_a_token_for_an_account_holding_production(
        client, db, services, two_apps, make_user):
    a, b = two_apps
    sa_id, _ = make_account(services, [b["Production"]])
    manager = make_user("Manager", [a["Development"]])
    before_tokens, before_audit = live_token_ids(db, sa_id), audit_count(db)

    response = client.post(f"/v1/service-accounts/{sa_id}/tokens/", headers=manager,
                           json={"name": "mine"})

    assert (response.status_code, response.get_json()) == (404, SA_NOT_FOUND)
    assert live_token_ids(db, sa_id) == before_tokens
    assert audit_count(db) == before_audit


def test_manager_cannot_revoke_a_token_of_another_account(client, db, services,
                                                           two_apps, make_user):
    a, b = two_apps
    sa_id, issued = make_account(services, [a["Development"]])
    manager = make_user("Manager", [a["Development"]])

    response = client.delete(f"/v1/service-accounts/{sa_id}/tokens/{issued.id}/",
                             headers=manager)

    assert (response.status_code, response.get_json()) == (404, SA_NOT_FOUND)
    assert live_token_ids(db, sa_id) == {issued.id}


def test_owner_and_admin_may_mint_and_revoke(client, db, services, two_apps,
                                             owner_headers, make_user):
    _, b = two_apps
    sa_id, _ = make_account(services, [b["Production"]])
    for headers in (owner_headers, make_user("Admin")):
        minted = client.post(f"/v1/service-accounts/{sa_id}/tokens/", headers=headers,
                             json={"name": "ci"})
        assert minted.status_code == 201
        revoked = client.delete(f"/v1/service-accounts/{sa_id}/tokens/{minted.json['id']}/",
                                headers=headers)
        assert revoked.status_code == 204


def test_service_account_manages_only_its_own_tokens(client, db, services, two_apps):
    a, _ = two_apps
    # The Service role lacks ServiceAccountTokens permissions; a role with them is needed to
    # reach the ownership rule, so give the accounts the Manager role's permissions.
    mine, my_token = support.make_service_account(services, "mine", "Manager",
                                                  [a["Development"]])
    other, _ = support.make_service_account(services, "other", "Manager")
    mine, other = mine["id"], other["id"]
    headers = bearer_headers(my_token)

    refused = client.post(f"/v1/service-accounts/{other}/tokens/", headers=headers,
                          json={"name": "x"})
    assert (refused.status_code, refused.get_json()) == (404, SA_NOT_FOUND)
    own = client.post(f"/v1/service-accounts/{mine}/tokens/", headers=headers,
                      json={"name": "x"})
    assert own.status_code == 201


# -- 3. access replacement keeps grants the caller cannot see --------------------------------


def test_access_replacement_keeps_grants_in_apps_the_caller_cannot_access(
        client, db, services, two_apps, make_user):
    a, b = two_apps
    sa_id, _ = make_account(services, [a["Development"], b["Production"]])
    manager = make_user("Manager", [a["Development"], a["Staging"]])
    app_a = db.one("SELECT app_id FROM environments WHERE id = ?", (a["Staging"]["id"],))

    response = client.put(f"/v1/service-accounts/{sa_id}/access/", headers=manager,
                          json={"apps": [{"id": app_a["app_id"],
                                          "environments": [a["Staging"]["id"]]}]})

    assert response.status_code == 200
    granted = account_store.granted_environment_ids(db, service_account_id=sa_id)
    assert granted == {a["Staging"]["id"], b["Production"]["id"]}
    # and the answer shows the Manager only what it can see
    shown = {env["id"] for app in response.json["apps"] for env in app["environments"]}
    assert shown == {a["Staging"]["id"]}


def test_owner_access_replacement_still_replaces_everything(client, db, services,
                                                             two_apps, owner_headers):
    a, b = two_apps
    sa_id, _ = make_account(services, [a["Development"], b["Production"]])
    app_a = db.one("SELECT app_id FROM environments WHERE id = ?", (a["Staging"]["id"],))
    response = client.put(f"/v1/service-accounts/{sa_id}/access/", headers=owner_headers,
                          json={"apps": [{"id": app_a["app_id"],
                                          "environments": [a["Staging"]["id"]]}]})
    assert response.status_code == 200
    assert account_store.granted_environment_ids(db, service_account_id=sa_id) == {
        a["Staging"]["id"]}


# -- 8. writes to deleted secrets ------------------------------------------------------------


@pytest.fixture
def deleted_secret(client, owner_headers, demo):
    url = f"/v1/secrets/?app_id={demo[0]['id']}&env=Development"
    created = client.post(url, headers=owner_headers,
                          data=json.dumps({"secrets": [{"key": "GONE", "value": "v"}]}))
    secret_id = created.json[0]["id"]
    deleted = client.delete(url, headers=owner_headers,
                            data=json.dumps({"secrets": [secret_id]}))
    assert deleted.status_code == 200
    return url, secret_id


def secret_row(db, secret_id):
    return tuple(db.one("SELECT * FROM secrets WHERE id = ?", (secret_id,)))


def test_put_to_a_deleted_secret_is_not_found(client, owner_headers, db, deleted_secret):
    url, secret_id = deleted_secret
    before, before_audit = secret_row(db, secret_id), audit_count(db)
    response = client.put(url, headers=owner_headers, data=json.dumps(
        {"secrets": [{"id": secret_id, "value": "changed"}]}))
    assert (response.status_code, response.get_json()) == (
        404, {"error": f"Secret not found: {secret_id}"})
    assert secret_row(db, secret_id) == before and audit_count(db) == before_audit


def test_delete_of_a_deleted_secret_is_not_found(client, owner_headers, db, deleted_secret):
    url, secret_id = deleted_secret
    before = secret_row(db, secret_id)
    response = client.delete(url, headers=owner_headers,
                             data=json.dumps({"secrets": [secret_id]}))
    assert response.status_code == 404
    assert secret_row(db, secret_id) == before


def test_put_to_a_live_secret_still_works(client, owner_headers, demo):
    url = f"/v1/secrets/?app_id={demo[0]['id']}&env=Development"
    created = client.post(url, headers=owner_headers,
                          data=json.dumps({"secrets": [{"key": "LIVE", "value": "v"}]}))
    response = client.put(url, headers=owner_headers, data=json.dumps(
        {"secrets": [{"id": created.json[0]["id"], "value": "w"}]}))
    assert response.status_code == 200 and response.json[0]["value"] == "w"


# -- 9. what service-account objects show ----------------------------------------------------


def test_service_account_objects_show_a_limited_caller_only_what_it_holds(
        client, db, services, two_apps, make_user):
    a, b = two_apps
    sa_id, _ = make_account(services, [a["Development"], b["Production"]])
    manager = make_user("Manager", [a["Development"]])
    body = client.get(f"/v1/service-accounts/{sa_id}/", headers=manager).get_json()
    assert [(app["name"], [env["name"] for env in app["environments"]])
            for app in body["apps"]] == [("A", ["Development"])]


def test_service_account_objects_show_global_callers_everything(
        client, db, services, two_apps, owner_headers):
    a, b = two_apps
    sa_id, _ = make_account(services, [a["Development"], b["Production"]])
    body = client.get(f"/v1/service-accounts/{sa_id}/", headers=owner_headers).get_json()
    assert sorted((app["name"], env["name"]) for app in body["apps"]
                  for env in app["environments"]) == [("A", "Development"), ("B", "Production")]


# -- 6. a database that could not be written heals by itself ---------------------------------


def make_read_only(db):
    """Make this thread's connection refuse writes, as one opened while the data directory was
    read-only does (``query_only`` gives the same SQLITE_READONLY error)."""
    db.conn.execute("PRAGMA query_only = ON")


def test_writes_recover_once_the_database_is_writable_again(client, owner_headers, db, demo):
    url = f"/v1/secrets/?app_id={demo[0]['id']}&env=Development"
    client.get(url, headers=owner_headers)  # the token's last use is recorded for a minute
    make_read_only(db)
    failed = client.post(url, headers=owner_headers,
                         data=json.dumps({"secrets": [{"key": "A", "value": "1"}]}))
    assert (failed.status_code, failed.get_json()) == (500, {"error": "Internal server error."})
    # The cause is gone (a fresh connection is writable): the next write works, no restart.
    written = client.post(url, headers=owner_headers,
                          data=json.dumps({"secrets": [{"key": "B", "value": "2"}]}))
    assert written.status_code == 200
    keys = [item["key"] for item in client.get(url, headers=owner_headers).json]
    assert keys == ["B"]


def test_reads_never_fail_because_last_used_at_cannot_be_written(client, db, demo,
                                                                 make_service_token):
    _, envs = demo
    issued = make_service_token([envs["Development"]], name="reader")
    make_read_only(db)
    response = client.get(f"/v1/secrets/?app_id={demo[0]['id']}&env=Development",
                          headers=bearer_headers(issued))
    assert response.status_code == 200
    assert db.one("SELECT last_used_at FROM tokens WHERE id = ?", (issued.id,))[0] is None
    # once writable again (a fresh connection), the next request records it
    client.get(f"/v1/secrets/?app_id={demo[0]['id']}&env=Development",
               headers=bearer_headers(issued))
    assert db.one("SELECT last_used_at FROM tokens WHERE id = ?", (issued.id,))[0] is not None
