"""The console loses nothing and daily tasks behave, over HTTP (Flask test client): stale
single-secret writes refused, keys every console form can handle, bulk edit's preview,
multi-line values, folders carried, the sign-in lockout counting failures only, navigation
for the caller's role, the service-account header that works."""

import html
import json
import re

import pytest

import support
from phase_lite.store import apps as app_store
from phase_lite.store import audit as audit_store

CONFIRMED = support.CONFIRMED
env_url = support.console_env_url
sign_in = support.console_sign_in


def version_of(db, env):
    return str(app_store.environment_versions(db, [env["id"]])[env["id"]])


def body(answer):
    return answer.get_data(as_text=True)


def exported(client, app_row, env):
    return client.get(env_url(app_row, env) + "export.json").get_json()


def secret_ids(client, url):
    return re.findall(r'<tr id="secret-([^"]+)">', body(client.get(url)))


# -- the sign-in lockout ---------------------------------------------------------------------


def test_successful_sign_ins_do_not_lock_anyone_out(app, services):
    support.set_console_password(services, "owner@example.com", support.CONSOLE_PASSWORD)
    for _ in range(15):  # more than the ten attempts an email has in 15 minutes
        assert sign_in(app.test_client()).status_code == 303
    client = app.test_client()
    for _ in range(9):
        assert sign_in(client, password="wrong password!").status_code == 401
    assert sign_in(client).status_code == 303  # the tenth attempt is still allowed
    client = app.test_client()
    assert sign_in(client, password="wrong password!").status_code == 401
    assert sign_in(client).status_code == 429  # ten failures lock the email


def test_the_throttle_forgives_only_what_it_counted():
    from phase_lite.console.sessions import SignInThrottle

    clock = [0.0]
    throttle = SignInThrottle(per_address=3, per_email=2, clock=lambda: clock[0])
    for _ in range(5):
        assert throttle.attempt("10.0.0.1", "a@example.com") == 0
        throttle.forgive("10.0.0.1", "a@example.com")
    assert throttle.attempt("10.0.0.1", "a@example.com") == 0
    assert throttle.attempt("10.0.0.1", "a@example.com") == 0
    assert throttle.attempt("10.0.0.1", "a@example.com") > 0
    throttle.forgive("10.0.0.2", "b@example.com")  # nothing counted: nothing to take back
    assert throttle.attempt("10.0.0.1", "a@example.com") > 0
