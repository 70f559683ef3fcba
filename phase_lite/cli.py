"""The ``phase-lite`` admin command.

Every command prints a one-line human result, or JSON with ``--json``, and exits non-zero with
a one-line message on bad input. Commands read the same ``PHASE_LITE_*`` settings as the server.
"""

import json
import logging
import sys

import click

from . import __version__, accounts, apps
from .config import ConfigError, load_config
from .errors import PhaseError
from .store import StoreError
from .store import accounts as account_store
from .store import apps as app_store

DEFAULT_OWNER_EMAIL = "owner@localhost"


class Context:
    def __init__(self):
        self._services = None

    @property
    def config(self):
        return load_config()

    @property
    def services(self):
        if self._services is None:
            from .app import open_services

            self._services = open_services(self.config)
        return self._services

    @property
    def db(self):
        return self.services.db


pass_ctx = click.make_pass_decorator(Context, ensure=True)


def emit(as_json, payload, line):
    click.echo(json.dumps(payload, indent=2) if as_json else line)


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)


class PhaseLiteGroup(click.Group):
    """Turn domain and configuration errors into one line on stderr and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ConfigError, PhaseError, StoreError) as exc:
            click.echo(f"Error: {getattr(exc, 'message', None) or exc}", err=True)
            sys.exit(1)


@click.group(cls=PhaseLiteGroup)
@click.version_option(__version__, prog_name="phase-lite")
def main():
    """phase_lite: a small, self-hostable secrets manager that speaks Phase's API."""


# -- init and serve --------------------------------------------------------------------------


@main.command()
@click.option("--owner-email", default=DEFAULT_OWNER_EMAIL, show_default=True,
              help="Email of the first Owner user.")
@json_option
def init(owner_email, as_json):
    """Create the data directory, master key, database and the first Owner token."""
    from .app import init_data_dir

    config = load_config()
    issued = init_data_dir(config, owner_email)
    if issued is None:
        emit(as_json, {"initialised": False, "dataDir": str(config.data_dir)},
             f"phase_lite is already initialised in {config.data_dir}; no new token was made.")
        return
    if as_json:
        click.echo(json.dumps({"ownerEmail": owner_email, "token": issued.token,
                               "bearerToken": issued.bearer_token}))
        return
    click.echo(
        f"Initialised phase_lite in {config.data_dir}.\n\n"
        f"Owner {owner_email}, personal access token (shown once, keep it safe):\n\n"
        f"    {issued.token}\n\n"
        f"For the Phase CLI/SDKs:  export PHASE_HOST=http://{config.listen}\n"
        f"For the REST API:        Authorization: Bearer {issued.bearer_token}\n"
    )


@main.command()
def serve():
    """Serve the API with waitress on PHASE_LITE_LISTEN."""
    from .app import create_app

    config = load_config()
    serve_app(create_app(config))


def serve_app(app):
    import waitress

    config = app.config["PHASE_LITE"]
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    base = f"http://{config.listen}"
    click.echo(
        f"phase_lite {__version__} serving on {base}\n"
        f"  REST API:        {base}/service/public/v1/secrets/\n"
        f"  OpenAPI:         {base}/service/public/openapi.json\n"
        f"  Phase CLI/SDKs:  export PHASE_HOST={base}",
        err=True,
    )
    waitress.serve(app, listen=config.listen, threads=config.threads, ident="phase_lite",
                   _quiet=True)


# -- users -----------------------------------------------------------------------------------


