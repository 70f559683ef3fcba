"""Writes to secrets: all or nothing, versions, audit events, no plaintext in logs or on disk,
the snapshot cache, and the domain interface other callers use."""

import dataclasses
import json
import logging
import secrets as random

import pytest

import support

from phase_lite import secrets
from phase_lite.app import create_app
from phase_lite.audit import RequestMeta
from phase_lite.errors import Duplicate, InvalidRequest, PermissionDenied
from phase_lite.store import StoreError
from phase_lite.store import accounts as account_store
from phase_lite.store import apps as app_store
from phase_lite.store import history as history_store
from phase_lite.store import secrets as secret_store
from phase_lite.store.audit import EVENTS

pytestmark = pytest.mark.both_backends

TABLES = ("secrets", "secret_tags", "tags", "folders", "secret_versions", "personal_secrets",
          "audit_events")


def fingerprint(db):
    """Everything a secrets write can touch."""
    state = {table: [tuple(row) for row in db.all(f"SELECT * FROM {table} ORDER BY rowid")]
             for table in TABLES if table != "secret_tags"}
    state["secret_tags"] = [tuple(r) for r in db.all("SELECT * FROM secret_tags ORDER BY 1, 2")]
    state["environments"] = [tuple(r) for r in db.all(
        "SELECT id, version, updated_at FROM environments ORDER BY id")]
    return state


@pytest.fixture
def url(demo):
    return f"/v1/secrets/?app_id={demo[0]['id']}&env=Development"


@pytest.fixture
def existing(client, url, owner_headers):
    """Two secrets (one sealed, one tagged at a path, with an override) to change."""
    response = client.post(url, headers=owner_headers, data=json.dumps({"secrets": [
        {"key": "SEALED", "value": "s", "type": "sealed"},
        {"key": "PLAIN", "value": "p", "path": "/old", "tags": ["old"],
         "override": {"value": "o", "isActive": True}},
    ]}))
    assert response.status_code == 200
    return {item["key"]: item for item in response.json}


GOOD = {"key": "GOOD", "value": "g", "path": "/new/folder", "tags": ["brand-new"],
        "override": {"value": "mine", "isActive": True}}

ATOMIC_CASES = [
    ("POST", [GOOD, {"key": "  ", "value": "v"}], 400),
    ("POST", [GOOD, {"key": "LONG", "value": "v", "tags": ["ok", "x" * 65]}], 400),
    ("POST", [GOOD, {"key": "good", "value": "again", "path": "new/folder/"}], 409),
    ("POST", [GOOD, {"key": "plain", "value": "taken", "path": "/old"}], 409),
    ("POST", [GOOD, {"key": "O", "value": "v", "override": {"value": "x"}}], 400),
    ("PUT", [{"id": "{PLAIN}", "key": "renamed", "path": "/moved", "tags": ["brand-new"],
              "override": {"value": "x", "isActive": False}},
             {"id": "00000000-0000-0000-0000-000000000000", "value": "v"}], 404),
    ("PUT", [{"id": "{PLAIN}", "value": "changed", "path": "/moved"},
             {"id": "{SEALED}", "tags": ["y" * 65]}], 400),
    ("PUT", [{"id": "{PLAIN}", "value": "changed", "tags": ["brand-new"]},
             {"id": "{SEALED}", "type": "config"}], 400),
    ("PUT", [{"id": "{PLAIN}", "key": "same", "path": "/"},
             {"id": "{SEALED}", "key": "SAME"}], 409),
    ("PUT", [{"id": "{PLAIN}", "value": "changed"}, {"value": "no id"}], 400),
    ("POST", [GOOD, {"key": "NUL", "value": "v", "path": "/a\u0000b"}], 400),
    ("PUT", [{"id": "{PLAIN}", "value": "changed"}, {"id": "{SEALED}", "path": "a\u0000"}], 400),
    ("DELETE", ["{PLAIN}", "{SEALED}", "00000000-0000-0000-0000-000000000000"], 404),
]


@pytest.mark.parametrize("method, entries, status", ATOMIC_CASES)
def test_a_bad_entry_changes_nothing(client, url, owner_headers, db, existing, method, entries,
                                     status):
    text = json.dumps({"secrets": entries})
    for key, item in existing.items():
        text = text.replace("{%s}" % key, item["id"])
    before = fingerprint(db)
    response = client.open(url, method=method, headers=owner_headers, data=text)
    assert response.status_code == status, response.json
    assert fingerprint(db) == before


