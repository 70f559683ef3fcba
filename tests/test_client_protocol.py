"""The Phase client protocol over HTTP: /service/secrets/tokens/ and /service/secrets/.

Each test does the client side as Phase's CLI and SDKs do, with phase_lite.phase_crypto: unwrap
the key share, XOR it into the token's private key, open the wrapped seed and salt, derive the
environment's key pair, then read and write ph:v1 ciphertexts.
"""

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest

import support
from phase_lite import phase_crypto
from phase_lite import secrets as secret_rules
from phase_lite.client_protocol import WrappedKeyCache
from phase_lite.store import apps as app_store
from phase_lite.store.audit import EVENTS
from phase_lite.vault import EnvironmentKeys
from support import (SECRETS_URL, TOKENS_URL, VECTORS, Session, bearer_headers, fetch_keys,
                     make_user_token, opened, send, unwrap_environments, wire_rows)

pytestmark = pytest.mark.both_backends


def set_environment_seed(services, env_row, seed, salt):
    """Give an environment known key material (for known-answer tests)."""
    vault = services.vault
    data_key = vault.data_key(env_row["app_id"])
    with services.db.transaction():
        services.db.execute(  # no door changes an environment's keys: written here
            "UPDATE environments SET seed_enc = ?, salt_enc = ? WHERE id = ?",
            (vault.encrypt(data_key, "environments", env_row["id"], "seed", seed),
             vault.encrypt(data_key, "environments", env_row["id"], "salt", salt),
             env_row["id"]))
    vault.forget()
    return app_store.get_environment(services.db, support.organisation_id(services),
                                     env_row["id"])


# -- /service/secrets/tokens/ ---------------------------------------------------------------


def test_tokens_response_carries_the_key_material_of_every_granted_environment(
        client, services, demo, sa_token):
    app_row, envs = demo
    payload = fetch_keys(client, sa_token)

    assert list(payload) == ["wrapped_key_share", "account_id", "offline_enabled", "apps",
                             "organisation"]
    assert len(payload["wrapped_key_share"]) == 208
    assert payload["offline_enabled"] is False
    org = support.organisation(services)
    assert payload["organisation"] == {"id": org["id"], "name": org["name"]}
    [app] = payload["apps"]
    assert (app["id"], app["name"], app["encryption"]) == (app_row["id"], "demo", "SSE")
    names = [k["environment"]["name"] for k in app["environment_keys"]]
    assert names == ["Development", "Staging", "Production"]

    unwrapped = unwrap_environments(sa_token, payload)
    for env_key in app["environment_keys"]:
        env = env_key["environment"]
        row = envs[env["name"]]
        server_keys = services.vault.environment_keys(row)
        client_env = unwrapped[env["name"]]
        assert env == {"id": row["id"], "name": row["name"], "env_type": row["env_type"],
                       "index": row["sort_index"], "created_at": row["created_at"],
                       "updated_at": row["updated_at"]}
        assert env_key["identity_key"] == server_keys.public_key == client_env.public_key
        assert client_env.private_key == server_keys.private_key
        assert client_env.salt == server_keys.salt
        assert env_key["paths"] is None and env_key["deleted_at"] is None
        assert env_key["user"] is None
        assert env_key["service_account"] == payload["account_id"]
        assert list(env_key) == ["id", "environment", "paths", "identity_key", "wrapped_seed",
                                 "wrapped_salt", "created_at", "updated_at", "deleted_at",
                                 "user", "service_account"]


def test_tokens_response_is_snake_case_even_when_camel_case_is_asked(client, sa_token):
    payload = fetch_keys(client, sa_token, **{"X-Use-Camel-Case": "true"})
    assert "wrapped_key_share" in payload and "account_id" in payload
    env_key = payload["apps"][0]["environment_keys"][0]
    assert "identity_key" in env_key and "env_type" in env_key["environment"]


def test_service_account_sees_only_its_granted_environments(client, make_app,
                                                            make_service_token):
    _, envs = make_app("shop")
    make_app("other")
    issued = make_service_token([envs["Staging"], envs["Development"]], name="dev-staging")
    payload = fetch_keys(client, issued)
    assert [app["name"] for app in payload["apps"]] == ["shop"]
    names = [k["environment"]["name"] for k in payload["apps"][0]["environment_keys"]]
    assert names == ["Development", "Staging"]
    assert set(unwrap_environments(issued, payload)) == {"Development", "Staging"}


def test_owner_token_sees_every_app_in_creation_order(client, services, owner, make_app):
    make_app("first")
    make_app("second", ["test", "live"])
    payload = fetch_keys(client, owner)
    assert list(payload)[:3] == ["wrapped_key_share", "user_id", "offline_enabled"]
    assert "account_id" not in payload
    assert [(app["name"], [k["environment"]["name"] for k in app["environment_keys"]])
            for app in payload["apps"]] == [
        ("first", ["Development", "Staging", "Production"]), ("second", ["test", "live"])]
    env_key = payload["apps"][1]["environment_keys"][0]
    assert env_key["user"] == payload["user_id"] and env_key["service_account"] is None
    assert set(unwrap_environments(owner, payload)) == {
        "Development", "Staging", "Production", "test", "live"}


