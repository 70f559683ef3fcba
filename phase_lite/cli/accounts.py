"""``phase-lite users`` and ``phase-lite service-accounts``: accounts, their environment
grants and their tokens."""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

from .. import accounts, apps, service_accounts, tokens
from ..accounts import Grantee
from ..store import accounts as account_store
from .apps import find_app
from .command import emit, emit_rows, json_option, main, pass_ctx


def token_payload(issued):
    return {"id": issued.id, "name": issued.name, "createdAt": issued.created_at,
            "expiresAt": issued.expires_at, "token": issued.token,
            "bearerToken": issued.bearer_token}


def token_row(row):
    return {"id": row["id"], "name": row["name"], "createdAt": row["created_at"],
            "expiresAt": row["expires_at"], "lastUsedAt": row["last_used_at"],
            "revokedAt": row["revoked_at"]}


def token_state(row):
    return "revoked" if row["revokedAt"] else "active"


def token_line(row, *columns):
    """One token of ``tokens list``: id, ``columns``, state, and when it was made, last used
    and expires (to the second, UTC)."""
    def when(stamp, none):
        return stamp[:19].replace("T", " ") if stamp else none

    return "  ".join([row["id"], *columns, token_state(row),
                      f"created {when(row['createdAt'], '-')}",
                      f"last used {when(row['lastUsedAt'], 'never')}",
                      f"expires {when(row['expiresAt'], 'never')}"])


@dataclass(frozen=True)
class AccountKind:
    """What the commands of one kind of account differ in."""
    noun: str                 # in messages and help
    argument: str             # the command argument naming one account
    label: str                # the column that names an account: "email" or "name"
    find: Callable            # (ctx, argument) -> the account's row
    grantee: Callable         # row -> Grantee
    list_rows: Callable       # (services, principal) -> rows
    delete: Callable          # the domain function
    delete_help: str
    removed: str              # what a delete takes away besides the tokens
    empty: str                # the text of an empty list


def add_account_commands(group, kind, list_help, grant_noun):
    """``list``, ``delete``, ``grant`` and ``revoke-access`` for one kind of account."""

    @group.command("list", help=list_help)
    @json_option
    @pass_ctx
    def list_accounts(ctx, as_json):
        payload = [{"id": r["id"], kind.label: r[kind.label], "role": r["role_name"],
                    "createdAt": r["created_at"]}
                   for r in kind.list_rows(ctx.services, ctx.operator)]
        emit_rows(as_json, payload, lambda r: f"{r['id']}  {r[kind.label]}  {r['role']}",
                  kind.empty)

    @group.command("delete", help=kind.delete_help)
    @click.argument(kind.argument)
    @json_option
    @pass_ctx
    def delete_account(ctx, as_json, **named):
        row = kind.find(ctx, named[kind.argument])
        live = account_store.list_tokens(ctx.db, **kind.grantee(row).account_filter())
        kind.delete(ctx.services, ctx.operator, row, ctx.meta)
        name = row[kind.label]
        emit(as_json, {"id": row["id"], kind.label: name, "deleted": True,
                       "tokensRevoked": len(live)},
             f"Deleted {kind.noun} {name}: {len(live)} tokens revoked, {kind.removed}.")

    add_access_command(group, kind, True, f"Let a {grant_noun} use environments of an app.")
    add_access_command(group, kind, False,
                       f"Take environments of an app away from a {grant_noun}.")


def add_access_command(group, kind, grant, summary):
    """``grant`` (or ``revoke-access``): one command per account kind and direction."""

    @group.command("grant" if grant else "revoke-access", help=summary)
    @click.argument(kind.argument)
    @click.option("--app", "app", required=True)
    @click.option("--env", "envs", multiple=True, help="Environment name (repeat); default: all.")
    @json_option
    @pass_ctx
    def change_access(ctx, app, envs, as_json, **named):
        grantee = kind.grantee(kind.find(ctx, named[kind.argument]))
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


def emit_issued_token(ctx, issue, row, name, expires_in, as_json, token_file=None):
    """Mint a token with the domain function ``issue`` and print it (shown once), or write it
    to ``token_file``, a new file of mode 0600, and say where it is."""
    from . import write_private_file

    if token_file is not None and (token_file.exists() or not token_file.parent.is_dir()):
        raise click.ClickException(
            f"{token_file} already exists; give a new file name" if token_file.exists()
            else f"{token_file.parent} is not a directory")
    issued = issue(ctx.services, ctx.operator, row, {"name": name, "expires_in": expires_in},
                   ctx.meta)
    if token_file is None:
        emit(as_json, token_payload(issued), issued.token)
        return
    write_private_file(token_file, issued.token + "\n")
    payload = {k: v for k, v in token_payload(issued).items() if k not in ("token", "bearerToken")}
    emit(as_json, payload | {"tokenFile": str(token_file)},
         f"Created token {issued.id} ({issued.name}); it is in {token_file} (mode 0600).")