def test_a_path_holding_nul_is_refused_by_name(client, url, owner_headers):
    # PostgreSQL cannot store it; SQLite could, and refuses it too so that both answer alike.
    response = client.post(url, headers=owner_headers, data=json.dumps(
        {"secrets": [{"key": "K", "value": "v", "path": "/a\u0000b"}]}))
    assert response.status_code == 400
    assert response.json == {"error": "A secret's path cannot contain a NUL character."}


def test_a_failure_while_writing_rolls_everything_back(client, url, owner_headers, db, existing,
                                                       monkeypatch):
    def broken(*args, **kwargs):
        raise StoreError("disk full")

    before = fingerprint(db)
    monkeypatch.setattr(secret_store, "insert_versions", broken)
    response = client.post(url, headers=owner_headers, data=json.dumps({"secrets": [GOOD]}))
    assert response.status_code == 500
    assert response.json == {"error": "Internal server error."}
    assert fingerprint(db) == before
    response = client.put(url, headers=owner_headers, data=json.dumps(
        {"secrets": [{"id": existing["PLAIN"]["id"], "value": "x", "tags": ["t"]}]}))
    assert response.status_code == 500
    assert fingerprint(db) == before
    monkeypatch.undo()
    # The cache did not see the failed writes either.
    (plain,) = client.get(url + "&key=PLAIN", headers=owner_headers).json
    assert (plain["value"], plain["version"]) == ("p", 1)


# -- versions --------------------------------------------------------------------------------


def test_every_write_keeps_an_encrypted_version(client, url, sa_headers, db, services, demo):
    response = client.post(url, headers=sa_headers, data=json.dumps(
        {"secrets": [{"key": "HIST", "value": "v1", "comment": "c1", "tags": ["t1"]}]}))
    secret_id = response.json[0]["id"]
    client.put(url, headers=sa_headers, data=json.dumps(
        {"secrets": [{"id": secret_id, "value": "v2", "path": "/p", "tags": ["t2", "t3"]}]}))
    client.delete(url, headers=sa_headers, data=json.dumps({"secrets": [secret_id]}))
    rows = list(reversed(history_store.secret_versions(db, secret_id)))
    data_key = services.vault.data_key(demo[0]["id"])

    def opened(row, field):
        return services.vault.decrypt(data_key, "secret_versions", row["id"], field,
                                      row[f"{field}_enc"])

    assert [(r["version"], r["event"], r["path"], json.loads(r["tags"])) for r in rows] == [
        (1, "create", "/", ["t1"]), (2, "update", "/p", ["t2", "t3"]),
        (2, "delete", "/p", ["t2", "t3"])]
    assert [(opened(r, "key"), opened(r, "value"), opened(r, "comment")) for r in rows] == [
        ("HIST", "v1", "c1"), ("HIST", "v2", "c1"), ("HIST", "v2", "c1")]
    assert b"v1" not in rows[0]["value_enc"]


# -- audit -----------------------------------------------------------------------------------


def audit_rows(services):
    services.read_log.flush()  # read events are written in batches
    return services.db.all(f"SELECT * FROM {EVENTS} ORDER BY created_at, id")


def test_writes_and_reads_are_audited_one_event_per_request(client, url, sa_headers, sa_token,
                                                            services, demo):
    headers = dict(sa_headers, **{"User-Agent": "audit-test/1.0"})
    start = len(audit_rows(services))
    created = client.post(url, headers=headers, data=json.dumps(
        {"secrets": [{"key": "A", "value": "1"}, {"key": "B", "value": "2"}]})).json
    ids = [item["id"] for item in created]
    client.get(url, headers=headers)
    client.get(url + "&key=NOTHING", headers=headers)
    client.put(url, headers=headers, data=json.dumps({"secrets": [{"id": ids[0]}]}))
    client.delete(url, headers=headers, data=json.dumps({"secrets": ids}))
    rows = audit_rows(services)[start:]
    assert [row["action"] for row in rows] == [
        "secrets.create", "secrets.read", "secrets.read", "secrets.update", "secrets.delete"]
    details = [json.loads(row["details"]) for row in rows]
    assert details == [
        {"secrets": [{"id": ids[0], "version": 1}, {"id": ids[1], "version": 1}]},
        {"secrets": ids},
        {"secrets": []},
        {"secrets": [{"id": ids[0], "version": 2}]},
        {"secrets": [{"id": ids[0], "version": 2}, {"id": ids[1], "version": 1}]},
    ]
    sa_id = services.db.scalar("SELECT service_account_id FROM tokens WHERE id = ?", (sa_token.id,))
    for row in rows:
        assert (row["actor_type"], row["actor_id"], row["token_id"]) == (
            "service", sa_id, sa_token.id)
        assert (row["app_id"], row["environment_id"]) == (
            demo[0]["id"], demo[1]["Development"]["id"])
        assert (row["ip_address"], row["user_agent"]) == ("127.0.0.1", "audit-test/1.0")