def test_developer_token_sees_only_granted_environments(client, services, demo):
    _, envs = demo
    _, issued = make_user_token(services, "dev@example.com", "Developer", [envs["Production"]])
    payload = fetch_keys(client, issued)
    assert [k["environment"]["name"] for k in payload["apps"][0]["environment_keys"]] == [
        "Production"]
    _, bare = make_user_token(services, "new@example.com", "Developer")
    assert fetch_keys(client, bare)["apps"] == []


def test_wrapped_keys_are_cached_per_token_and_environment(client, services, demo, sa_token,
                                                           make_service_token):
    first = fetch_keys(client, sa_token)
    second = fetch_keys(client, sa_token)
    assert first == second
    other = make_service_token(list(demo[1].values()), name="other")
    theirs = fetch_keys(client, other)
    mine = [k["wrapped_seed"] for k in first["apps"][0]["environment_keys"]]
    assert not set(mine) & {k["wrapped_seed"] for k in theirs["apps"][0]["environment_keys"]}


def test_wrapped_keys_change_with_the_environment_key_material(client, services, demo,
                                                               sa_token):
    _, envs = demo
    before = unwrap_environments(sa_token, fetch_keys(client, sa_token))["Development"]
    set_environment_seed(services, envs["Development"], "ab" * 32, "cd" * 32)
    after = unwrap_environments(sa_token, fetch_keys(client, sa_token))["Development"]
    assert after.public_key != before.public_key
    assert after.public_key == phase_crypto.env_keypair("ab" * 32)[0]
    assert after.salt == "cd" * 32


def test_key_cache_is_bounded_and_keeps_the_most_recent():
    cache = WrappedKeyCache(size=2)
    token_public, token_private = phase_crypto.env_keypair("11" * 32)

    def keys(n):
        seed = f"{n:02x}" * 32
        public, private = phase_crypto.env_keypair(seed)
        return EnvironmentKeys(f"env-{n}", "app", seed, "ee" * 32, public, private)

    first = cache.get("token", keys(1), token_public)
    second = cache.get("token", keys(2), token_public)
    assert cache.get("token", keys(1), token_public) == first
    cache.get("token", keys(3), token_public)  # evicts 2, the least recently used
    assert len(cache) == 2
    assert cache.get("token", keys(1), token_public) == first
    assert cache.get("token", keys(2), token_public) != second
    seed = phase_crypto.decrypt_asymmetric(first[0], token_private, token_public)
    assert seed == "01" * 32


@pytest.mark.parametrize("vector", VECTORS["seed_keypairs"], ids=lambda v: v["seed"][:8])
def test_identity_key_is_the_kx_seed_public_key(client, services, demo, sa_token, vector):
    """Known answer: Phase's seed -> key pair vectors through the server's identity_key."""
    _, envs = demo
    set_environment_seed(services, envs["Staging"], vector["seed"], "00" * 32)
    payload = fetch_keys(client, sa_token)
    [staging] = [k for k in payload["apps"][0]["environment_keys"]
                 if k["environment"]["name"] == "Staging"]
    assert staging["identity_key"] == vector["public_key"]
    client_env = unwrap_environments(sa_token, payload)["Staging"]
    assert client_env.private_key == vector["private_key"]


def test_wrapped_key_share_opens_with_the_token_wrap_key_as_hex_text(client, sa_token):
    """The share is hex(XChaCha20-Poly1305(hex text of keyShare1) || nonce) under wrapKey."""
    import nacl.bindings as sodium

    payload = fetch_keys(client, sa_token)
    _, _, _, token_public, share0, wrap_key = sa_token.token.split(":")
    blob = bytes.fromhex(payload["wrapped_key_share"])
    share1 = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
        blob[:-24], None, blob[-24:], bytes.fromhex(wrap_key)).decode("ascii")
    private = bytes(a ^ b for a, b in zip(bytes.fromhex(share0), bytes.fromhex(share1)))
    assert sodium.crypto_scalarmult_base(private).hex() == token_public


def _expired_token(services, demo):
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")
    _, issued = support.make_service_account(services, "old", expires_at=past)
    return bearer_headers(issued)