def token_file_option(fn):
    return click.option(
        "--token-file", type=click.Path(dir_okay=False, path_type=Path),
        help="Write the token to this new file (mode 0600), not to standard output.")(fn)


# -- users -----------------------------------------------------------------------------------


USERS = AccountKind(
    noun="user", argument="email", label="email",
    find=lambda ctx, email: accounts.user_by_email(ctx.services, ctx.operator, email),
    grantee=Grantee.of_user, list_rows=accounts.list_users, delete=accounts.delete_user,
    delete_help="Delete a user: their tokens stop working at once (the last Owner stays).",
    removed="access and personal overrides removed", empty="No users.")


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


add_account_commands(users, USERS, "List users.", "user (Manager, Developer)")


@users.group("tokens")
def user_tokens():
    """Personal access tokens."""


@user_tokens.command("create")
@click.option("--email", required=True, help="The user's email (or id).")
@click.option("--name", default="Personal token", show_default=True)
@click.option("--expires-in", type=click.IntRange(min=1), help="Lifetime in seconds.")
@token_file_option
@json_option
@pass_ctx
def user_tokens_create(ctx, email, name, expires_in, token_file, as_json):
    """Mint a personal access token (shown once), the Owner's too: a lost one is revoked
    with 'tokens revoke ID' and replaced by a new one. Audited as every token mint."""
    emit_issued_token(ctx, tokens.issue_user_token, USERS.find(ctx, email), name, expires_in,
                      as_json, token_file)


@user_tokens.command("list")
@json_option
@pass_ctx
def user_tokens_list(ctx, as_json):
    """List personal access tokens (never their secret part)."""
    rows = account_store.list_user_tokens(ctx.db, ctx.operator.organisation_id)
    emit_rows(as_json, [token_row(r) | {"email": r["email"]} for r in rows],
              lambda t: token_line(t, t["email"], t["name"]), "No tokens.")


@user_tokens.command("revoke")
@click.argument("token_id")
@json_option
@pass_ctx
def tokens_revoke(ctx, token_id, as_json):
    """Revoke a token by id; it stops working at once."""
    tokens.revoke_token(ctx.services, ctx.operator, token_id, ctx.meta)
    emit(as_json, {"id": token_id, "revoked": True}, f"Revoked token {token_id}.")


# -- service accounts ------------------------------------------------------------------------


SERVICE_ACCOUNTS = AccountKind(
    noun="service account", argument="account", label="name",
    find=lambda ctx, account: service_accounts.service_account_by_id_or_name(
        ctx.services, ctx.operator, account),
    grantee=Grantee.of_service_account, list_rows=service_accounts.list_service_accounts,
    delete=service_accounts.delete_service_account,
    delete_help="Delete a service account: its tokens stop working at once.",
    removed="access removed", empty="No accounts.")


@main.group("service-accounts")
def service_accounts_group():
    """Service accounts, their access and their tokens."""


@service_accounts_group.command("create")
@click.argument("name")
@click.option("--role", default="Service", show_default=True)
@click.option("--token-name", default="Default", show_default=True)
@json_option
@pass_ctx
def sa_create(ctx, name, role, token_name, as_json):
    """Create a service account and its first token (shown once)."""
    role_row = accounts.role_by_name(ctx.services, ctx.operator, role)
    sa, issued = service_accounts.create_service_account(
        ctx.services, ctx.operator,
        {"name": name, "role_id": role_row["id"], "token_name": token_name}, ctx.meta)
    emit(as_json, {"id": sa["id"], "name": sa["name"], "role": role_row["name"],
                   "initialToken": token_payload(issued)},
         f"Created service account {sa['name']} ({sa['id']}). Token (shown once):\n"
         f"{issued.token}")


add_account_commands(service_accounts_group, SERVICE_ACCOUNTS, "List service accounts.",
                     "service account")


@service_accounts_group.group("tokens")
def sa_tokens():
    """Service-account tokens."""


@sa_tokens.command("create")
@click.argument("account")
@click.option("--name", default="Token", show_default=True)
@click.option("--expires-in", type=click.IntRange(min=1), help="Lifetime in seconds.")
@token_file_option
@json_option
@pass_ctx
def sa_tokens_create(ctx, account, name, expires_in, token_file, as_json):
    """Mint a service-account token (shown once)."""
    emit_issued_token(ctx, tokens.issue_service_account_token, SERVICE_ACCOUNTS.find(ctx, account),
                      name, expires_in, as_json, token_file)


@sa_tokens.command("list")
@click.argument("account")
@json_option
@pass_ctx
def sa_tokens_list(ctx, account, as_json):
    """List a service account's tokens (never their secret part)."""
    sa = SERVICE_ACCOUNTS.find(ctx, account)
    rows = account_store.list_tokens(ctx.db, service_account_id=sa["id"], include_revoked=True)
    emit_rows(as_json, [token_row(r) for r in rows],
              lambda t: token_line(t, t["name"]), "No tokens.")


sa_tokens.add_command(tokens_revoke)  # one command: a token id names either kind