@main.group()
def users():
    """Users and their personal access tokens."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--role", default="Developer", show_default=True,
              help="Owner, Admin, Manager, Developer or Service.")
@json_option
@pass_ctx
def users_create(ctx, email, role, as_json):
    """Add a user with a role."""
    user_id = accounts.create_user(ctx.db, email, role)
    emit(as_json, {"id": user_id, "email": email, "role": role},
         f"Created user {email} ({role}) with id {user_id}.")


@users.command("list")
@json_option
@pass_ctx
def users_list(ctx, as_json):
    """List users."""
    rows = account_store.list_users(ctx.db, accounts.organisation(ctx.db)["id"])
    payload = [{"id": r["id"], "email": r["email"], "role": r["role_name"],
                "createdAt": r["created_at"]} for r in rows]
    emit(as_json, payload, "\n".join(f"{r['id']}  {r['email']}  {r['role']}" for r in payload)
         or "No users.")


@users.group("tokens")
def user_tokens():
    """Personal access tokens."""


@user_tokens.command("create")
@click.option("--email", required=True)
@click.option("--name", default="Personal token", show_default=True)
@click.option("--expires-in", type=click.IntRange(min=1), help="Lifetime in seconds.")
@json_option
@pass_ctx
def user_tokens_create(ctx, email, name, expires_in, as_json):
    """Mint a personal access token (shown once)."""
    user = accounts.user_by_email(ctx.db, email)
    issued = accounts.issue_token(ctx.db, "user", user["id"], name,
                                  accounts.expiry_from(expires_in))
    emit(as_json, _token_payload(issued), f"{issued.token}")


@user_tokens.command("list")
@json_option
@pass_ctx
def user_tokens_list(ctx, as_json):
    """List personal access tokens (never their secret part)."""
    rows = account_store.list_user_tokens(ctx.db, accounts.organisation(ctx.db)["id"])
    payload = [_token_row(r) | {"email": r["email"]} for r in rows]
    emit(as_json, payload, "\n".join(
        f"{t['id']}  {t['email']}  {t['name']}  {'revoked' if t['revokedAt'] else 'active'}"
        for t in payload) or "No tokens.")


@user_tokens.command("revoke")
@click.argument("token_id")
@json_option
@pass_ctx
def user_tokens_revoke(ctx, token_id, as_json):
    """Revoke a token by id; it stops working at once."""
    accounts.revoke_token(ctx.db, token_id)
    emit(as_json, {"id": token_id, "revoked": True}, f"Revoked token {token_id}.")


def _token_payload(issued):
    return {"id": issued.id, "name": issued.name, "createdAt": issued.created_at,
            "expiresAt": issued.expires_at, "token": issued.token,
            "bearerToken": issued.bearer_token}


def _token_row(row):
    return {"id": row["id"], "name": row["name"], "createdAt": row["created_at"],
            "expiresAt": row["expires_at"], "lastUsedAt": row["last_used_at"],
            "revokedAt": row["revoked_at"]}


# -- apps and environments -------------------------------------------------------------------


@main.group("apps")
def apps_group():
    """Apps."""


@apps_group.command("create")
@click.argument("name")
@click.option("--env", "envs", multiple=True,
              help="Environment name (repeat). Default: Development, Staging, Production.")
@click.option("--description", default="")
@json_option
@pass_ctx
def apps_create(ctx, name, envs, description, as_json):
    """Create an app with its environments."""
    for env_name in envs:
        apps.validate_environment_name(env_name)
    org_id = accounts.organisation(ctx.db)["id"]
    app_id = apps.create_app(ctx.db, ctx.services.vault, org_id, name, description,
                             list(envs) if envs else None)
    environments = [_env_payload(e) for e in app_store.list_environments(ctx.db, app_id)]
    emit(as_json, {"id": app_id, "name": name, "environments": environments},
         f"Created app {name} with id {app_id} "
         f"({', '.join(e['name'] for e in environments)}).")


@apps_group.command("list")
@json_option
@pass_ctx
def apps_list(ctx, as_json):
    """List apps with their environments."""
    org_id = accounts.organisation(ctx.db)["id"]
    payload = [
        {"id": a["id"], "name": a["name"], "createdAt": a["created_at"],
         "environments": [_env_payload(e) for e in app_store.list_environments(ctx.db, a["id"])]}
        for a in app_store.list_apps(ctx.db, org_id)
    ]
    emit(as_json, payload, "\n".join(
        f"{a['id']}  {a['name']}  ({', '.join(e['name'] for e in a['environments'])})"
        for a in payload) or "No apps.")


@apps_group.command("delete")
@click.argument("app")
@json_option
@pass_ctx
def apps_delete(ctx, app, as_json):
    """Delete an app and everything it holds."""
    app_row, _ = accounts.resolve_environments(
        ctx.db, accounts.organisation(ctx.db)["id"], app, []
    )
    apps.delete_app(ctx.db, app_row["id"])
    emit(as_json, {"id": app_row["id"], "deleted": True}, f"Deleted app {app_row['name']}.")


def _env_payload(env):
    return {"id": env["id"], "name": env["name"], "envType": env["env_type"],
            "index": env["sort_index"]}


@main.group("envs")
def envs_group():
    """Environments of an app."""


@envs_group.command("list")
@click.argument("app")
@json_option
@pass_ctx
def envs_list(ctx, app, as_json):
    """List an app's environments in order."""
    _, envs = accounts.resolve_environments(ctx.db, accounts.organisation(ctx.db)["id"], app, [])
    payload = [_env_payload(e) for e in envs]
    emit(as_json, payload, "\n".join(f"{e['id']}  {e['name']}  {e['envType']}" for e in payload))