@pytest.mark.parametrize("case, message", [
    ("unknown", "Token expired or deleted"),
    ("revoked", "Token expired or deleted"),
    ("expired", "Token expired or deleted"),
    ("missing", "Authentication credentials were not provided."),
    ("raw token", "Invalid token"),
    ("lower-case type", "Invalid token"),
])
def test_tokens_endpoint_refuses_bad_credentials_with_403(client, services, demo, sa_token,
                                                          case, message):
    bearer = sa_token.bearer_token.split(" ")[1]
    headers = {
        "unknown": {"Authorization": "Bearer ServiceAccount " + "0" * 64},
        "revoked": bearer_headers(sa_token),
        "expired": None,
        "missing": {},
        "raw token": {"Authorization": f"Bearer {sa_token.token}"},
        "lower-case type": {"Authorization": f"Bearer serviceaccount {bearer}"},
    }[case]
    if case == "revoked":
        support.revoke(services, sa_token.id)
    if case == "expired":
        headers = _expired_token(services, demo)
    response = client.get(TOKENS_URL, headers=headers)
    assert response.status_code == 403
    assert response.get_json() == {"error": message}


@pytest.mark.parametrize("path", ["/service/public/secrets/tokens/", "/public/secrets/tokens/",
                                  "/service/secrets/tokens", "/secrets/tokens"])
def test_tokens_endpoint_is_not_under_public_and_needs_its_slash(client, sa_headers, path):
    response = client.get(path, headers=sa_headers)
    assert response.status_code == 404
    assert response.get_json() == {"error": "Not found."}


def test_tokens_endpoint_answers_at_both_prefixes(client, sa_token):
    assert client.get("/secrets/tokens/", headers=bearer_headers(sa_token)).status_code == 200
    assert fetch_keys(client, sa_token)["apps"]


# -- /service/secrets/ ----------------------------------------------------------------------


@pytest.fixture
def session(client, sa_token):
    return Session.open(client, sa_token)


@pytest.fixture
def owner_session(client, owner, demo):
    return Session.open(client, owner)


def rest_create(services, env_row, *entries, principal=None):
    """Create secrets as /v1/secrets/ does (same parser, same domain function)."""
    parsed = secret_rules.parse_new_secrets({"secrets": list(entries)})
    return secret_rules.create_secrets(services, principal, env_row, parsed)


def rest_list(services, env_row):
    return {s.key: s for s in secret_rules.list_secrets(services, None, env_row)}