def test_failed_requests_are_not_audited(services, client, url, sa_headers, db):
    start = len(audit_rows(services))
    client.post(url, headers=sa_headers, data=json.dumps({"secrets": [{"key": ""}]}))
    client.put(url, headers=sa_headers, data=json.dumps({"secrets": [{"id": "nope"}]}))
    assert len(audit_rows(services)) == start


def test_client_address_from_a_trusted_proxy(services, owner, config, demo, sa_headers, db):
    proxied = create_app(dataclasses.replace(config, trusted_proxies=("127.0.0.1",)))
    try:
        client = proxied.test_client()
        url = f"/v1/secrets/?app_id={demo[0]['id']}&env=Development"
        for headers, expected in [
            ({"X-Real-IP": "203.0.113.9"}, "203.0.113.9"),
            ({"X-Real-IP": "6.6.6.6", "X-Forwarded-For": "198.51.100.1"}, "198.51.100.1"),
            ({"X-Forwarded-For": "6.6.6.6, 198.51.100.1"}, "198.51.100.1"),
            ({"X-Real-IP": "not an ip", "X-Forwarded-For": "2001:db8::1"}, "2001:db8::1"),
            ({}, "127.0.0.1"),
        ]:
            client.post(url, headers=dict(sa_headers, **headers),
                        data=json.dumps({"secrets": [{"key": random.token_hex(4), "value": "v"}]}))
            assert audit_rows(services)[-1]["ip_address"] == expected
    finally:
        proxied.extensions["phase_lite"].close()


# -- no plaintext in logs, audit or files ------------------------------------------------------


def test_no_secret_material_in_logs_audit_or_files(client, url, owner_headers, owner, db,
                                                   services, data_dir, caplog):
    key, value, comment = (f"KEY_{random.token_hex(8).upper()}", f"value-{random.token_hex(8)}",
                           f"comment-{random.token_hex(8)}")
    override, value2 = f"override-{random.token_hex(8)}", f"value2-{random.token_hex(8)}"
    bearer = owner.bearer_token.split(" ")[1]
    caplog.set_level(logging.DEBUG)
    (item,) = client.post(url, headers=owner_headers, data=json.dumps({"secrets": [
        {"key": key, "value": value, "comment": comment,
         "override": {"value": override, "isActive": True}}]})).json
    client.get(url, headers=owner_headers)
    client.put(url, headers=owner_headers, data=json.dumps(
        {"secrets": [{"id": item["id"], "value": value2}]}))
    client.post(url, headers=owner_headers, data=json.dumps({"secrets": [
        {"key": key, "value": value}]}))  # 409
    client.post(url, headers=owner_headers, data=f'{{"secrets": [{{"key": "{value}"')  # 400
    client.get(url, headers={"Authorization": f"Bearer User {bearer[:-1]}0"})
    client.delete(url, headers=owner_headers, data=json.dumps({"secrets": [item["id"]]}))
    needles = [key, value, comment, override, value2, bearer]
    for needle in needles:
        assert needle not in caplog.text
    for row in audit_rows(services):
        assert not any(needle in str(field) for field in tuple(row) for needle in needles)
    db.close()  # checkpoint nothing away: read the files as they are, WAL included
    for path in data_dir.iterdir():
        content = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in content, (path.name, needle)


# -- the snapshot cache ----------------------------------------------------------------------


def test_snapshot_cache_is_bounded_and_least_recently_used():
    cache = secrets.SnapshotCache(size=2)
    for env_id in ("a", "b"):
        cache.put(env_id, secrets.Snapshot(1, []))
    assert cache.get("a", 1) is not None  # "a" is now the most recent
    cache.put("c", secrets.Snapshot(1, []))
    assert cache.get("b", 1) is None
    assert cache.get("a", 1) is not None and cache.get("c", 1) is not None
    assert cache.get("a", 2) is None  # an older snapshot never answers a newer version
    cache.put("a", secrets.Snapshot(5, []))
    cache.put("a", secrets.Snapshot(4, []))
    assert cache.get("a", 3).version == 5


