"""`phase-lite audit list` and `audit prune`, and retention applied by the server."""

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from click.testing import CliRunner

import support
from live import LiveServer
from phase_lite import audit, serve
from phase_lite import secrets as secret_domain
from phase_lite.audit import RequestMeta
from phase_lite.cli import main
from phase_lite.secrets import NewSecret
from phase_lite.store import SqliteDatabase, format_time
from phase_lite.store import audit as audit_store

SECRET_VALUE = "audit-cli-secret-value-7f3a"


def cli(data_dir, *args, env=None):
    return CliRunner().invoke(main, list(args),
                              env={"PHASE_LITE_DATA_DIR": str(data_dir), **(env or {})})


def events_json(data_dir, *args):
    result = cli(data_dir, "audit", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def actions(data_dir, *args):
    """The listed actions, without the event of ``init`` every data directory starts with."""
    return [e["action"] for e in events_json(data_dir, *args) if e["action"] != "initialise"]


def days_ago(days):
    return format_time(datetime.now(timezone.utc) - timedelta(days=days))


def old_event(db, days, action="old"):
    with db.transaction():
        audit_store.insert_events(db, [dict(audit.event(None, action, "test"),
                                            created_at=days_ago(days))])


@pytest.fixture
def history(services, owner, demo, sa_token):
    """Secret writes by the Owner in Development and by a service account in Production."""
    _, envs = demo
    user = support.principal_of(services, owner)
    sa = support.principal_of(services, sa_token)
    meta = RequestMeta(ip_address="203.0.113.9", user_agent="pytest")
    secret_domain.create_secrets(services, user, envs["Development"],
                                 [NewSecret(key="OWNER_KEY", value=SECRET_VALUE)], meta)
    secret_domain.create_secrets(services, sa, envs["Production"],
                                 [NewSecret(key="SA_KEY", value=SECRET_VALUE)], meta)
    return {"user": user, "sa": sa, "envs": envs}


def test_list_shows_events_newest_first_without_values(data_dir, history):
    events = events_json(data_dir)
    writes = [e for e in events if e["action"] == "secrets.create"]
    assert [e["environmentId"] for e in writes] == [
        history["envs"]["Production"]["id"], history["envs"]["Development"]["id"]]
    assert writes[0]["actorType"] == "service" and writes[0]["actorId"] == history["sa"].account_id
    assert writes[0]["ipAddress"] == "203.0.113.9" and writes[0]["userAgent"] == "pytest"
    assert set(writes[0]) == {"id", "createdAt", "actorType", "actorId", "tokenId", "action",
                              "resourceType", "resourceId", "appId", "environmentId", "details",
                              "ipAddress", "userAgent", "channel", "names"}
    assert writes[0]["channel"] == "api"
    human = cli(data_dir, "audit", "list")
    assert human.exit_code == 0
    assert "secrets.create secret" in human.output and "ip=203.0.113.9" in human.output
    for output in (human.output, json.dumps(events)):
        assert SECRET_VALUE not in output


def test_list_names_accounts_apps_environments_and_keys_beside_their_ids(data_dir, history):
    """The admin command decrypts key names with each app's data key; values never appear."""
    events = events_json(data_dir)
    by_sa, by_owner = [e for e in events if e["action"] == "secrets.create"]
    (secret,) = by_sa["details"]["secrets"]
    assert by_sa["names"] == {
        history["sa"].account_id: "ci", by_sa["tokenId"]: by_sa["names"][by_sa["tokenId"]],
        by_sa["appId"]: "demo", history["envs"]["Production"]["id"]: "Production",
        secret["id"]: "SA_KEY"}
    assert by_owner["names"][history["user"].account_id] == "owner@example.com"
    assert "OWNER_KEY" in by_owner["names"].values()

    lines = cli(data_dir, "audit", "list").output.splitlines()
    sa_line = next(line for line in lines if "keys=SA_KEY" in line)
    assert f"by service:{history['sa'].account_id} (ci)" in sa_line
    assert f"app={by_sa['appId']} (demo)" in sa_line
    assert f"env={history['envs']['Production']['id']} (Production)" in sa_line
    assert any("keys=OWNER_KEY" in line and "(owner@example.com)" in line for line in lines)
    assert SECRET_VALUE not in "\n".join(lines)


@pytest.mark.parametrize("args, expected", [
    (["--app", "demo", "--env", "Development"], ["OWNER"]),
    (["--app", "demo", "--env", "production"], ["SA"]),
    (["--actor", "owner@example.com"], ["OWNER"]),
    (["--actor", "ci"], ["SA"]),
    (["--app", "demo"], ["SA", "OWNER"]),
    (["--app", "demo", "--limit", "1"], ["SA"]),
])
def test_list_filters(data_dir, history, args, expected):
    who = {history["user"].account_id: "OWNER", history["sa"].account_id: "SA"}
    events = events_json(data_dir, *args)
    assert [who[e["actorId"]] for e in events if e["action"] == "secrets.create"] == expected


def test_list_filters_by_environment_id_alone(data_dir, history):
    env_id = history["envs"]["Staging"]["id"]
    assert events_json(data_dir, "--env", env_id) == []
    result = cli(data_dir, "audit", "list", "--env", "Staging")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: No environment with id 'Staging' (give --app to use a name).")


@pytest.mark.parametrize("since, shown", [("2d", ["recent"]), ("10d", ["recent", "week"]),
                                          ("30m", ["recent"]), ("3600s", ["recent"])])
def test_list_since_relative(data_dir, db, owner, since, shown):
    old_event(db, 7, "week")
    old_event(db, 0.001, "recent")
    assert actions(data_dir, "--since", since) == shown


def test_list_since_iso_and_bad_value(data_dir, db, owner):
    old_event(db, 7, "week")
    when = (datetime.now(timezone.utc) - timedelta(days=8)).date().isoformat()
    assert actions(data_dir, "--since", when) == ["week"]
    bad = cli(data_dir, "audit", "list", "--since", "last tuesday")
    assert bad.exit_code == 2
    assert "expected an ISO-8601 date or time" in bad.output


def test_prune_deletes_older_events_and_records_itself(data_dir, db, owner):
    for days in (40, 31, 29, 1):
        old_event(db, days, f"d{days}")
    result = cli(data_dir, "audit", "prune", "--older-than-days", "30", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"deleted": 2, "olderThanDays": 30}
    assert actions(data_dir) == ["prune", "d1", "d29"]


def test_prune_defaults_to_the_retention_setting(data_dir, db, owner):
    old_event(db, 10)
    missing = cli(data_dir, "audit", "prune")
    assert missing.exit_code == 1
    assert missing.output.strip() == (
        "Error: give --older-than-days N or set PHASE_LITE_AUDIT_RETENTION_DAYS")
    done = cli(data_dir, "audit", "prune", env={"PHASE_LITE_AUDIT_RETENTION_DAYS": "7"})
    assert done.exit_code == 0
    assert done.output.strip() == "Deleted 1 audit events older than 7 days."


def test_retention_thread_prunes_at_start_and_then_periodically(config, owner):
    db = SqliteDatabase(config.database)
    old_event(db, 5)
    stop = serve.every("audit-retention", 0.05, lambda: audit.apply_retention(db, 3))
    try:
        deadline = time.monotonic() + 5
        while db.scalar("SELECT count(*) FROM audit_events WHERE action = 'old'"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        old_event(db, 4)  # a later prune removes this one too
        while db.scalar("SELECT count(*) FROM audit_events WHERE action = 'old'"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        stop.set()
        db.close()


@pytest.mark.slow
def test_serve_applies_retention_at_start(config, owner):
    db = SqliteDatabase(config.database)
    old_event(db, 100)
    old_event(db, 1, "kept")
    db.close()
    server = LiveServer(config.data_dir, {"PHASE_LITE_AUDIT_RETENTION_DAYS": "30"}).start()
    try:
        deadline = time.monotonic() + 10
        db = SqliteDatabase(config.database)
        try:
            while db.scalar("SELECT count(*) FROM audit_events WHERE action = 'old'"):
                assert time.monotonic() < deadline, "retention did not run at start"
                time.sleep(0.05)
            assert db.scalar("SELECT count(*) FROM audit_events WHERE action = 'kept'") == 1
        finally:
            db.close()
        assert requests.get(server.url + "/health/", timeout=5).status_code == 200
    finally:
        server.stop()