def assert_written(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_data() == b""


def test_get_serves_rest_written_secrets_as_ciphertexts_to_the_environment(
        client, services, demo, session):
    _, envs = demo
    [secret] = rest_create(services, envs["Development"],
                           {"key": "db_host", "value": "localhost", "comment": "primary",
                            "tags": ["team-a"], "path": "backend/"})
    [row] = wire_rows(client, session, KeyDigest="")
    assert list(row) == ["id", "environment", "folder", "path", "key", "key_digest", "value",
                         "version", "tags", "comment", "type", "created_at", "updated_at",
                         "override", "lifecycle"]
    assert (row["id"], row["environment"], row["folder"], row["path"], row["version"]) == (
        secret.id, envs["Development"]["id"], secret.folder_id, "/backend", 1)
    assert row["folder"] is not None
    assert row["key_digest"] == session.envs["Development"].digest("DB_HOST") == secret.key_digest
    assert (row["tags"], row["type"], row["override"], row["lifecycle"]) == (
        ["team-a"], "secret", None, "static")
    assert row["created_at"] == secret.created_at and row["updated_at"] == secret.updated_at
    for field in ("key", "value", "comment"):
        assert phase_crypto.is_ph_v1(row[field])
    assert opened(session, [row]) == {"DB_HOST": ("localhost", "primary", "/backend")}


def test_ciphertexts_made_on_read_are_stored_and_reused(client, services, db, demo, session):
    _, envs = demo
    rest_create(services, envs["Development"], {"key": "A", "value": "1"},
                {"key": "B", "value": ""})
    assert db.all("SELECT wire_key FROM secrets WHERE wire_key IS NOT NULL") == []
    first = wire_rows(client, session)
    # stored sealed under the app's data key, bound to table, row and column
    data_key = services.vault.data_key(demo[0]["id"])
    stored = [tuple(services.vault.decrypt(data_key, "secrets", row["id"], f"wire_{field}",
                                           row[f"wire_{field}"])
                    for field in ("key", "value", "comment"))
              for row in db.all("SELECT * FROM secrets ORDER BY rowid")]
    assert stored == [(row["key"], row["value"], row["comment"]) for row in first]
    assert [row["comment"] for row in first] == ["", ""]
    assert wire_rows(client, session) == first
    assert opened(session, first) == {"A": ("1", "", "/"), "B": ("", "", "/")}


def test_a_busy_database_skips_the_ciphertext_fill(services, db, demo, config):
    from phase_lite.store import open_database
    from phase_lite.store import secrets as secret_store

    _, envs = demo
    [secret] = rest_create(services, envs["Development"], {"key": "A", "value": "1"})
    holder = open_database(config.database_location)  # another connection, mid-write
    try:
        with holder.transaction():
            holder.execute("UPDATE secrets SET updated_at = updated_at")
            fill = [(secret.id, secret.version, "ph:v1:k", "ph:v1:v", "")]
            assert secret_store.fill_secret_wire(db, fill) is False
    finally:
        holder.close()
    assert db.scalar("SELECT wire_key FROM secrets") is None
    if db.backend == "sqlite":  # the usual wait is back
        assert db.scalar("PRAGMA busy_timeout") == 30_000
    else:
        assert db.scalar("SHOW lock_timeout") == "30s"
    stale = [(secret.id, secret.version + 1, "ph:v1:k", "ph:v1:v", "")]
    assert secret_store.fill_secret_wire(db, stale) is True
    assert db.scalar("SELECT wire_key FROM secrets") is None


@pytest.mark.parametrize("headers, expected", [
    ({}, {"ROOT_A", "ROOT_B", "DEEP_A"}),
    ({"KeyDigest": ""}, {"ROOT_A", "ROOT_B", "DEEP_A"}),
    ({"Path": ""}, {"ROOT_A", "ROOT_B", "DEEP_A"}),
    ({"Path": "/"}, {"ROOT_A", "ROOT_B"}),
    ({"Path": "backend/"}, {"DEEP_A"}),
    ({"Path": "/nowhere"}, set()),
    ({"KeyDigest": "ROOT_A"}, {"ROOT_A"}),
    ({"KeyDigest": "DEEP_A", "Path": "/"}, set()),
    ({"KeyDigest": "0" * 64}, set()),
    ({"dynamic": "true", "lease": "true", "lease-ttl": "60"}, {"ROOT_A", "ROOT_B", "DEEP_A"}),
])
def test_get_filters_by_digest_and_path_headers(client, services, demo, session, headers,
                                                 expected):
    _, envs = demo
    rest_create(services, envs["Development"], {"key": "ROOT_A", "value": "1"},
                {"key": "ROOT_B", "value": "2"},
                {"key": "DEEP_A", "value": "3", "path": "/backend"})
    rest_create(services, envs["Staging"], {"key": "ROOT_A", "value": "staging"})
    if headers.get("KeyDigest", "").isupper():
        headers = dict(headers, KeyDigest=session.envs["Development"].digest(headers["KeyDigest"]))
    rows = wire_rows(client, session, **headers)
    assert set(opened(session, rows)) == expected
    assert all(row["type"] != "dynamic" for row in rows)


def test_get_renders_camel_case_when_asked(client, services, owner_session, demo):
    _, envs = demo
    body = {"secrets": [owner_session.entry(
        "OVER", "shared", override={"value": owner_session.envs["Development"].encrypt("mine"),
                                    "isActive": True})]}
    assert_written(send(client, "POST", owner_session, body))
    [row] = wire_rows(client, owner_session, **{"X-Use-Camel-Case": "true"})
    assert list(row) == ["id", "environment", "folder", "path", "key", "keyDigest", "value",
                         "version", "tags", "comment", "type", "createdAt", "updatedAt",
                         "override", "lifecycle"]
    assert list(row["override"]) == ["id", "value", "isActive", "createdAt", "updatedAt"]
    assert row["override"]["isActive"] is True
    assert owner_session.envs["Development"].decrypt(row["override"]["value"]) == "mine"
    [snake] = wire_rows(client, owner_session, **{"X-Use-Camel-Case": "TRUE"})
    assert "key_digest" in snake and snake["override"]["is_active"] is True


@pytest.mark.parametrize("content_type", [
    "application/json", "application/x-www-form-urlencoded", "text/plain;charset=UTF-8", None,
])
def test_post_parses_json_whatever_the_content_type(client, services, demo, session,
                                                     content_type):
    body = {"secrets": [session.entry("NEW_KEY", "new-value", path="/node")]}
    assert_written(send(client, "POST", session, body, content_type=content_type))
    secret = rest_list(services, demo[1]["Development"])["NEW_KEY"]
    assert (secret.value, secret.path, secret.version) == ("new-value", "/node", 1)


def test_post_keeps_the_client_ciphertexts_and_the_rest_view_agrees(client, services, db, demo,
                                                                    session):
    env = session.envs["Development"]
    entry = session.entry("API_KEY", "s3cr3t", comment=env.encrypt("note"), tags=["team-a"],
                          path="backend")
    assert_written(send(client, "POST", session, {"secrets": [entry]}))
    [row] = wire_rows(client, session)
    assert (row["key"], row["value"], row["comment"]) == (
        entry["key"], entry["value"], entry["comment"])
    assert (row["path"], row["tags"], row["key_digest"]) == ("/backend", ["team-a"],
                                                            entry["keyDigest"])
    development = demo[1]["Development"]
    rendered = secret_rules.render_secrets(
        services, None, development, secret_rules.list_secrets(services, None, development))
    [rest] = rendered
    assert (rest["id"], rest["key"], rest["value"], rest["comment"], rest["keyDigest"],
            rest["path"], rest["tags"], rest["version"]) == (
        row["id"], "API_KEY", "s3cr3t", "note", row["key_digest"], "/backend", ["team-a"], 1)


def test_a_rest_update_replaces_only_the_ciphertexts_of_the_fields_it_changed(
        client, services, db, demo, session):
    entry = session.entry("MIXED", "client-value", comment=session.envs["Development"].encrypt("c"))
    assert_written(send(client, "POST", session, {"secrets": [entry]}))
    [before] = wire_rows(client, session)
    changes = secret_rules.parse_secret_changes(
        {"secrets": [{"id": before["id"], "value": "rest-value"}]})
    secret_rules.update_secrets(services, None, demo[1]["Development"], changes)
    assert db.scalar("SELECT wire_value FROM secrets") is None
    [after] = wire_rows(client, session)
    assert (after["key"], after["comment"], after["version"]) == (
        entry["key"], entry["comment"], 2)
    assert opened(session, [after]) == {"MIXED": ("rest-value", "c", "/")}


def test_post_of_a_lower_case_key_stores_it_upper_cased(client, services, demo, session):
    env = session.envs["Development"]
    entry = {"key": env.encrypt("lower_key"), "keyDigest": env.digest("LOWER_KEY"),
             "value": env.encrypt("v"), "path": "/", "tags": [], "comment": ""}
    assert_written(send(client, "POST", session, {"secrets": [entry]}))
    [row] = wire_rows(client, session)
    assert row["key"] != entry["key"] and env.decrypt(row["key"]) == "LOWER_KEY"
    assert set(rest_list(services, demo[1]["Development"])) == {"LOWER_KEY"}


@pytest.mark.parametrize("change, message", [
    ({"key": "not-a-ciphertext"}, "Invalid ciphertext format"),
    ({"value": "ph:v1:1234:abc"}, "Invalid ciphertext format"),
    ({"comment": "plain comment"}, "Invalid ciphertext format"),
    ({"override": {"value": "plain", "isActive": True}}, "Invalid ciphertext format"),
    ({"value": "ph:v1:" + "ab" * 32 + ":bm90IGEgY2lwaGVydGV4dA=="},
     "A ciphertext does not open with this environment's key"),
    ({"keyDigest": "0" * 64}, "keyDigest does not match the key (keys are stored upper-cased)"),
    ({"key": ""}, "Each secret requires a non-empty 'key'."),
    ({"type": "dynamic"},
     "Invalid 'type': 'dynamic'. Must be one of ['config', 'sealed', 'secret']."),
])
def test_bad_entries_are_refused_and_nothing_is_written(client, services, demo, session, change,
                                                        message):
    good = session.entry("GOOD", "g")
    bad = {**session.entry("BAD", "b"), **change}
    response = send(client, "POST", session, {"secrets": [good, bad]})
    assert response.status_code == 400
    assert response.get_json() == {"error": message}
    assert rest_list(services, demo[1]["Development"]) == {}


def test_digest_of_the_key_as_typed_is_refused_for_lower_case_keys(client, session):
    """Phase's Python SDK and Node SDK hash lower-case keys as typed; phase_lite refuses them
    rather than store a secret no other client can find."""
    env = session.envs["Development"]
    entry = {"key": env.encrypt("my_key"), "keyDigest": env.digest("my_key"),
             "value": env.encrypt("v"), "path": "/", "tags": [], "comment": ""}
    response = send(client, "POST", session, {"secrets": [entry]})
    assert response.status_code == 400
    assert "keyDigest does not match" in response.get_json()["error"]


@pytest.mark.parametrize("body, message", [
    (b"", "Request body is required."),
    (b"{not json", "Request body must be valid JSON."),
    (b"[]", "Request body must be a JSON object."),
    (b'{"secrets": []}', "'secrets' must be a non-empty list."),
    (b'{"secrets": "x"}', "'secrets' must be a non-empty list."),
    (b'{"secrets": [1]}', "Each entry in 'secrets' must be an object."),
])
def test_malformed_post_bodies_get_phase_messages(client, session, body, message):
    response = send(client, "POST", session, body)
    assert response.status_code == 400
    assert response.get_json() == {"error": message}


def test_duplicates_give_409_against_live_rows_and_inside_a_batch(client, services, demo,
                                                                  session):
    _, envs = demo
    rest_create(services, envs["Development"], {"key": "TAKEN", "value": "rest"})
    response = send(client, "POST", session, {"secrets": [session.entry("taken", "again")]})
    assert response.status_code == 409
    assert response.get_json() == {"error": "Duplicate secret found"}
    twice = [session.entry("TWICE", "1"), session.entry("TWICE", "2")]
    response = send(client, "POST", session, {"secrets": twice})
    assert response.status_code == 409
    elsewhere = session.entry("TAKEN", "deep", path="/deep")
    assert_written(send(client, "POST", session, {"secrets": [elsewhere]}))
    listed = secret_rules.list_secrets(services, None, envs["Development"])
    assert {(s.key, s.path) for s in listed} == {
        ("TAKEN", "/"), ("TAKEN", "/deep")}


def test_put_updates_partially_and_bumps_the_version(client, services, demo, session):
    _, envs = demo
    env = session.envs["Development"]
    [secret] = rest_create(services, envs["Development"],
                           {"key": "KEEP", "value": "old", "comment": "c", "tags": ["t"]})
    [row] = wire_rows(client, session)
    update = {"id": secret.id, "value": env.encrypt("new"), "tags": row["tags"],
              "comment": row["comment"]}
    assert_written(send(client, "PUT", session, {"secrets": [update]},
                        content_type="application/x-www-form-urlencoded"))
    after = rest_list(services, envs["Development"])["KEEP"]
    assert (after.id, after.value, after.comment, after.tags, after.version, after.path) == (
        secret.id, "new", "c", ("t",), 2, "/")
    [row] = wire_rows(client, session)
    assert (row["value"], row["comment"]) == (update["value"], update["comment"])

    move = {"id": secret.id, "key": env.encrypt("RENAMED"), "keyDigest": env.digest("RENAMED"),
            "path": "/moved"}
    assert_written(send(client, "PUT", session, {"secrets": [move]}))
    after = rest_list(services, envs["Development"])["RENAMED"]
    assert (after.id, after.value, after.path, after.version, after.key_digest) == (
        secret.id, "new", "/moved", 3, env.digest("RENAMED"))


def test_put_conflicts_and_unknown_ids(client, services, demo, session):
    _, envs = demo
    env = session.envs["Development"]
    first, second = rest_create(services, envs["Development"], {"key": "ONE", "value": "1"},
                                {"key": "TWO", "value": "2"})
    rename = {"id": second.id, "key": env.encrypt("ONE"), "keyDigest": env.digest("ONE")}
    response = send(client, "PUT", session, {"secrets": [rename]})
    assert (response.status_code, response.get_json()) == (409, {"error": "Duplicate secret found"})
    unknown = {"id": "00000000-0000-4000-8000-000000000000", "value": env.encrypt("x")}
    response = send(client, "PUT", session, {"secrets": [unknown]})
    assert response.status_code == 404
    assert response.get_json() == {"error": f"Secret not found: {unknown['id']}"}
    response = send(client, "PUT", session, {"secrets": [{"value": env.encrypt("x")}]})
    assert (response.status_code, response.get_json()) == (400, {"error": "Secret ID not provided"})
    listed = secret_rules.list_secrets(services, None, envs["Development"])
    assert {s.key: s.version for s in listed} == {
        "ONE": 1, "TWO": 1}


def test_delete_ignores_ids_it_cannot_find(client, services, demo, session):
    _, envs = demo
    mine, other = rest_create(services, envs["Development"], {"key": "GONE", "value": "1"},
                              {"key": "STAYS", "value": "2"})
    [staging] = rest_create(services, envs["Staging"], {"key": "GONE", "value": "staging"})
    body = {"secrets": [mine.id, staging.id, "no-such-id"]}
    assert_written(send(client, "DELETE", session, body, content_type="text/plain;charset=UTF-8"))
    assert set(rest_list(services, envs["Development"])) == {"STAYS"}
    assert set(rest_list(services, envs["Staging"])) == {"GONE"}
    assert_written(send(client, "DELETE", session, {"secrets": ["no-such-id"]}))
    assert_written(send(client, "DELETE", session, {"secrets": []}))
    response = send(client, "DELETE", session, {"secrets": "x"})
    assert (response.status_code, response.get_json()) == (
        400, {"error": "'secrets' must be a non-empty list of secret IDs."})


def test_every_write_bumps_the_environment_updated_at(client, services, demo, session):
    def stamps():
        payload = fetch_keys(client, session.issued)
        return {k["environment"]["name"]: k["environment"]["updated_at"]
                for k in payload["apps"][0]["environment_keys"]}

    before = stamps()
    env = session.envs["Development"]
    assert_written(send(client, "POST", session, {"secrets": [session.entry("BUMP", "1")]}))
    after_create = stamps()
    assert after_create["Development"] > before["Development"]
    assert after_create["Staging"] == before["Staging"]
    [row] = wire_rows(client, session)
    assert_written(send(client, "PUT", session, {"secrets": [{"id": row["id"],
                                                             "value": env.encrypt("2")}]}))
    after_update = stamps()
    assert after_update["Development"] > after_create["Development"]
    assert_written(send(client, "DELETE", session, {"secrets": [row["id"]]}))
    assert stamps()["Development"] > after_update["Development"]


def test_writes_and_reads_are_audited_like_rest(client, services, db, demo, session):
    assert_written(send(client, "POST", session, {"secrets": [session.entry("AUDITED", "1")]},
                        **{"User-Agent": "phase-cli/1.21.3"}))
    [row] = wire_rows(client, session)
    services.read_log.flush()
    events = db.all("SELECT action, actor_type, token_id, environment_id, details, user_agent"
                    f" FROM {EVENTS} WHERE resource_type = 'secret' ORDER BY id")
    assert [(e["action"], e["actor_type"], e["token_id"]) for e in events] == [
        ("secrets.create", "service", session.issued.id),
        ("secrets.read", "service", session.issued.id)]
    assert events[0]["user_agent"] == "phase-cli/1.21.3"
    assert json.loads(events[0]["details"]) == {"secrets": [{"id": row["id"], "version": 1}]}
    assert json.loads(events[1]["details"]) == {"secrets": [row["id"]]}


def test_overrides_belong_to_personal_tokens_only(client, services, demo, owner_session,
                                                  sa_token):
    env = owner_session.envs["Development"]
    entry = owner_session.entry("PERSONAL", "shared",
                                override={"value": env.encrypt("mine"), "isActive": True})
    assert_written(send(client, "POST", owner_session, {"secrets": [entry]}))
    [row] = wire_rows(client, owner_session)
    assert row["override"]["is_active"] is True
    assert env.decrypt(row["override"]["value"]) == "mine"

    toggle = {"id": row["id"], "override": {"value": row["override"]["value"],
                                            "isActive": False}}
    assert_written(send(client, "PUT", owner_session, {"secrets": [toggle]}))
    [row] = wire_rows(client, owner_session)
    assert row["override"]["is_active"] is False and env.decrypt(row["value"]) == "shared"

    sa = Session(sa_token, unwrap_environments(sa_token, fetch_keys(client, sa_token)))
    [seen] = wire_rows(client, sa)
    assert seen["override"] is None
    sa_entry = sa.entry("SA_OVERRIDE", "v", override={"value": env.encrypt("x"),
                                                      "isActive": True})
    assert_written(send(client, "POST", sa, {"secrets": [sa_entry]}))
    assert [r["override"] for r in wire_rows(client, owner_session)] == [
        {**row["override"]}, None]


def test_rest_written_overrides_reach_the_client(client, services, owner, demo, owner_session):
    _, envs = demo
    principal = services.auth.authenticate(bearer_headers(owner)["Authorization"])
    rest_create(services, envs["Development"],
                {"key": "OVR", "value": "shared", "override": {"value": "own", "isActive": True}},
                principal=principal)
    [row] = wire_rows(client, owner_session)
    assert owner_session.envs["Development"].decrypt(row["override"]["value"]) == "own"
    assert wire_rows(client, owner_session) == [row]


@pytest.mark.parametrize("case, status, message", [
    ("no credentials", 401, "Authentication credentials were not provided."),
    ("unknown token", 401, "Token expired or deleted"),
    ("revoked token", 401, "Token expired or deleted"),
    ("unknown environment", 401, "Environment not found"),
    ("service account without access", 401, "Service account cannot access this environment"),
    ("user without access", 403, "User cannot access this environment"),
    ("no environment", 403,
     "Environment context required. Supply `app_id` and `env` as query parameters."),
])
def test_secrets_endpoint_refuses_like_the_rest_api(client, services, demo, session,
                                                    make_service_token, case, status, message):
    _, envs = demo
    headers = session.headers()
    if case == "no credentials":
        del headers["Authorization"]
    elif case == "unknown token":
        headers["Authorization"] = "Bearer ServiceAccount " + "f" * 64
    elif case == "revoked token":
        support.revoke(services, session.issued.id)
    elif case == "unknown environment":
        headers["Environment"] = "00000000-0000-4000-8000-000000000000"
    elif case == "service account without access":
        headers.update(bearer_headers(make_service_token([envs["Staging"]], name="staging")))
    elif case == "user without access":
        headers.update(bearer_headers(make_user_token(services, "d@example.com", "Developer")[1]))
    elif case == "no environment":
        del headers["Environment"]
    for method in ("GET", "POST", "PUT", "DELETE"):
        body = json.dumps({"secrets": [session.entry("X", "y")]})
        response = client.open(SECRETS_URL, method=method, headers=headers, data=body)
        assert (response.status_code, response.get_json()) == (status, {"error": message})
    assert rest_list(services, envs["Development"]) == {}


def test_role_without_the_permission_is_refused(client, services, db, demo):
    from phase_lite.store import accounts as account_store

    _, envs = demo
    org_id = support.organisation_id(services)
    perms = {"permissions": {}, "appPermissions": {"Secrets": ["read"]}}
    with db.transaction():
        account_store.insert_role(db, org_id, "Reader", "", "", json.dumps(perms),
                                  False)
    _, issued = support.make_service_account(services, "reader", "Reader",
                                             [envs["Development"]])
    reader = Session(issued, unwrap_environments(issued, fetch_keys(client, issued)))
    assert wire_rows(client, reader) == []
    response = send(client, "POST", reader, {"secrets": [reader.entry("X", "y")]})
    assert (response.status_code, response.get_json()) == (
        403, {"error": "You don't have permission to create secrets in this environment."})


@pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "TRACE"])
def test_other_methods_are_refused_after_authentication(client, session, method):
    response = client.open(SECRETS_URL, method=method, headers=session.headers())
    assert (response.status_code, response.get_json()) == (
        403, {"error": f"Unsupported HTTP method: {method}"})
    assert client.open(SECRETS_URL, method=method).status_code == 401