def test_cached_snapshot_always_equals_the_database(client, url, sa_headers, services, demo):
    env_row = demo[1]["Development"]

    def fresh():
        services.snapshots.clear()
        row = app_store.get_environment(services.db, demo[0]["organisation_id"], env_row["id"])
        return secrets.list_secrets(services, None, row)

    def cached():
        row = app_store.get_environment(services.db, demo[0]["organisation_id"], env_row["id"])
        return secrets.list_secrets(services, None, row)

    def send(method, body):
        response = client.open(url, method=method, headers=sa_headers, data=json.dumps(body))
        assert response.status_code == 200, response.json
        return response.json

    fresh()
    created = send("POST", {"secrets": [
        {"key": f"K{i}", "value": str(i), "path": f"/p{i % 3}", "tags": [f"t{i % 2}"]}
        for i in range(8)]})
    send("POST", {"secrets": [{"key": "ORDER", "value": "o", "tags": ["new", "t1", "t0"]}]})
    assert cached() == fresh()
    send("PUT", {"secrets": [{"id": created[1]["id"], "key": "renamed", "tags": ["x"]},
                             {"id": created[5]["id"], "path": "/moved"},
                             {"id": created[1]["id"], "value": "twice"}]})
    after_put = cached()
    assert [s.id for s in after_put[-2:]] == [created[5]["id"], created[1]["id"]]
    assert after_put == fresh()
    send("DELETE", {"secrets": [created[0]["id"], created[7]["id"]]})
    assert cached() == fresh()
    assert [item["id"] for item in client.get(url, headers=sa_headers).json] == [
        s.id for s in fresh()]


def test_reads_do_not_decrypt_again_until_a_write(client, url, sa_headers, services,
                                                  monkeypatch):
    client.post(url, headers=sa_headers, data=json.dumps(
        {"secrets": [{"key": f"K{i}", "value": "v"} for i in range(5)]}))
    client.get(url, headers=sa_headers)
    calls = []
    real = services.vault.decrypt
    monkeypatch.setattr(services.vault, "decrypt", lambda *a: calls.append(a[1]) or real(*a))
    for _ in range(3):
        assert len(client.get(url, headers=sa_headers).json) == 5
    assert calls == []


# -- the interface for other callers (client protocol) ----------------------------------------


@pytest.fixture
def dev(demo, sa_token, services):
    """(environment row, service-account principal) as the client protocol would hold them."""
    principal = services.auth.authenticate(f"Bearer {sa_token.bearer_token}")
    return demo[1]["Development"], principal


def test_create_with_client_digest_and_wire_ciphertexts(services, dev, db):
    env_row, principal = dev
    wire = secrets.Wire(key="ph:v1:" + "a" * 64 + ":k", value="ph:v1:" + "a" * 64 + ":v",
                        comment="ph:v1:" + "a" * 64 + ":c")
    (created,) = secrets.create_secrets(services, principal, env_row, [secrets.NewSecret(
        key="lower_key", value="v", key_digest="d" * 64, wire=wire)], RequestMeta())
    row = db.one("SELECT * FROM secrets WHERE id = ?", (created.id,))
    assert (row["key_digest"], *stored_wire(services, env_row, row)) == (
        "d" * 64, wire.key, wire.value, wire.comment)
    assert created.key == "lower_key"
    with pytest.raises(Duplicate):
        secrets.create_secrets(services, principal, env_row, [secrets.NewSecret(
            key="other", value="v", key_digest="d" * 64)])


def test_rest_writes_clear_only_the_wire_columns_they_change(services, dev, db, client,
                                                             sa_headers, demo):
    env_row, principal = dev
    wire = secrets.Wire(key="ph:v1:k", value="ph:v1:v", comment="ph:v1:c")
    (created,) = secrets.create_secrets(services, principal, env_row, [secrets.NewSecret(
        key="K", value="v", wire=wire)])
    url = f"/v1/secrets/?app_id={demo[0]['id']}&env=Development"
    client.put(url, headers=sa_headers, data=json.dumps(
        {"secrets": [{"id": created.id, "value": "new", "tags": ["t"], "path": "/p"}]}))
    row = db.one("SELECT * FROM secrets WHERE id = ?", (created.id,))
    assert stored_wire(services, env_row, row) == ("ph:v1:k", None, "ph:v1:c")
    secrets.update_secrets(services, principal, env_row, [secrets.SecretChange(
        id=created.id, key="K2", comment="c", wire=secrets.Wire(key="ph:v1:k2"))])
    row = db.one("SELECT * FROM secrets WHERE id = ?", (created.id,))
    assert stored_wire(services, env_row, row) == ("ph:v1:k2", None, None)


