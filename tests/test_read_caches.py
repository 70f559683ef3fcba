"""Reads served from memory stay exact: every change is seen by the very next request.

Principals, scopes and encoded GET answers are kept for one database generation
(``db.generation()``); these tests change the data every way it can change (this app,
another connection, another process) and check the next answer.
"""

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

import support
from phase_lite import auth, service_accounts
from phase_lite.accounts import Grantee
from phase_lite import secrets as secret_rules
from phase_lite.app import open_services
from phase_lite.caches import GenerationCache
from phase_lite.store import format_time, open_database
from phase_lite.store import accounts as account_store
from phase_lite.store import apps as app_store
from live import REPO, database_env
from support import (SECRETS_URL, bearer_headers, fetch_keys, limited_app, make_user_token,
                     unwrap_environments)

pytestmark = pytest.mark.both_backends

GONE = {"error": "Token expired or deleted"}
SA_NO_ACCESS = {"error": "Service account cannot access this environment"}


def rest_url(app_row, env="Development", **params):
    query = "".join(f"&{name}={value}" for name, value in params.items())
    return f"/service/public/v1/secrets/?app_id={app_row['id']}&env={env}{query}"


def rest_values(client, headers, app_row, env="Development", **params):
    response = client.get(rest_url(app_row, env, **params), headers=headers)
    assert response.status_code == 200, response.get_json()
    return {item["key"]: item["value"] for item in response.get_json()}


def client_values(client, issued, env_row):
    """{key: value} of an environment as the Phase CLI reads it (ph:v1, decrypted here)."""
    env = unwrap_environments(issued, fetch_keys(client, issued))[env_row["name"]]
    response = client.get(SECRETS_URL, headers={**bearer_headers(issued),
                                                "Environment": env_row["id"], "KeyDigest": ""})
    assert response.status_code == 200, response.get_json()
    return {env.decrypt(item["key"]): env.decrypt(item["value"])
            for item in response.get_json()}


def post_secrets(client, headers, app_row, env, entries):
    response = client.post(rest_url(app_row, env), headers=headers, json={"secrets": entries})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture
def filled(client, demo, owner_headers):
    """demo with Staging KEY=old and Development PLAIN=1, REF=${Staging.KEY}."""
    app_row, _ = demo
    post_secrets(client, owner_headers, app_row, "Staging", [{"key": "KEY", "value": "old"}])
    post_secrets(client, owner_headers, app_row, "Development", [
        {"key": "PLAIN", "value": "1"}, {"key": "REF", "value": "${Staging.KEY}"}])
    return demo


# -- the building blocks ---------------------------------------------------------------------


def test_generation_moves_on_every_commit_from_anywhere(db, config):
    first = db.generation()
    assert db.generation() == first  # nothing happened
    with db.transaction():
        db.execute("UPDATE organisations SET name = name || '.'")
    after_own = db.generation()
    assert after_own > first

    other = open_database(config.database_location)
    try:
        with other.transaction():
            other.execute("UPDATE organisations SET name = name || '.'")
    finally:
        other.close()
    assert db.generation() > after_own


def test_generation_cache_holds_one_generation_within_its_bounds():
    cache = GenerationCache(max_entries=2, max_bytes=10, max_entry_bytes=6, size=len)
    cache.put(1, "a", b"aaaa")
    assert cache.get(1, "a") == b"aaaa"
    cache.put(0, "old", b"o")  # computed before the generation moved: never stored
    assert cache.get(1, "old") is None
    cache.put(1, "big", b"x" * 7)  # over the entry limit
    assert cache.get(1, "big") is None
    cache.put(1, "b", b"bbbb")
    cache.put(1, "c", b"cccc")  # 12 bytes > 10: the least recently used goes
    assert (cache.get(1, "a"), cache.get(1, "b"), cache.get(1, "c")) == (None, b"bbbb", b"cccc")
    assert cache.get(2, "b") is None  # a newer generation empties it
    assert cache.get(1, "c") is None and len(cache) == 0


# -- tokens ----------------------------------------------------------------------------------


def revoke_with_second_connection(config, token_id):
    other = open_services(config)  # its own connection, as another process would have
    try:
        support.revoke(other, token_id)
    finally:
        other.close()