@pytest.mark.parametrize("path", ["/service/public/secrets/", "/public/secrets/",
                                  "/service/secrets", "/secrets"])
def test_secrets_endpoint_is_not_under_public(client, session, path):
    response = client.get(path, headers=session.headers())
    assert (response.status_code, response.get_json()) == (404, {"error": "Not found."})


# -- known answers: Phase's vectors through the server's own crypto steps -------------------

RECIPIENT = VECTORS["asymmetric_encrypt"][0]


@pytest.fixture
def vector_env(client, services, demo, sa_token):
    """Development with the vectors' recipient seed as its environment seed."""
    _, envs = demo
    salt = hashlib.sha256(b"salt").hexdigest()
    set_environment_seed(services, envs["Development"], RECIPIENT["recipient_seed"], salt)
    return Session.open(client, sa_token)


def test_vector_environment_keys_come_out_of_the_tokens_endpoint(vector_env):
    env = vector_env.envs["Development"]
    assert env.public_key == RECIPIENT["recipient_public_key"]
    assert env.private_key == RECIPIENT["recipient_private_key"]


@pytest.mark.parametrize("vector", VECTORS["asymmetric_encrypt"],
                         ids=lambda v: v["plaintext"][:12])
def test_server_decrypts_phase_vector_ciphertexts(client, services, demo, vector_env, vector):
    env = vector_env.envs["Development"]
    entry = {"key": env.encrypt("VECTOR"), "keyDigest": env.digest("VECTOR"),
             "value": vector["ciphertext"], "comment": vector["ciphertext"], "path": "/",
             "tags": []}
    assert_written(send(client, "POST", vector_env, {"secrets": [entry]}))
    secret = rest_list(services, demo[1]["Development"])["VECTOR"]
    assert secret.value == secret.comment == vector["plaintext"]
    [row] = wire_rows(client, vector_env)
    assert row["value"] == vector["ciphertext"]


