"""Management input handled as Phase handles it: text fields cleaned by one rule, bodies read by
Django REST framework's parsers, the role's permission before 405; app names unique; and nothing
stored can put control characters on an operator's terminal."""

import json

import pytest
from click.testing import CliRunner

from phase_lite import accounts, cli
from phase_lite.store import accounts as account_store
from phase_lite.store import apps as app_store
from phase_lite.textfields import printable, validate_text_field

import support
from support import bearer_headers


@pytest.fixture
def org_id(db):
    return accounts.organisation(db)["id"]


@pytest.fixture
def role_ids(db, org_id):
    return {row["name"]: row["id"] for row in account_store.list_roles(db, org_id)}


@pytest.fixture
def runner(config, owner, monkeypatch):
    monkeypatch.setenv("PHASE_LITE_DATA_DIR", str(config.data_dir))
    return CliRunner()


def app_names(db, org_id):
    return sorted(row["name"] for row in app_store.list_apps(db, org_id))


def audit_count(db):
    return db.one("SELECT count(*) AS n FROM audit_events")["n"]


# -- the one cleaning rule -------------------------------------------------------------------


@pytest.mark.parametrize("raw, cleaned", [
    ("\u001b[31mx", "[31mx"),
    ("a" * 64 + "\u0000", "a" * 64),
    ("  <b>bell</b>\u0007 ", "bell"),
    ("tab\there", "tab\there"),           # tab, LF and CR are kept, as on Phase
    ("c1\u0085\u009bx", "c1x"),
    ("del\u007f", "del"),
])
def test_validate_text_field_cleans_as_phase(raw, cleaned):
    assert validate_text_field(raw, "name", 64) == cleaned


def test_length_is_counted_after_cleaning():
    with pytest.raises(Exception, match=r"'name' cannot exceed 64 characters\."):
        validate_text_field("a" * 65 + "\u0000", "name", 64)


@pytest.mark.parametrize("route, field, extra", [
    ("/v1/apps/", "name", {}),
    ("/v1/service-accounts/", "name", {"role_id": "{Service}"}),
    ("/v1/service-accounts/", "token_name", {"name": "ok", "role_id": "{Service}"}),
])
def test_control_characters_alone_are_a_missing_field(client, owner_headers, db, role_ids,
                                                      route, field, extra):
    body = {key: value.format(**role_ids) for key, value in extra.items()}
    body[field] = "\u0001\u0002"
    before = audit_count(db)
    response = client.post(route, headers=owner_headers, json=body)
    assert (response.status_code, response.get_json()) == (
        400, {"error": f"Missing required field: {field}"})
    assert audit_count(db) == before


def test_escape_sequences_are_stored_without_their_control_characters(
        client, owner_headers, db, org_id, role_ids):
    app = client.post("/v1/apps/", headers=owner_headers,
                      json={"name": "\u001b[31mx", "description": "d\u0007"}).get_json()
    assert (app["name"], app["description"]) == ("[31mx", "d")
    renamed = client.put(f"/v1/apps/{app['id']}/", headers=owner_headers,
                         json={"name": "y\u0000\u001b"}).get_json()
    assert renamed["name"] == "y"
    sa = client.post("/v1/service-accounts/", headers=owner_headers,
                     json={"name": "s\u001b]0;t\u0007", "role_id": role_ids["Service"],
                           "token_name": "t\u0008"}).get_json()
    assert (sa["name"], sa["initialToken"]["name"]) == ("s]0;t", "t")
    token = client.post(f"/v1/service-accounts/{sa['id']}/tokens/", headers=owner_headers,
                        json={"name": "n\u009b"}).get_json()
    assert token["name"] == "n"
    long_name = client.post("/v1/apps/", headers=owner_headers, json={"name": "a" * 64 + "\0"})
    assert long_name.status_code == 201


# -- bodies: JSON and form-encoded, anything else 415 ----------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/xml",
                                          "multipart/form-data; boundary=x"])
def test_bodies_of_other_types_are_415(client, owner_headers, db, org_id, content_type):
    headers = dict(owner_headers)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/v1/apps/", headers=headers, data=json.dumps({"name": "x"}))
    assert (response.status_code, response.get_json()) == (
        415, {"error": f'Unsupported media type "{content_type or ""}" in request.'})
    assert app_names(db, org_id) == []


def test_form_encoded_bodies_are_read(client, owner_headers, db, org_id):
    response = client.post("/v1/apps/", headers=owner_headers,
                           data={"name": "from-a-form", "description": "d"})
    assert response.status_code == 201
    assert app_names(db, org_id) == ["from-a-form"]


def test_empty_body_of_any_type_is_an_empty_object(client, owner_headers):
    response = client.post("/v1/apps/", headers=dict(owner_headers, **{
        "Content-Type": "text/plain"}), data=b"")
    assert (response.status_code, response.get_json()) == (
        400, {"error": "Missing required field: name"})


def test_secrets_route_still_reads_any_content_type(client, sa_headers, demo):
    url = f"/v1/secrets/?app_id={demo[0]['id']}&env=Development"
    response = client.post(url, headers=dict(sa_headers, **{"Content-Type": "text/plain"}),
                           data=json.dumps({"secrets": [{"key": "K", "value": "v"}]}))
    assert response.status_code == 200


