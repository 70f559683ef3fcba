"""`phase-lite secrets history` and `phase-lite secrets restore`: the admin command's view of a
secret's versions, and a restore recorded as the admin command's."""

import json
from urllib.parse import urlencode

import pytest

from support import run_json
from phase_lite.audit import operator_name


@pytest.fixture
def write(client, demo, owner_headers):
    query = urlencode({"app_id": demo[0]["id"], "env": "Development"})

    def send(method, entries):
        response = client.open(f"/v1/secrets/?{query}", method=method, headers=owner_headers,
                               data=json.dumps({"secrets": entries}))
        assert response.status_code == 200, response.json
        return response.json

    return send


@pytest.fixture
def deleted_secret(write):
    """DB_URL at /db: created, updated, deleted (by the Owner)."""
    (secret,) = write("POST", [{"key": "DB_URL", "value": "first-value", "path": "/db"}])
    write("PUT", [{"id": secret["id"], "value": "second-value"}])
    write("DELETE", [secret["id"]])
    return secret["id"]


def test_history_as_json(run, deleted_secret):
    payload = run_json(run, "secrets", "history", "demo", "Development", "DB_URL",
                       "--path", "/db")
    assert payload["id"] == deleted_secret
    assert [(v["version"], v["event"], v["value"]) for v in payload["versions"]] == [
        (2, "deleted", "second-value"), (2, "updated", "second-value"),
        (1, "created", "first-value")]
    assert payload["versions"][0]["actor"]["name"] == "owner@example.com"


def test_history_masks_values_unless_asked(run, deleted_secret):
    lines = run("secrets", "history", "demo", "development", "db_url", "--path", "/db"
                ).output.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("v2  deleted  ") and "by owner@example.com  /db  DB_URL=" in lines[0]
    assert "value" not in "\n".join(lines)
    shown = run("secrets", "history", "demo", "Development", "DB_URL", "--path", "/db", "--show")
    assert "DB_URL=first-value" in shown.output.splitlines()[-1]


def test_a_sealed_secret_shows_no_version_even_with_show(run, write):
    (secret,) = write("POST", [{"key": "TOKEN", "value": "first-value"}])
    write("PUT", [{"id": secret["id"], "type": "sealed"}])
    payload = run_json(run, "secrets", "history", "demo", "Development", "TOKEN")
    assert [(v["version"], v["value"]) for v in payload["versions"]] == [(2, None), (1, None)]
    shown = run("secrets", "history", "demo", "Development", "TOKEN", "--show")
    assert shown.exit_code == 0 and "first-value" not in shown.output
    assert [line.rsplit(" ", 1)[1] for line in shown.output.splitlines()] == [
        "TOKEN=(sealed)"] * 2


def test_restore_undeletes_and_is_recorded_as_the_admin_command(run, deleted_secret, write,
                                                                client, demo, owner_headers,
                                                                db, services):
    payload = run_json(run, "secrets", "restore", "demo", "Development", "DB_URL", "--path",
                       "/db", "--version", "1")
    assert payload == {"id": deleted_secret, "version": 3, "restoredFrom": 1, "path": "/db"}
    query = urlencode({"app_id": demo[0]["id"], "env": "Development"})
    (listed,) = client.get(f"/v1/secrets/?{query}", headers=owner_headers).json
    assert (listed["value"], listed["version"]) == ("first-value", 3)
    newest = client.get(f"/v1/secrets/{deleted_secret}/history/?{query}",
                        headers=owner_headers).json["data"][0]
    login = operator_name()
    assert (newest["event"], newest["actor"]) == (
        "restored", {"type": "operator", "id": login, "name": login})
    services.read_log.flush()
    (event,) = db.all("SELECT actor_type, actor_id, channel, details FROM audit_events"
                      " WHERE action = 'secrets.restore'")
    assert (event["actor_type"], event["actor_id"], event["channel"]) == (
        "operator", login, "cli")
    assert json.loads(event["details"]) == {"secrets": [{"id": deleted_secret, "version": 3}]}

    def history_reads():
        return db.scalar("SELECT count(*) FROM audit_events WHERE action = 'secrets.read_history'"
                         " AND actor_type = 'operator' AND channel = 'cli'")

    assert history_reads() == 0
    run("secrets", "history", "demo", "Development", "DB_URL", "--path", "/db")
    assert history_reads() == 1


def test_restore_plain_output(run, deleted_secret):
    output = run("secrets", "restore", "demo", "Development", "DB_URL", "--path", "/db",
                 "--version", "2").output
    assert output.strip() == f"Restored version 2 of secret {deleted_secret} as version 3."


def test_errors_are_one_line_without_the_key(run, deleted_secret, write):
    missing = run("secrets", "history", "demo", "Development", "NOPE_KEY", ok=False)
    assert missing.exit_code == 1
    assert missing.output.strip() == (
        "Error: No secret with this key at path / in this environment.")
    unknown = run("secrets", "restore", "demo", "Development", "DB_URL", "--path", "/db",
                  "--version", "7", ok=False)
    assert (unknown.exit_code, unknown.output.strip()) == (
        1, "Error: Version 7 of this secret not found")
    (renamed,) = write("POST", [{"key": "OLD_NAME", "value": "x"}])
    write("PUT", [{"id": renamed["id"], "key": "NEW_NAME"}])
    write("POST", [{"key": "OLD_NAME", "value": "y"}])
    taken = run("secrets", "restore", "demo", "Development", "NEW_NAME", "--version", "1",
                ok=False)
    assert (taken.exit_code, taken.output.strip()) == (1, "Error: Duplicate secret found")
