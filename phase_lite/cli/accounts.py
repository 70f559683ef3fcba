"""``phase-lite users`` and ``phase-lite service-accounts``: accounts, their environment
grants and their tokens."""

import click

from .. import accounts, apps
from ..accounts import Grantee
from ..store import accounts as account_store
from .apps import find_app
from .command import emit, json_option, main, pass_ctx


def token_payload(issued):
    return {"id": issued.id, "name": issued.name, "createdAt": issued.created_at,
            "expiresAt": issued.expires_at, "token": issued.token,
            "bearerToken": issued.bearer_token}


def token_row(row):
    return {"id": row["id"], "name": row["name"], "createdAt": row["created_at"],
            "expiresAt": row["expires_at"], "lastUsedAt": row["last_used_at"],
            "revokedAt": row["revoked_at"]}


def find_user(ctx, email):
    return Grantee.of_user(accounts.user_by_email(ctx.services, ctx.operator, email))


def find_service_account(ctx, id_or_name):
    sa = accounts.service_account_by_id_or_name(ctx.services, ctx.operator, id_or_name)
    return Grantee.of_service_account(sa)


def access_message(grant, who, app, done, untouched):
    """Say what a grant or revoke changed, and name the environments it left as they were."""
    parts = []
    if done:
        parts.append(f"Granted {who} access to {app}: {', '.join(done)}." if grant
                     else f"Revoked {who}'s access to {app}: {', '.join(done)}.")
    if untouched:
        left = ", ".join(untouched)
        parts.append(f"{who} already had access to {app}: {left}." if grant
                     else f"{who} never had access to {app}: {left}.")
    if not done:
        parts.insert(0, "Nothing changed:")
    return " ".join(parts)


def add_access_commands(group, argument, find_grantee, noun):
    """``grant`` and ``revoke-access`` for ``group``: one pair of commands per account kind."""

    def command(name, grant, summary):
        @group.command(name, help=summary)
        @click.argument(argument)
        @click.option("--app", "app", required=True)
        @click.option("--env", "envs", multiple=True,
                      help="Environment name (repeat); default: all.")
        @json_option
        @pass_ctx
        def change_access(ctx, app, envs, as_json, **named):
            grantee = find_grantee(ctx, named[argument])
            app_row = find_app(ctx, app)
            env_rows = apps.environments_by_name(ctx.services, ctx.operator, app_row, envs)
            change = accounts.grant_environments if grant else accounts.revoke_environments
            changed = change(ctx.services, ctx.operator, grantee, app_row, env_rows, ctx.meta)
            done = [e["name"] for e in env_rows if e["id"] in changed]
            untouched = [e["name"] for e in env_rows if e["id"] not in changed]
            emit(as_json, {"id": grantee.id, "app": app_row["id"],
                           "environments" if grant else "revoked": done,
                           "alreadyHeld" if grant else "notHeld": untouched},
                 access_message(grant, grantee.label, app_row["name"], done, untouched))

    command("grant", True, f"Let a {noun} use environments of an app.")
    command("revoke-access", False, f"Take environments of an app away from a {noun}.")


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
    role_row = accounts.role_by_name(ctx.services, ctx.operator, role)
    user = accounts.create_user(ctx.services, ctx.operator,
                                {"email": email, "role_id": role_row["id"]}, ctx.meta)
    emit(as_json, {"id": user["id"], "email": user["email"], "role": role},
         f"Created user {user['email']} ({role}) with id {user['id']}.")


@users.command("list")
@json_option
@pass_ctx
def users_list(ctx, as_json):
    """List users."""
    rows = accounts.list_users(ctx.services, ctx.operator)
    payload = [{"id": r["id"], "email": r["email"], "role": r["role_name"],
                "createdAt": r["created_at"]} for r in rows]
    emit(as_json, payload, "\n".join(f"{r['id']}  {r['email']}  {r['role']}" for r in payload)
         or "No users.")


@users.command("delete")
@click.argument("email")
@json_option
@pass_ctx
def users_delete(ctx, email, as_json):
    """Delete a user: their tokens stop working at once (the last Owner stays)."""
    user = accounts.user_by_email(ctx.services, ctx.operator, email)
    live = account_store.list_tokens(ctx.db, user_id=user["id"])
    accounts.delete_user(ctx.services, ctx.operator, user, ctx.meta)
    emit(as_json, {"id": user["id"], "email": user["email"], "deleted": True,
                   "tokensRevoked": len(live)},
         f"Deleted user {user['email']}: {len(live)} tokens revoked, access and personal "
         "overrides removed.")