def stored_wire(services, env_row, row):
    """The row's wire columns, unsealed (they are stored under the app's data key)."""
    data_key = services.vault.data_key(env_row["app_id"])
    return tuple(None if row[column] is None else services.vault.decrypt(
        data_key, "secrets", row["id"], column, row[column])
        for column in ("wire_key", "wire_value", "wire_comment"))


def test_domain_functions_list_and_delete(services, dev):
    env_row, principal = dev
    created = secrets.create_secrets(services, principal, env_row, [
        secrets.NewSecret(key="A", value="1", path="/x", tags=("t",)),
        secrets.NewSecret(key="B", value="2")])
    digest = services.vault.environment_keys(env_row).digest("a")
    by_digest = secrets.list_secrets(services, None, env_row, key_digest=digest)
    assert [s.key for s in by_digest] == ["A"]
    assert [s.key for s in secrets.list_secrets(services, None, env_row, path="/")] == ["B"]
    assert [s.key for s in secrets.list_secrets(services, None, env_row, tags=["t"])] == ["A"]
    assert secrets.delete_secrets(services, principal, env_row, [s.id for s in created]) == 2
    assert secrets.list_secrets(services, None, env_row) == []
    with pytest.raises(InvalidRequest):
        secrets.create_secrets(services, None, env_row, [
            secrets.NewSecret(key="T", value="v", tags=("z" * 65,))])


def test_admin_command_writes_without_a_principal(services, demo, db):
    env_row = demo[1]["Staging"]
    (created,) = secrets.create_secrets(services, None, env_row, [
        secrets.NewSecret(key="CLI", value="v", override=secrets.Override("o"))])
    assert db.scalar("SELECT COUNT(*) FROM personal_secrets") == 0
    assert db.one("SELECT actor_type FROM audit_events ORDER BY id DESC LIMIT 1")[0] == "operator"
    (rendered,) = secrets.render_secrets(services, None, env_row, [created])
    assert (rendered["key"], rendered["override"]) == ("CLI", None)


def test_domain_normalises_paths_from_any_caller(services, dev):
    env_row, principal = dev
    (created,) = secrets.create_secrets(services, principal, env_row, [
        secrets.NewSecret(key="N", value="v", path="a//b/")])
    assert created.path == "/a/b"
    (moved,) = secrets.update_secrets(services, principal, env_row, [
        secrets.SecretChange(id=created.id, path="c/")])
    assert moved.path == "/c"
    with pytest.raises(Duplicate):
        secrets.create_secrets(services, principal, env_row, [
            secrets.NewSecret(key="N", value="v", path="/c/")])


@pytest.mark.parametrize("allowed, denied", [
    (["read"], "create"), (["read"], "update"), (["read"], "delete"),
    (["create", "update", "delete"], "read"),
])
def test_every_read_and_write_checks_the_role_whoever_calls_it(services, demo, db, allowed,
                                                               denied):
    """The domain functions refuse a role without the permission themselves: a door that
    forgot the check would still be refused, and nothing is written."""
    _, envs = demo
    env_row = envs["Development"]
    (seeded,) = secrets.create_secrets(services, None, env_row,
                                       [secrets.NewSecret(key="SEEDED", value="v")])
    env_row = app_store.get_environment(db, support.organisation_id(services), env_row["id"])
    permissions = {"permissions": {}, "appPermissions": {"Secrets": allowed}}
    with db.transaction():
        account_store.insert_role(db, support.organisation_id(services), "Limited", "", "",
                                  json.dumps(permissions), False)
    _, issued = support.make_service_account(services, "limited", "Limited", [env_row])
    limited = support.principal_of(services, issued)
    calls = {
        "create": lambda: secrets.create_secrets(services, limited, env_row,
                                                 [secrets.NewSecret(key="NEW", value="v")]),
        "update": lambda: secrets.update_secrets(services, limited, env_row,
                                                 [secrets.SecretChange(id=seeded.id, value="w")]),
        "delete": lambda: secrets.delete_secrets(services, limited, env_row, [seeded.id]),
        "read": lambda: secrets.list_secrets(services, limited, env_row),
    }
    before = fingerprint(db)
    with pytest.raises(PermissionDenied) as refused:
        calls[denied]()
    assert refused.value.message == (
        f"You don't have permission to {denied} secrets in this environment.")
    if denied == "read":
        with pytest.raises(PermissionDenied):
            secrets.read_secrets(services, limited, env_row)
        with pytest.raises(PermissionDenied):
            services.client_protocol.read_secrets(limited, env_row)
    assert fingerprint(db) == before
