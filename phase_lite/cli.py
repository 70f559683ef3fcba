"""The ``phase-lite`` admin command.

Every command prints a one-line human result, or JSON with ``--json``, and exits non-zero with
a one-line message on bad input. Commands read the same ``PHASE_LITE_*`` settings as the server.
"""

import contextlib
import json
import logging
import re
import signal
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from . import __version__, accounts, apps
from .config import ConfigError, load_config
from .errors import PhaseError
from .secrets_command import secrets_group
from .store import NotFound, StoreError
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

    from .audit import start_retention
    from .backup import hold_serving_lock

    config = app.config["PHASE_LITE"]
    serving_lock = hold_serving_lock(config)  # held until the process ends: "in use" for restore
    logging.basicConfig(level=config.log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # waitress warns "Task queue depth is N" whenever all threads are busy, which under load is
    # every request: writing that to stderr would cost more than answering.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    if config.audit_retention_days:
        start_retention(app.extensions["phase_lite"].db, config.audit_retention_days)
    base = f"http://{config.listen}"
    click.echo(
        f"phase_lite {__version__} serving on {base}\n"
        f"  REST API:        {base}/service/public/v1/secrets/\n"
        f"  OpenAPI:         {base}/service/public/openapi.json\n"
        f"  Phase CLI/SDKs:  export PHASE_HOST={base}",
        err=True,
    )
    # SIGTERM (systemd, docker stop, Ctrl-C's cousin) ends the server cleanly: buffered read
    # audit events are written before the process exits.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        # Bodies hold plaintext secrets: waitress must keep them in memory, never spill them
        # into temporary files (its defaults do past 512 KB in, 1 MB out).
        waitress.serve(app, listen=config.listen, threads=config.threads, ident="phase_lite",
                       inbuf_overflow=max(config.max_body_bytes + 1, 524288),
                       outbuf_overflow=sys.maxsize, _quiet=True)
    finally:
        app.extensions["phase_lite"].close()
        serving_lock.close()


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


@users.command("grant")
@click.argument("email")
@click.option("--app", "app", required=True)
@click.option("--env", "envs", multiple=True, help="Environment name (repeat); default: all.")
@json_option
@pass_ctx
def users_grant(ctx, email, app, envs, as_json):
    """Let a user (Manager, Developer) use environments of an app."""
    user = accounts.user_by_email(ctx.db, email)
    _change_access(ctx, True, email, user, app, envs, as_json, user_id=user["id"])


@users.command("revoke-access")
@click.argument("email")
@click.option("--app", "app", required=True)
@click.option("--env", "envs", multiple=True, help="Environment name (repeat); default: all.")
@json_option
@pass_ctx
def users_revoke_access(ctx, email, app, envs, as_json):
    """Take environments of an app away from a user."""
    user = accounts.user_by_email(ctx.db, email)
    _change_access(ctx, False, email, user, app, envs, as_json, user_id=user["id"])


def _change_access(ctx, grant, label, account, app, envs, as_json, **owner):
    """Grant or revoke an account's environments of an app; say what changed."""
    app_row, env_rows = accounts.resolve_environments(ctx.db, account["organisation_id"], app,
                                                      envs)
    env_ids = [e["id"] for e in env_rows]
    names = [e["name"] for e in env_rows]
    if grant:
        accounts.grant_environments(ctx.db, env_ids, **owner)
        emit(as_json, {"id": account["id"], "app": app_row["id"], "environments": names},
             f"Granted {label} access to {app_row['name']}: {', '.join(names)}.")
        return
    with ctx.db.transaction():
        account_store.revoke_environments(ctx.db, env_ids, **owner)
    emit(as_json, {"id": account["id"], "app": app_row["id"], "revoked": names},
         f"Revoked {label}'s access to {app_row['name']}: {', '.join(names)}.")


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
    _change_access(ctx, True, sa["name"], sa, app, envs, as_json, service_account_id=sa["id"])


@service_accounts.command("revoke-access")
@click.argument("account")
@click.option("--app", "app", required=True)
@click.option("--env", "envs", multiple=True, help="Environment name (repeat); default: all.")
@json_option
@pass_ctx
def sa_revoke_access(ctx, account, app, envs, as_json):
    """Take environments of an app away from a service account."""
    sa = accounts.service_account(ctx.db, account)
    _change_access(ctx, False, sa["name"], sa, app, envs, as_json, service_account_id=sa["id"])


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


sa_tokens.add_command(user_tokens_revoke)  # one command: a token id names either kind



# -- backup, restore and key rotation --------------------------------------------------------


@contextlib.contextmanager
def one_line_errors():
    """Report backup and rotation failures as one line and exit status 1."""
    from .backup import BackupError
    from .rotation import RotationError

    try:
        yield
    except (BackupError, RotationError) as exc:
        raise click.ClickException(str(exc)) from None


def _summary_payload(summary):
    return {"path": summary.path, "apps": summary.apps, "environments": summary.environments,
            "secrets": summary.secrets, "encryptedFields": summary.fields}


@main.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@pass_ctx
def backup_command(ctx, path, as_json):
    """Write a checked, consistent copy of the database to PATH (safe while serving)."""
    from .backup import create_backup

    with one_line_errors():
        summary = create_backup(ctx.db, ctx.services.keyring, path)
    emit(as_json, _summary_payload(summary),
         f"Backed up {summary.apps} apps, {summary.environments} environments and "
         f"{summary.secrets} secrets to {summary.path} (checked: integrity ok, "
         f"{summary.fields} encrypted fields open with the master key).")


@main.command("restore")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True,
              help="Restore even while a server is using the database (restart it afterwards).")