add_access_commands(users, "email", find_user, "user (Manager, Developer)")


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
    user = accounts.user_by_email(ctx.services, ctx.operator, email)
    issued = accounts.issue_user_token(ctx.services, ctx.operator, user,
                                       {"name": name, "expires_in": expires_in}, ctx.meta)
    emit(as_json, token_payload(issued), f"{issued.token}")


@user_tokens.command("list")
@json_option
@pass_ctx
def user_tokens_list(ctx, as_json):
    """List personal access tokens (never their secret part)."""
    rows = account_store.list_user_tokens(ctx.db, ctx.operator.organisation_id)
    payload = [token_row(r) | {"email": r["email"]} for r in rows]
    emit(as_json, payload, "\n".join(
        f"{t['id']}  {t['email']}  {t['name']}  {'revoked' if t['revokedAt'] else 'active'}"
        for t in payload) or "No tokens.")


@user_tokens.command("revoke")
@click.argument("token_id")
@json_option
@pass_ctx
def tokens_revoke(ctx, token_id, as_json):
    """Revoke a token by id; it stops working at once."""
    accounts.revoke_token(ctx.services, ctx.operator, token_id, ctx.meta)
    emit(as_json, {"id": token_id, "revoked": True}, f"Revoked token {token_id}.")


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
    role_row = accounts.role_by_name(ctx.services, ctx.operator, role)
    sa, issued = accounts.create_service_account(
        ctx.services, ctx.operator,
        {"name": name, "role_id": role_row["id"], "token_name": token_name}, ctx.meta)
    emit(as_json, {"id": sa["id"], "name": sa["name"], "role": role_row["name"],
                   "initialToken": token_payload(issued)},
         f"Created service account {sa['name']} ({sa['id']}). Token (shown once):\n"
         f"{issued.token}")


@service_accounts.command("list")
@json_option
@pass_ctx
def sa_list(ctx, as_json):
    """List service accounts."""
    rows = accounts.list_service_accounts(ctx.services, ctx.operator)
    payload = [{"id": r["id"], "name": r["name"], "role": r["role_name"],
                "createdAt": r["created_at"]} for r in rows]
    emit(as_json, payload,
         "\n".join(f"{r['id']}  {r['name']}  {r['role']}" for r in payload) or "No accounts.")


@service_accounts.command("delete")
@click.argument("account")
@json_option
@pass_ctx
def sa_delete(ctx, account, as_json):
    """Delete a service account: its tokens stop working at once."""
    sa = accounts.service_account_by_id_or_name(ctx.services, ctx.operator, account)
    live = account_store.list_tokens(ctx.db, service_account_id=sa["id"])
    accounts.delete_service_account(ctx.services, ctx.operator, sa, ctx.meta)
    emit(as_json, {"id": sa["id"], "name": sa["name"], "deleted": True,
                   "tokensRevoked": len(live)},
         f"Deleted service account {sa['name']}: {len(live)} tokens revoked, access removed.")


add_access_commands(service_accounts, "account", find_service_account, "service account")


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
    sa = accounts.service_account_by_id_or_name(ctx.services, ctx.operator, account)
    issued = accounts.issue_service_account_token(
        ctx.services, ctx.operator, sa, {"name": name, "expires_in": expires_in}, ctx.meta)
    emit(as_json, token_payload(issued), issued.token)


@sa_tokens.command("list")
@click.argument("account")
@json_option
@pass_ctx
def sa_tokens_list(ctx, account, as_json):
    """List a service account's tokens (never their secret part)."""
    sa = accounts.service_account_by_id_or_name(ctx.services, ctx.operator, account)
    rows = account_store.list_tokens(ctx.db, service_account_id=sa["id"], include_revoked=True)
    payload = [token_row(r) for r in rows]
    emit(as_json, payload, "\n".join(
        f"{t['id']}  {t['name']}  {'revoked' if t['revokedAt'] else 'active'}"
        for t in payload) or "No tokens.")


sa_tokens.add_command(tokens_revoke)  # one command: a token id names either kind
