"""Moving an environment before or after another (``apps.move_environment``): the order the
management API's ``index``, the Phase client protocol and the admin command show follows it."""

import dataclasses
import json

import pytest

import support
from phase_lite import apps
from phase_lite.errors import DoesNotExist, InvalidRequest, PermissionDenied
from phase_lite.store import audit as audit_store

from support import bearer_headers, run_json

pytestmark = pytest.mark.both_backends

ORDER = ["Development", "Staging", "Production"]


def api_order(client, owner, app_id):
    response = client.get(f"/v1/environments/?app_id={app_id}", headers=bearer_headers(owner))
    assert response.status_code == 200
    return [(env["name"], env["index"]) for env in response.get_json()["data"]]


def move(services, env, **fields):
    return apps.move_environment(services, support.operator(services), env, fields,
                                 support.TEST_META)


@pytest.mark.parametrize("name, place, other, expected", [
    ("Production", "before", "Development", ["Production", "Development", "Staging"]),
    ("Development", "after", "Production", ["Staging", "Production", "Development"]),
    ("Staging", "before", "Development", ["Staging", "Development", "Production"]),
    ("Staging", "after", "Production", ["Development", "Production", "Staging"]),
    ("Development", "before", "Staging", ORDER),  # already there: nothing moves
])
def test_move_puts_the_environment_next_to_the_other(client, services, owner, demo, name,
                                                     place, other, expected):
    app, envs = demo
    moved = move(services, envs[name], **{place: envs[other]["id"]})
    assert [env["name"] for env in moved] == expected
    assert api_order(client, owner, app["id"]) == [(n, i) for i, n in enumerate(expected)]


def test_clients_see_the_new_order(client, services, owner, demo):
    _, envs = demo
    move(services, envs["Production"], before=envs["Development"]["id"])
    payload = support.fetch_keys(client, owner)
    assert [(key["environment"]["name"], key["environment"]["index"])
            for key in payload["apps"][0]["environment_keys"]] == [
        ("Production", 0), ("Development", 1), ("Staging", 2)]


def test_the_order_survives_deletes_and_creates(client, services, owner, demo):
    app, envs = demo
    by = support.operator(services)
    apps.delete_environment(services, by, envs["Development"], support.TEST_META)
    apps.create_environment(services, by, app, {"name": "qa"}, support.TEST_META)
    qa = apps.environments_by_name(services, by, app, ["qa"])[0]
    move(services, qa, before=envs["Staging"]["id"])
    assert api_order(client, owner, app["id"]) == [("qa", 0), ("Staging", 1),
                                                   ("Production", 2)]


def test_a_move_is_audited_with_its_channel(services, db, demo):
    app, envs = demo
    move(services, envs["Production"], after=envs["Development"]["id"])
    (event,) = [event for event in audit_store.list_events(db, app_id=app["id"])
                if event["action"] == "move"]
    assert (event["resource_type"], event["resource_id"], event["channel"]) == (
        "environment", envs["Production"]["id"], "cli")
    assert json.loads(event["details"]) == {"name": "Production", "after": "Development", "from": 2,
                                "to": 1}


@pytest.mark.parametrize("fields, error, text", [
    ({}, InvalidRequest, "Give exactly one of 'before' or 'after'."),
    ({"before": "x", "after": "y"}, InvalidRequest, "Give exactly one of 'before' or 'after'."),
    ({"before": "no-such-environment"}, DoesNotExist, "Environment not found"),
    ({"after": "self"}, InvalidRequest, "An environment cannot move before or after itself."),
])
def test_a_refused_move_changes_nothing(client, services, db, owner, demo, fields, error, text):
    app, envs = demo
    if fields.get("after") == "self":
        fields = {"after": envs["Staging"]["id"]}
    with pytest.raises(error) as raised:
        move(services, envs["Staging"], **fields)
    assert raised.value.message == text
    assert api_order(client, owner, app["id"]) == [(n, i) for i, n in enumerate(ORDER)]
    assert not [e for e in audit_store.list_events(db, app_id=app["id"]) if e["action"] == "move"]


def test_an_environment_of_another_app_is_not_a_place(services, demo, make_app):
    _, envs = demo
    _, others = make_app("other")
    with pytest.raises(DoesNotExist):
        move(services, envs["Staging"], before=others["Development"]["id"])


def test_a_role_without_environment_updates_cannot_move(client, services, owner, demo):
    """No default role lacks it (Phase's Developer may update environments): a role that
    only reads environments, as a custom role would be."""
    app, envs = demo
    _, issued = support.make_user(services, "dev@example.com", "Developer", list(envs.values()))
    developer = services.auth.authenticate(f"Bearer {issued.bearer_token}")
    reader = dataclasses.replace(developer, app_permissions={
        **developer.app_permissions, "Environments": ["read"]})
    with pytest.raises(PermissionDenied) as raised:
        apps.move_environment(services, reader, envs["Production"],
                              {"before": envs["Development"]["id"]}, support.TEST_META)
    assert raised.value.message == "You don't have permission to update environments."
    assert api_order(client, owner, app["id"]) == [(n, i) for i, n in enumerate(ORDER)]


def test_a_manager_moves_only_next_to_environments_it_holds(services, demo):
    _, envs = demo
    user, issued = support.make_user(services, "manager@example.com", "Manager",
                                     [envs["Staging"], envs["Production"]])
    manager = services.auth.authenticate(f"Bearer {issued.bearer_token}")
    with pytest.raises(PermissionDenied):
        apps.move_environment(services, manager, envs["Production"],
                              {"before": envs["Development"]["id"]}, support.TEST_META)
    moved = apps.move_environment(services, manager, envs["Production"],
                                  {"before": envs["Staging"]["id"]}, support.TEST_META)
    assert [env["name"] for env in moved] == ["Development", "Production", "Staging"]


@pytest.mark.sqlite_only  # the in-process command keeps its connection (as test_admin_cli)
def test_the_admin_command_moves_environments(run, client, owner, demo):
    app, _ = demo
    moved = run_json(run, "envs", "move", "demo", "production", "--before", "development")
    assert [(env["name"], env["index"]) for env in moved] == [
        ("Production", 0), ("Development", 1), ("Staging", 2)]
    assert "Moved Staging after Production" in run(
        "envs", "move", "demo", "Staging", "--after", "Production").output
    assert api_order(client, owner, app["id"]) == [("Production", 0), ("Staging", 1),
                                                   ("Development", 2)]
    assert "Give exactly one of --before or --after" in run(
        "envs", "move", "demo", "Staging", ok=False).output
