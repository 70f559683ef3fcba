"""Every kind of audit event the code can write renders in `phase-lite audit list`, in
`audit list --json` and on the console's Audit log page.

The kinds are read from the code (each call that records an event, with its action and
resource type), and each is produced through a real door: the admin command, the REST API,
the console or a Lockbox link. A kind added to the code without being produced here fails
``test_every_kind_in_the_code_is_produced``.
"""

import ast
import json
from html import unescape
from pathlib import Path

import pytest

import support
from phase_source import PhaseSource
from support import bearer_headers
from phase_lite.app import create_app
from phase_lite.secrets import NewSecret

pytestmark = pytest.mark.both_backends

PACKAGE = Path(__file__).resolve().parents[1] / "phase_lite"

# Calls that record an event: the position of the action among their arguments, and the
# position of the resource type (or the resource type they always record).
RECORDING_CALLS = {"record": (3, 4), "event": (1, 2), "_record_anonymous": (3, "lockbox_share"),
                   "_record_read": (3, "secret")}


def kinds_in_code() -> set:
    """{(action, resource type or None when the code computes it)} of every recorded event."""
    kinds = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "finish" and node.args and isinstance(node.args[0], ast.Constant):
                kinds.add((f"secrets.{node.args[0].value}", "secret"))  # record_secret_write
                continue
            at, resource_at = RECORDING_CALLS.get(name, (None, None))
            if at is None or len(node.args) <= at:
                continue
            action = node.args[at]
            if not (isinstance(action, ast.Constant) and isinstance(action.value, str)):
                continue
            resource = resource_at
            if isinstance(resource_at, int):
                argument = node.args[resource_at] if len(node.args) > resource_at else None
                resource = argument.value if isinstance(argument, ast.Constant) else None
            kinds.add((action.value, resource))
    return kinds


def test_the_code_reading_finds_the_recording_calls():
    kinds = kinds_in_code()
    assert ("restore", "database") in kinds and ("secrets.read", "secret") in kinds
    assert ("lockbox.purge", "lockbox_share") in kinds and ("secrets.restore", "secret") in kinds
    assert len(kinds) >= 30