@envs_group.command("create")
@click.argument("app")
@click.argument("name")
@json_option
@pass_ctx
def envs_create(ctx, app, name, as_json):
    """Add a custom environment to an app."""
    app_row, _ = accounts.resolve_environments(ctx.db, accounts.organisation(ctx.db)["id"], app, [])
    env_id = apps.create_environment(ctx.db, ctx.services.vault, app_row["id"], name)
    emit(as_json, {"id": env_id, "name": name}, f"Created environment {name} with id {env_id}.")


@envs_group.command("rename")
@click.argument("app")
@click.argument("name")
@click.argument("new_name")
@json_option
@pass_ctx
def envs_rename(ctx, app, name, new_name, as_json):
    """Rename an environment."""
    _, (env,) = accounts.resolve_environments(
        ctx.db, accounts.organisation(ctx.db)["id"], app, [name])
    apps.rename_environment(ctx.db, env, new_name)
    emit(as_json, {"id": env["id"], "name": new_name}, f"Renamed {name} to {new_name}.")


@envs_group.command("delete")
@click.argument("app")
@click.argument("name")
@json_option
@pass_ctx
def envs_delete(ctx, app, name, as_json):
    """Delete an environment and its secrets."""
    _, (env,) = accounts.resolve_environments(
        ctx.db, accounts.organisation(ctx.db)["id"], app, [name])
    apps.delete_environment(ctx.db, env)
    emit(as_json, {"id": env["id"], "deleted": True}, f"Deleted environment {name}.")


# -- service accounts ------------------------------------------------------------------------


@main.group("service-accounts")
def service_accounts():
    """Service accounts, their access and their tokens."""


@service_accounts.command("create")
@click.argument("name")
@click.option("--role", default="Service", show_default=True)
@click.option("--token-name", default="Default", show_default=True)
@json_option
@pass_ctx
def sa_create(ctx, name, role, token_name, as_json):
    """Create a service account and its first token (shown once)."""
    org_id = accounts.organisation(ctx.db)["id"]
    role_row = accounts.role_by_name(ctx.db, org_id, role)
    if role_row["global_access"]:
        raise PhaseError(f"Service accounts cannot be assigned the '{role_row['name']}' role.")
    sa_id, issued = accounts.create_service_account(ctx.db, org_id, name, role_row["id"],
                                                    token_name)
    emit(as_json, {"id": sa_id, "name": name, "role": role_row["name"],
                   "initialToken": _token_payload(issued)},
         f"Created service account {name} ({sa_id}). Token (shown once):\n{issued.token}")


