"""Secrets written through the domain layer, and a full decrypted read-back, for the tests of
backup, restore, rotation and tampering."""

import secrets as random

import support
from phase_lite import secrets as secret_domain
from phase_lite.app import create_app
from phase_lite.secrets import NewSecret, Override, SecretChange
from phase_lite.store import apps as app_store


def principal_of(services, issued):
    return services.auth.authenticate(f"Bearer {issued.bearer_token}")


def seed_app(services, principal, name, env_names=("Development", "Production")):
    """An app whose environments hold secrets at two paths, a tag, an update (two versions)
    and a personal override; return {(app, env, path, key): (value, comment, override)}."""
    app_row, envs = support.make_app(services, name, env_names)
    app_id = app_row["id"]
    expected = {}
    for env in envs.values():
        marker = random.token_hex(8)
        created = secret_domain.create_secrets(services, principal, env, [
            NewSecret(key="DB_URL", value=f"postgres://u:pw-{marker}@db/{name}",
                      comment=f"comment-{marker}"),
            NewSecret(key="API_KEY", value=f"key-{marker}", path="/deep/er",
                      tags=("ops",), override=Override(value=f"mine-{marker}")),
        ])
        env = app_store.find_environment(services.db, app_id, env["name"])
        secret_domain.update_secrets(services, principal, env, [
            SecretChange(id=created[0].id, value=f"postgres://u:pw2-{marker}@db/{name}")])
        expected[name, env["name"], "/", "DB_URL"] = (
            f"postgres://u:pw2-{marker}@db/{name}", f"comment-{marker}", None)
        expected[name, env["name"], "/deep/er", "API_KEY"] = (
            f"key-{marker}", "", f"mine-{marker}")
    return expected


def read_everything(services, principal):
    """Every live secret of every app, decrypted: {(app, env, path, key): (value, comment,
    override value)}."""
    found = {}
    for app in app_store.list_apps(services.db, support.organisation_id(services)):
        for env in app_store.list_environments(services.db, app["id"]):
            listed = secret_domain.list_secrets(services, env)
            overrides = secret_domain.personal_overrides(services, principal, env,
                                                         [s.id for s in listed])
            for secret in listed:
                override = overrides.get(secret.id)
                found[app["name"], env["name"], secret.path, secret.key] = (
                    secret.value, secret.comment, override.value if override else None)
    return found


def read_with_fresh_app(config, issued):
    """Read everything through a new app (no cache of the process carries over)."""
    flask_app = create_app(config)
    try:
        services = flask_app.extensions["phase_lite"]
        return read_everything(services, principal_of(services, issued))
    finally:
        flask_app.extensions["phase_lite"].close()