def test_server_encrypts_so_the_vector_private_key_opens_it(client, services, demo, vector_env):
    _, envs = demo
    rest_create(services, envs["Development"], {"key": "SERVER_MADE", "value": "plain text"})
    [row] = wire_rows(client, vector_env)
    for field, expected in (("key", "SERVER_MADE"), ("value", "plain text")):
        assert phase_crypto.decrypt_asymmetric(
            row[field], RECIPIENT["recipient_private_key"], RECIPIENT["recipient_public_key"]
        ) == expected


def test_server_key_digest_is_keyed_blake2b_of_the_salt_hex_text(client, services, demo,
                                                                 vector_env):
    development = app_store.get_environment(services.db, support.organisation_id(services),
                                            demo[1]["Development"]["id"])
    [secret] = rest_create(services, development, {"key": "digest_me", "value": "x"})
    salt = hashlib.sha256(b"salt").hexdigest()
    expected = hashlib.blake2b(b"DIGEST_ME", key=salt.encode(), digest_size=32).hexdigest()
    assert secret.key_digest == expected
    assert wire_rows(client, vector_env)[0]["key_digest"] == expected


def test_no_plaintext_or_token_reaches_the_log(client, services, demo, session, caplog):
    env = session.envs["Development"]
    with caplog.at_level("DEBUG"):
        assert_written(send(client, "POST", session,
                            {"secrets": [session.entry("LOGGED_KEY", "very-secret-value")]}))
        [row] = wire_rows(client, session)
        send(client, "PUT", session, {"secrets": [{"id": row["id"],
                                                   "value": env.encrypt("other-secret")}]})
        send(client, "POST", session, {"secrets": [session.entry("BAD", "x", keyDigest="0")]})
        send(client, "DELETE", session, {"secrets": [row["id"]]})
    text = caplog.text
    for secret in ("LOGGED_KEY", "very-secret-value", "other-secret",
                   session.issued.token, session.issued.bearer_token.split()[1]):
        assert secret not in text