@pytest.fixture
def every_kind(tmp_path, config, app, services, client, owner, owner_headers, owner_client,
               run, sa_token, demo):
    """Produce one event of every kind through its door; return the app serving after it."""
    app_row, envs = demo
    dev = support.SecretsRoutes(client, app_row["id"], owner_headers)
    (made,) = dev.secrets("POST", [{"key": "DB_URL", "value": "pg://one"}])
    dev.secrets("PUT", [{"id": made["id"], "value": "pg://two"}])
    dev.listed()
    assert dev.history(made["id"]).status_code == 200
    assert dev.restore(made["id"], 1).status_code == 200
    assert dev.send("DELETE", [made["id"]]).status_code == 200
    assert dev.deleted().status_code == 200
    dev.secrets("POST", [{"key": "KEPT", "value": "kept"}])
    support.SecretsRoutes(client, app_row["id"], bearer_headers(sa_token)).listed()
    # The admin command.
    run("apps", "create", "shop")
    run("envs", "create", "shop", "qa")
    run("envs", "rename", "shop", "qa", "uat")
    run("envs", "move", "shop", "uat", "--before", "Development")
    run("envs", "delete", "shop", "uat")
    run("apps", "create", "gone")
    run("apps", "delete", "gone")
    run("users", "create", "--email", "dev@example.com")
    run("users", "grant", "dev@example.com", "--app", "shop")
    run("users", "revoke-access", "dev@example.com", "--app", "shop", "--env", "Staging")
    token = json.loads(run("users", "tokens", "create", "--email", "dev@example.com",
                           "--json").output)
    run("users", "tokens", "revoke", token["id"])
    run("service-accounts", "create", "deploy")
    run("service-accounts", "grant", "deploy", "--app", "shop", "--env", "Production")
    run("service-accounts", "revoke-access", "deploy", "--app", "shop")
    token = json.loads(run("service-accounts", "tokens", "create", "deploy", "--json").output)
    run("service-accounts", "tokens", "revoke", token["id"])
    run("users", "create", "--email", "gone@example.com")
    run("users", "delete", "gone@example.com")
    run("service-accounts", "create", "gone")
    run("service-accounts", "delete", "gone")
    run("keys", "rotate-app", "shop")
    run("keys", "rotate-master")
    # The REST API.
    shop_id = next(a["id"] for a in run_json_list(run, "apps", "list") if a["name"] == "shop")
    assert client.put(f"/v1/apps/{shop_id}/", headers=owner_headers,
                      json={"description": "the shop"}).status_code == 200
    sas = run_json_list(run, "service-accounts", "list")
    deploy = next(sa for sa in sas if sa["name"] == "deploy")
    assert client.put(f"/v1/service-accounts/{deploy['id']}/", headers=owner_headers,
                      json={"name": "deployer"}).status_code == 200
    assert client.put(f"/v1/service-accounts/{deploy['id']}/access/", headers=owner_headers,
                      json={"apps": []}).status_code in (200, 204)
    # Lockbox: made over the API, viewed through its link, revoked, purged once expired.
    viewed = support.lockbox_create(client, owner_headers, views=1)
    assert client.get(f"/v1/lockbox/{support.lockbox_link_id(viewed)}/").status_code == 200
    revoked = support.lockbox_create(client, owner_headers)
    assert client.delete(f"/v1/lockbox/shares/{revoked.json['id']}/",
                         headers=owner_headers).status_code in (200, 204)
    expired = support.lockbox_create(client, owner_headers)
    with services.db.transaction():
        services.db.execute("UPDATE lockbox_shares SET expires_at = ? WHERE id = ?",
                            ("2000-01-01T00:00:00.000000Z", expired.json["id"]))
    run("lockbox", "purge")
    # A mirror of a second server: added, synced, its app removed there, forgotten.
    source = PhaseSource(tmp_path)
    try:
        support.make_app(source.services, "upstream", ["Production"])
        source.create("upstream", "Production", NewSecret(key="COPIED", value="1"))
        source.server.start()
        (tmp_path / "source-token").write_text(source.owner.token)
        run("mirror", "add", "--host", source.server.url, "--token-file",
            str(tmp_path / "source-token"), "--name", "upstream")
        run("mirror", "sync", "upstream")
        source.delete_app("upstream")
        run("mirror", "sync", "upstream")
        run("mirror", "remove", "upstream")
    finally:
        source.close()
    # The console (signed in by the fixture: a password set, then a sign-in).
    csrf = {"csrf_token": owner_client.csrf}
    assert support.console_sign_in(app.test_client(),
                                   password="not the password at all").status_code == 401
    assert owner_client.post("/console/members/invite", data={
        **csrf, "email": "new@example.com",
        "role_id": support.role_id(services, "Developer")}).status_code == 200
    dev_user = next(u for u in run_json_list(run, "users", "list")
                    if u["email"] == "dev@example.com")
    assert owner_client.post(f"/console/members/{dev_user['id']}/role", data={
        **csrf, "role_id": support.role_id(services, "Manager")}).status_code == 303
    assert owner_client.post(f"/console/apps/{shop_id}/settings", data={
        **csrf, "name": "shop", "description": "the shop, again"}).status_code in (200, 303)
    assert owner_client.post(f"/console/service-accounts/{deploy['id']}/role", data={
        **csrf, "role_id": support.role_id(services, "Service")}).status_code in (200, 303)
    assert owner_client.post("/console/account/sign-out-others",
                             data={**csrf, **support.CONFIRMED}).status_code == 303
    assert owner_client.post("/console/account/password", data={
        **csrf, "current_password": "not the current password",
        "new_password": "another long password", "confirmation": "another long password",
    }).status_code == 403
    assert owner_client.post("/console/account/password", data={
        **csrf, "current_password": support.CONSOLE_PASSWORD,
        "new_password": "another long password", "confirmation": "another long password",
    }).status_code in (200, 303)
    assert owner_client.post("/console/sign-out", data=csrf).status_code == 303
    # Backup, restore (with secrets in the database) and a prune, by the admin command.
    services.read_log.flush()  # the reads above are in the backup, so in the restored log
    run("backup", str(tmp_path / "copy.sqlite3"))
    services.close()
    run("restore", "--yes", str(tmp_path / "copy.sqlite3"))
    run("audit", "prune", "--older-than-days", "30")
    run("backup", str(tmp_path / "again.sqlite3"))  # the restored copy predates the first
    after = create_app(config)
    yield after
    after.extensions["phase_lite"].close()