# -- the role's permission before 405 --------------------------------------------------------


def test_permission_is_checked_before_405(client, services, make_service_token, demo):
    _, issued = support.make_user(services, "dev@example.com", "Developer")
    headers = bearer_headers(issued)
    refused = client.put("/v1/apps/", headers=headers, json={"name": "x"})
    assert (refused.status_code, refused.get_json()) == (
        403, {"error": "You don't have permission to update apps."})


def test_405_for_a_caller_with_the_permission(client, owner_headers):
    response = client.put("/v1/apps/", headers=owner_headers, json={"name": "x"})
    assert (response.status_code, response.get_json()) == (
        405, {"error": 'Method "PUT" not allowed.'})


# -- 10. app names are unique, case-insensitively --------------------------------------------


def test_second_app_with_a_taken_name_is_409(client, owner_headers, make_service_token, db,
                                             org_id, demo):
    service = bearer_headers(make_service_token([], name="svc"))
    before = audit_count(db)
    for headers in (owner_headers, service):
        response = client.post("/v1/apps/", headers=headers, json={"name": "DEMO"})
        assert (response.status_code, response.get_json()) == (
            409, {"error": "An app named 'demo' already exists."})
    assert app_names(db, org_id) == ["demo"] and audit_count(db) == before


def test_rename_to_a_taken_name_is_409_and_to_its_own_name_is_fine(client, owner_headers,
                                                                     make_app, db, org_id):
    first, _ = make_app("first")
    second, _ = make_app("second")
    taken = client.put(f"/v1/apps/{second['id']}/", headers=owner_headers,
                       json={"name": "First"})
    assert (taken.status_code, taken.get_json()) == (
        409, {"error": "An app named 'first' already exists."})
    own = client.put(f"/v1/apps/{first['id']}/", headers=owner_headers, json={"name": "FIRST"})
    assert own.status_code == 200
    assert app_names(db, org_id) == ["FIRST", "second"]


def test_references_to_an_app_keep_resolving(client, owner_headers, sa_headers, demo):
    query = f"?app_id={demo[0]['id']}&env=Development"
    client.post("/v1/secrets/" + query, headers=sa_headers,
                data=json.dumps({"secrets": [{"key": "K", "value": "v"},
                                             {"key": "R", "value": "${demo::Development.K}"}]}))
    client.post("/v1/apps/", headers=owner_headers, json={"name": "Demo"})
    values = client.get("/v1/secrets/" + query + "&key=R", headers=sa_headers).get_json()
    assert values[0]["value"] == "v"


def test_admin_command_refuses_taken_and_empty_names(runner, db, org_id):
    assert runner.invoke(cli.main, ["apps", "create", "billing"]).exit_code == 0
    taken = runner.invoke(cli.main, ["apps", "create", "BILLING"])
    assert taken.exit_code == 1 and "already exists" in taken.output
    for empty in ("", "   ", "\u0001"):
        result = runner.invoke(cli.main, ["apps", "create", empty])
        assert result.exit_code == 1 and "Missing required field: name" in result.output
    assert app_names(db, org_id) == ["billing"]


def test_admin_command_refuses_ambiguous_names(runner, db, services, org_id, make_app):
    for name in ("twin", "twin"):
        support.make_service_account(services, name)
    result = runner.invoke(cli.main, ["service-accounts", "tokens", "create", "twin"])
    assert result.exit_code == 1
    assert "2 service accounts are named twin: use the id" in result.output
    # Apps made before names were unique can still share one.
    make_app("old")
    make_app("other")
    with db.transaction():
        db.execute("UPDATE apps SET name = 'Old' WHERE name = 'other'")
    result = runner.invoke(cli.main, ["apps", "delete", "old"])
    assert result.exit_code == 1 and "2 apps are named old: use the id" in result.output
    assert len(app_store.list_apps(db, org_id)) == 2


# -- nothing stored reaches a terminal raw ---------------------------------------------------


def test_printable_escapes_every_control_character_but_the_line_break():
    assert printable("a\u001b[31m\u0007\u009b\r\tb\nc") == "a\\x1b[31m\\x07\\x9b\\x0d\\x09b\nc"


def test_admin_listings_never_print_stored_control_characters(runner, db, services,
                                                              make_app, client, owner_headers):
    # Written directly, as a database from before cleaning (or a forged one) would hold them.
    app, _ = make_app("plain")
    assert client.post("/v1/apps/", headers=owner_headers, json={"name": "x"}).status_code == 201
    support.make_service_account(services, "sa")
    with db.transaction():
        db.execute("UPDATE apps SET name = ?", ("evil\u001b[2J\u0007",))
        db.execute("UPDATE service_accounts SET name = ?", ("sa\u001b]0;x\u0007",))
        db.execute("UPDATE audit_events SET ip_address = ?", ("1.2.3.4\u001b[1A",))
    outputs = [runner.invoke(cli.main, args).output for args in (
        ["apps", "list"], ["service-accounts", "list"], ["audit", "list"],
        ["apps", "delete", app["id"]])]
    for output in outputs:
        assert not any(ch in output for ch in "\u001b\u0007"), output
    assert "evil\\x1b[2J\\x07" in outputs[0]