def revoke_with_admin_command(config, token_id):
    completed = subprocess.run(
        [sys.executable, "-m", "phase_lite.cli", "service-accounts", "tokens", "revoke",
         token_id], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", **database_env(config)})
    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize("revoke", [revoke_with_second_connection, revoke_with_admin_command])
def test_a_token_revoked_elsewhere_is_refused_on_the_next_request(client, config, filled,
                                                                   make_service_token, revoke):
    app_row, envs = filled
    issued = make_service_token(list(envs.values()))
    headers = bearer_headers(issued)
    for _ in range(2):  # the principal, scope and answer are now cached
        assert rest_values(client, headers, app_row)["PLAIN"] == "1"
        assert client_values(client, issued, envs["Development"])["PLAIN"] == "1"

    revoke(config, issued.id)

    for url, extra in ((rest_url(app_row), {}), (rest_url(app_row, key="PLAIN"), {}),
                       (SECRETS_URL, {"Environment": envs["Development"]["id"]})):
        response = client.get(url, headers={**headers, **extra})
        assert (response.status_code, response.get_json()) == (401, GONE)


def test_an_expired_token_is_refused_even_while_cached(client, filled, make_service_token,
                                                       monkeypatch):
    app_row, envs = filled
    expires = datetime.now(timezone.utc) + timedelta(hours=1)
    headers = bearer_headers(make_service_token(list(envs.values()),
                                                expires_at=format_time(expires)))
    for _ in range(2):
        assert rest_values(client, headers, app_row)["PLAIN"] == "1"

    lookups = []
    real_lookup = account_store.find_token_by_hash
    monkeypatch.setattr(account_store, "find_token_by_hash",
                        lambda *args: lookups.append(args) or real_lookup(*args))
    assert rest_values(client, headers, app_row)["PLAIN"] == "1"
    assert lookups == []  # answered from the cache

    later = format_time(expires + timedelta(seconds=1))
    monkeypatch.setattr(auth, "now", lambda: later)
    response = client.get(rest_url(app_row), headers=headers)
    assert (response.status_code, response.get_json()) == (401, GONE)
    assert lookups == []  # refused by the clock, not by a new lookup


# -- access ----------------------------------------------------------------------------------


def test_grants_changed_elsewhere_take_effect_on_the_next_request(client, config, filled,
                                                                  owner_headers,
                                                                  make_service_token):
    app_row, envs = filled
    headers = bearer_headers(make_service_token([envs["Development"]], name="dev-only"))
    sa = service_accounts.service_account_by_id_or_name(
        client.application.extensions["phase_lite"],
        support.operator(client.application.extensions["phase_lite"]), "dev-only")
    for _ in range(2):
        assert rest_values(client, headers, app_row)["REF"] == "${Staging.KEY}"
        staging = client.get(rest_url(app_row, "Staging"), headers=headers)
        assert (staging.status_code, staging.get_json()) == (401, SA_NO_ACCESS)

    other = open_services(config)  # as the admin command would, from its own connection
    try:
        support.grant(other, Grantee.of_service_account(sa), [envs["Staging"]])
    finally:
        other.close()
    assert rest_values(client, headers, app_row, "Staging") == {"KEY": "old"}
    assert rest_values(client, headers, app_row)["REF"] == "old"  # may follow it now

    response = client.put(f"/v1/service-accounts/{sa['id']}/access/", headers=owner_headers,
                          json={"apps": [{"id": app_row["id"],
                                          "environments": [envs["Staging"]["id"]]}]})
    assert response.status_code == 200, response.get_json()
    development = client.get(rest_url(app_row), headers=headers)
    assert (development.status_code, development.get_json()) == (401, SA_NO_ACCESS)
    assert rest_values(client, headers, app_row, "Staging") == {"KEY": "old"}


# -- secrets ---------------------------------------------------------------------------------


def test_writes_are_seen_at_once_by_both_read_paths_and_by_references(client, config, filled,
                                                                      owner_headers, sa_token):
    app_row, envs = filled
    headers = bearer_headers(sa_token)
    for _ in range(2):
        assert rest_values(client, headers, app_row) == {"PLAIN": "1", "REF": "old"}
        assert client_values(client, sa_token, envs["Development"]) == {
            "PLAIN": "1", "REF": "${Staging.KEY}"}

    [key] = client.get(rest_url(app_row, "Staging"), headers=headers).get_json()
    response = client.put(rest_url(app_row, "Staging"), headers=owner_headers,
                          json={"secrets": [{"id": key["id"], "value": "new"}]})
    assert response.status_code == 200
    assert rest_values(client, headers, app_row) == {"PLAIN": "1", "REF": "new"}
    assert rest_values(client, headers, app_row, key="REF") == {"REF": "new"}

    post_secrets(client, owner_headers, app_row, "Development", [{"key": "ADDED", "value": "2"}])
    assert rest_values(client, headers, app_row)["ADDED"] == "2"
    assert client_values(client, sa_token, envs["Development"])["ADDED"] == "2"

    # Another process writing through the same domain rules (its own connection and caches).
    for _ in range(2):
        assert "ELSEWHERE" not in rest_values(client, headers, app_row, "Staging")
        assert "ELSEWHERE" not in client_values(client, sa_token, envs["Staging"])
    other = open_services(config)
    try:
        secret_rules.create_secrets(other, None, envs["Staging"],
                                    [secret_rules.NewSecret(key="ELSEWHERE", value="3")])
    finally:
        other.close()
    assert rest_values(client, headers, app_row, "Staging")["ELSEWHERE"] == "3"
    assert client_values(client, sa_token, envs["Staging"])["ELSEWHERE"] == "3"


def test_a_rolled_back_write_never_reaches_the_cached_snapshot(client, services, filled,
                                                              sa_token):
    """A write that commits moves the cached snapshot on (``db.on_commit``); one rolled back
    with the transaction around it (as the console's bulk edit does) leaves it as it was."""
    app_row, envs = filled
    headers = bearer_headers(sa_token)
    before = rest_values(client, headers, app_row)
    env_row = app_store.get_environment(services.db, support.organisation_id(services),
                                        envs["Development"]["id"])  # at its current version
    assert services.snapshots.get(env_row["id"], env_row["version"]) is not None  # warm
    with pytest.raises(RuntimeError), services.db.transaction():
        secret_rules.create_secrets(services, None, env_row,
                                    [secret_rules.NewSecret(key="PHANTOM", value="x")])
        raise RuntimeError
    assert rest_values(client, headers, app_row) == before
    assert "PHANTOM" not in client_values(client, sa_token, env_row)
    assert "PHANTOM" not in {s.key for s in secret_rules.list_secrets(services, None, env_row)}

    secret_rules.create_secrets(services, None, env_row,
                                [secret_rules.NewSecret(key="KEPT", value="y")])
    assert rest_values(client, headers, app_row) == {**before, "KEPT": "y"}


# -- one caller's answer is never another's ---------------------------------------------------


def test_answers_are_per_token(client, filled, make_service_token):
    app_row, envs = filled
    everything = bearer_headers(make_service_token(list(envs.values()), name="all"))
    dev_only = bearer_headers(make_service_token([envs["Development"]], name="dev"))
    for _ in range(3):
        assert rest_values(client, everything, app_row)["REF"] == "old"
        assert rest_values(client, dev_only, app_row)["REF"] == "${Staging.KEY}"


def test_personal_overrides_stay_with_their_user(client, services, filled, owner, owner_headers):
    app_row, envs = filled
    [plain] = [item for item in client.get(rest_url(app_row), headers=owner_headers).get_json()
               if item["key"] == "PLAIN"]
    response = client.put(rest_url(app_row), headers=owner_headers, json={"secrets": [
        {"id": plain["id"], "override": {"value": "mine", "isActive": True}}]})
    assert response.status_code == 200
    _, colleague = make_user_token(services, "dev@example.com", "Developer",
                                   list(envs.values()))
    second_owner_token = support.user_token(services, "owner@example.com", "2")

    def override(issued_headers):
        items = client.get(rest_url(app_row), headers=issued_headers).get_json()
        found = [item["override"] for item in items if item["key"] == "PLAIN"][0]
        return found and found["value"]

    for _ in range(2):
        assert override(owner_headers) == "mine"
        assert override(bearer_headers(colleague)) is None
        assert override(bearer_headers(second_owner_token)) == "mine"  # the user's, any token

    def client_override(issued):
        env = unwrap_environments(issued, fetch_keys(client, issued))["Development"]
        items = client.get(SECRETS_URL, headers={**bearer_headers(issued),
                                                 "Environment": envs["Development"]["id"]}
                           ).get_json()
        found = [item["override"] for item in items if env.decrypt(item["key"]) == "PLAIN"][0]
        return found and env.decrypt(found["value"])

    for _ in range(2):
        assert client_override(owner) == "mine"
        assert client_override(colleague) is None


# -- GETs answered before Flask ----------------------------------------------------------------


def test_direct_answers_are_the_answers_flask_gives(client, filled, sa_token):
    app_row, envs = filled
    for url, extra in ((rest_url(app_row, tags="none"), {}),
                       (SECRETS_URL + "?direct=1", {"Environment": envs["Development"]["id"]})):
        # The first request with a new query string goes through Flask, the next ones not.
        answers = [client.get(url, headers={**bearer_headers(sa_token), **extra})
                   for _ in range(3)]
        for response in answers:
            assert response.status_code == 200
            assert response.headers["Cache-Control"] == "no-store"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Content-Type"] == "application/json"
            assert int(response.headers["Content-Length"]) == len(response.data)
        assert answers[0].data == answers[1].data == answers[2].data


def test_direct_reads_count_once_against_the_rate_limit(config, owner, owner_headers):
    app = limited_app(config, (3, 60))
    try:
        services = app.extensions["phase_lite"]
        app_id = support.make_app(services, "limited")[0]["id"]
        client = app.test_client()
        url = f"/v1/secrets/?app_id={app_id}&env=Development"
        assert [client.get(url, headers=owner_headers).status_code for _ in range(3)] == [
            200, 200, 200]
        for _ in range(2):  # refused, and the refusal is not counted
            response = client.get(url, headers=owner_headers)
            assert response.status_code == 429
            assert response.get_json()["error"].startswith("Request was throttled.")
            assert response.headers["Retry-After"].isdigit()
    finally:
        app.extensions["phase_lite"].close()