@json_option
def restore_command(path, force, as_json):
    """Replace the database with a backup, after checking it opens with the master key."""
    from .app import open_keyring
    from .backup import restore_backup

    config = load_config()
    with one_line_errors():
        result = restore_backup(config, open_keyring(config), path, force=force)
    summary = result.summary
    line = (f"Restored {summary.apps} apps, {summary.environments} environments and "
            f"{summary.secrets} secrets from {path} into {config.database}.")
    if result.set_aside:
        line += f" The damaged database was moved to {result.set_aside}."
    if result.was_in_use:
        line += " A server was running: restart it now so it drops its caches."
    emit(as_json, _summary_payload(summary) | {
        "database": str(config.database), "serverWasRunning": result.was_in_use,
        "damagedDatabaseMovedTo": str(result.set_aside) if result.set_aside else None}, line)


@main.group("keys")
def keys_group():
    """Master key and app data key rotation."""


@keys_group.command("rotate-master")
@json_option
def keys_rotate_master(as_json):
    """Make a new master key and re-wrap every app's data key with it (server stopped)."""
    from .app import open_services
    from .backup import exclusive_lock
    from .rotation import rotate_master_key

    config = load_config()

    def publish(new_key):
        # Shown before the database changes: without it the database would be lost.
        click.echo(new_key, err=as_json)
        sys.stdout.flush()

    with one_line_errors(), exclusive_lock(config, action="key rotation"):
        services = open_services(config)
        try:
            result = rotate_master_key(config, services.db, services.vault, publish=publish)
        finally:
            services.close()
    payload = {"previousKeyIds": result.previous_key_ids, "keyId": result.new_key_id,
               "apps": result.apps,
               "keyFile": str(result.key_file) if result.key_file else None}
    if result.key_file:
        emit(as_json, payload,
             f"Rotated the master key: {result.apps} app data keys are now wrapped by key "
             f"{result.new_key_id} (was {result.previous_key_ids[0]}). The new key is in "
             f"{result.key_file} (mode 0600); the previous key was removed from it. Copy the "
             "file somewhere safe now. Backups made before this rotation open only with the "
             "previous key.")
        return
    if as_json:
        click.echo(json.dumps(payload | {"newMasterKey": result.new_key}, indent=2))
        return
    click.echo(
        f"Rotated the master key: {result.apps} app data keys are now wrapped by key "
        f"{result.new_key_id} (was {result.previous_key_ids[0]}). PHASE_LITE_MASTER_KEY comes "
        "from the environment, so nothing was written: the new key is the line printed above. "
        "Set PHASE_LITE_MASTER_KEY to it wherever phase-lite runs before starting the server; "
        "the previous key no longer opens the database.",
        err=True,
    )


@keys_group.command("rotate-app")
@click.argument("app")
@json_option
@pass_ctx
def keys_rotate_app(ctx, app, as_json):
    """Give one app a new data key and re-encrypt all of its fields (server stopped)."""
    from .backup import exclusive_lock
    from .rotation import rotate_app_key

    # A running server holds environment rows and ciphertexts read before the commit; they
    # would not open under the new key, so the rotation waits for the server to stop.
    with one_line_errors(), exclusive_lock(ctx.config, action="key rotation"):
        app_row, _ = accounts.resolve_environments(
            ctx.db, accounts.organisation(ctx.db)["id"], app, [])
        count = rotate_app_key(ctx.db, ctx.services.vault, app_row["id"])
    emit(as_json, {"id": app_row["id"], "name": app_row["name"], "encryptedFields": count},
         f"Rotated the data key of app {app_row['name']}: {count} encrypted fields "
         "re-encrypted.")