@service_accounts.command("list")
@json_option
@pass_ctx
def sa_list(ctx, as_json):
    """List service accounts."""
    rows = account_store.list_service_accounts(ctx.db, accounts.organisation(ctx.db)["id"])
    payload = [{"id": r["id"], "name": r["name"], "role": r["role_name"],
                "createdAt": r["created_at"]} for r in rows]
    emit(as_json, payload,
         "\n".join(f"{r['id']}  {r['name']}  {r['role']}" for r in payload) or "No accounts.")


@service_accounts.command("grant")
@click.argument("account")
@click.option("--app", "app", required=True)
@click.option("--env", "envs", multiple=True, help="Environment name (repeat); default: all.")
@json_option
@pass_ctx
def sa_grant(ctx, account, app, envs, as_json):
    """Let a service account use environments of an app."""
    sa = accounts.service_account(ctx.db, account)
    app_row, env_rows = accounts.resolve_environments(ctx.db, sa["organisation_id"], app, envs)
    accounts.grant_environments(ctx.db, [e["id"] for e in env_rows], service_account_id=sa["id"])
    names = [e["name"] for e in env_rows]
    emit(as_json, {"id": sa["id"], "app": app_row["id"], "environments": names},
         f"Granted {sa['name']} access to {app_row['name']}: {', '.join(names)}.")


@service_accounts.command("revoke-access")
@click.argument("account")
@click.option("--app", "app", required=True)
@click.option("--env", "envs", multiple=True, help="Environment name (repeat); default: all.")
@json_option
@pass_ctx
def sa_revoke_access(ctx, account, app, envs, as_json):
    """Take environments of an app away from a service account."""
    sa = accounts.service_account(ctx.db, account)
    app_row, env_rows = accounts.resolve_environments(ctx.db, sa["organisation_id"], app, envs)
    with ctx.db.transaction():
        account_store.revoke_environments(ctx.db, [e["id"] for e in env_rows],
                                          service_account_id=sa["id"])
    names = [e["name"] for e in env_rows]
    emit(as_json, {"id": sa["id"], "app": app_row["id"], "revoked": names},
         f"Revoked {sa['name']}'s access to {app_row['name']}: {', '.join(names)}.")


@service_accounts.group("tokens")
def sa_tokens():
    """Service-account tokens."""


@sa_tokens.command("create")
@click.argument("account")
@click.option("--name", default="Token", show_default=True)
@click.option("--expires-in", type=click.IntRange(min=1), help="Lifetime in seconds.")
@json_option
@pass_ctx
def sa_tokens_create(ctx, account, name, expires_in, as_json):
    """Mint a service-account token (shown once)."""
    sa = accounts.service_account(ctx.db, account)
    issued = accounts.issue_token(ctx.db, "service", sa["id"], name,
                                  accounts.expiry_from(expires_in))
    emit(as_json, _token_payload(issued), issued.token)


@sa_tokens.command("list")
@click.argument("account")
@json_option
@pass_ctx
def sa_tokens_list(ctx, account, as_json):
    """List a service account's tokens (never their secret part)."""
    sa = accounts.service_account(ctx.db, account)
    rows = account_store.list_tokens(ctx.db, service_account_id=sa["id"], include_revoked=True)
    payload = [_token_row(r) for r in rows]
    emit(as_json, payload, "\n".join(
        f"{t['id']}  {t['name']}  {'revoked' if t['revokedAt'] else 'active'}"
        for t in payload) or "No tokens.")


@sa_tokens.command("revoke")
@click.argument("token_id")
@json_option
@pass_ctx
def sa_tokens_revoke(ctx, token_id, as_json):
    """Revoke a token by id; it stops working at once."""
    accounts.revoke_token(ctx.db, token_id)
    emit(as_json, {"id": token_id, "revoked": True}, f"Revoked token {token_id}.")


if __name__ == "__main__":
    main()