def run_json_list(run, *args):
    return json.loads(run(*args, "--json").output)


def matches(kind, event_kind):
    action, resource = kind
    return event_kind[0] == action and resource in (None, event_kind[1])


# A sign-in refused by an OpenID provider needs one running (tests/test_console_oidc.py
# produces and renders it).
PRODUCED_ELSEWHERE = {("sign_in_refused", "console_session")}


def test_every_kind_in_the_code_is_produced(every_kind, run):
    produced = {(e["action"], e["resourceType"])
                for e in run_json_list(run, "audit", "list", "--limit", "10000")}
    missing = {kind for kind in kinds_in_code()
               if not any(matches(kind, p) for p in produced)
               and kind[0] not in PRODUCED_ELSEWHERE and kind not in PRODUCED_ELSEWHERE}
    assert not missing


def test_every_kind_renders_in_audit_list_and_json(every_kind, run):
    listed = run_json_list(run, "audit", "list", "--limit", "10000")
    text = run("audit", "list", "--limit", "10000").output.splitlines()
    assert len(text) == len(listed)
    for event, line in zip(listed, text):
        assert f"  {event['action']} {event['resourceType']}" in line
    restore = next(e for e in listed if e["action"] == "restore")
    assert restore["details"]["counts"]["secrets"] >= 1
    assert "secrets" not in restore["details"]
    assert "keys=DB_URL" in "\n".join(text)  # secret writes still name their keys


def test_every_kind_renders_on_the_console_audit_page(every_kind, run):
    support.set_console_password(every_kind.extensions["phase_lite"], "owner@example.com",
                                 support.CONSOLE_PASSWORD)
    browser = every_kind.test_client()
    assert support.console_sign_in(browser).status_code == 303
    kinds = {(e["action"], e["resourceType"])
             for e in run_json_list(run, "audit", "list", "--limit", "10000")}
    whole = browser.get("/console/audit/")
    assert whole.status_code == 200
    for action in sorted({action for action, _ in kinds}):
        page = browser.get("/console/audit/", query_string={"event": action})
        assert page.status_code == 200, action
        rows = unescape(page.get_data(as_text=True)).split("<tbody>", 1)[1]
        assert f"<td>{action}" in rows, action


def test_events_written_before_the_counts_moved_are_repaired(config, owner, services, run):
    """A data directory restored by an older version holds backup and restore events whose
    ``"secrets"`` is a count: the migration moves their counts under ``"counts"``, so the
    audit log that listed nothing but a TypeError lists them again."""
    from phase_lite import audit
    from phase_lite.store import audit as audit_store
    from phase_lite.store.postgres import MIGRATIONS_TABLE

    db = services.db
    old = {"source": "b.sqlite3", "apps": 2, "environments": 6, "secrets": 3}
    with db.transaction():
        audit_store.insert_events(db, [audit.event(None, "restore", "database", details=old),
                                       audit.event(None, "backup", "database",
                                                   details={**old, "target": "c.sqlite3"})])
        table = MIGRATIONS_TABLE if db.backend == "postgresql" else "_sqlite_migrations"
        db.execute(f"DELETE FROM {table} WHERE name = 'm012_backup_event_counts'")
    db.migrate()
    listed = run_json_list(run, "audit", "list")
    restore, backup = (next(e for e in listed if e["action"] == action)
                       for action in ("restore", "backup"))
    assert restore["details"] == {"source": "b.sqlite3",
                                  "counts": {"apps": 2, "environments": 6, "secrets": 3}}
    assert backup["details"]["counts"] == {"apps": 2, "environments": 6, "secrets": 3}
    assert "restore database" in run("audit", "list").output