# -- audit log -------------------------------------------------------------------------------


RELATIVE_TIME = re.compile(r"^(\d+)([smhd])$")
RELATIVE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text):
    """``7d``, ``12h``, ``30m``, ``45s`` ago, or an ISO-8601 date or time (UTC unless given)."""
    from .store import format_time

    match = RELATIVE_TIME.match(text.strip())
    if match:
        delta = timedelta(**{RELATIVE_UNITS[match.group(2)]: int(match.group(1))})
        return format_time(datetime.now(timezone.utc) - delta)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("expected an ISO-8601 date or time, or 7d, 12h, 30m, 45s")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return format_time(moment)


def _actor_id(db, org_id, actor):
    try:
        return account_store.get_user_by_email(db, org_id, actor)["id"]
    except NotFound:
        pass
    try:
        return account_store.find_service_account(db, org_id, actor)["id"]
    except NotFound:
        return actor  # an id of an account that may be gone since


def _event_payload(row):
    return {"id": row["id"], "createdAt": row["created_at"], "actorType": row["actor_type"],
            "actorId": row["actor_id"], "tokenId": row["token_id"], "action": row["action"],
            "resourceType": row["resource_type"], "resourceId": row["resource_id"],
            "appId": row["app_id"], "environmentId": row["environment_id"],
            "details": json.loads(row["details"]), "ipAddress": row["ip_address"],
            "userAgent": row["user_agent"]}


def _event_line(event):
    actor = event["actorType"] + (f":{event['actorId']}" if event["actorId"] else "")
    where = "".join(f"  {name}={event[key]}" for name, key in
                    (("app", "appId"), ("env", "environmentId"), ("ip", "ipAddress"))
                    if event[key])
    return (f"{event['createdAt']}  {event['action']} {event['resourceType']}"
            f"{' ' + event['resourceId'] if event['resourceId'] else ''}  by {actor}{where}")


@main.group("audit")
def audit_group():
    """The audit log."""


@audit_group.command("list")
@click.option("--app", help="App id or name.")
@click.option("--env", help="Environment id, or name with --app.")
@click.option("--actor", help="User email, service account name, or account id.")
@click.option("--since", help="7d, 12h, 30m, 45s, or an ISO-8601 date or time.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@json_option
@pass_ctx
def audit_list(ctx, app, env, actor, since, limit, as_json):
    """List audit events, newest first."""
    from .store import audit as audit_store

    org_id = accounts.organisation(ctx.db)["id"]
    app_id = env_id = None
    if app:
        app_row, envs = accounts.resolve_environments(ctx.db, org_id, app, [env] if env else [])
        app_id = app_row["id"]
        env_id = envs[0]["id"] if env else None
    elif env:
        try:
            env_id = app_store.get_environment(ctx.db, org_id, env)["id"]
        except NotFound:
            raise click.ClickException(f"No environment with id '{env}' (give --app to use a "
                                       "name).") from None
    rows = audit_store.list_events(
        ctx.db, app_id=app_id, environment_id=env_id,
        actor_id=_actor_id(ctx.db, org_id, actor) if actor else None,
        since=parse_since(since) if since else None, limit=limit,
    )
    payload = [_event_payload(row) for row in rows]
    emit(as_json, payload, "\n".join(_event_line(e) for e in payload) or "No events.")


@audit_group.command("prune")
@click.option("--older-than-days", type=click.IntRange(min=1),
              help="Default: PHASE_LITE_AUDIT_RETENTION_DAYS.")
@json_option
@pass_ctx
def audit_prune(ctx, older_than_days, as_json):
    """Delete audit events older than the retention period."""
    from .audit import prune

    days = older_than_days or ctx.config.audit_retention_days
    if not days:
        raise click.ClickException(
            "give --older-than-days N or set PHASE_LITE_AUDIT_RETENTION_DAYS")
    deleted = prune(ctx.db, days)
    emit(as_json, {"deleted": deleted, "olderThanDays": days},
         f"Deleted {deleted} audit events older than {days} days.")


main.add_command(secrets_group)

if __name__ == "__main__":
    main()
