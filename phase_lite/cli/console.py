"""``users set-password`` and ``users setup-link``: console sign-in from the admin command."""

import sys

import click

from .. import accounts, links
from ..console import sessions
from .accounts import users
from .command import pass_ctx


def setup_link_url(config, token: str) -> str:
    return links.link(config, f"/console/welcome?token={token}")


def setup_link_for(config, services, email: str) -> str:
    """A one-time link (valid a day) with which the user ``email`` chooses a password."""
    user = accounts.user_by_email(services, accounts.operator(services), email)
    return setup_link_url(config, sessions.issue_link(services.db, "setup", user["id"]))


@users.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input (for scripts).")
@pass_ctx
def set_password(ctx, email, password_stdin):
    """Set a user's console password (ends the user's console sessions)."""
    user = accounts.user_by_email(ctx.services, ctx.operator, email)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    sessions.set_password(ctx.db, user["id"], password, actor=ctx.operator, meta=ctx.meta)
    click.echo(f"Password set for {email}; their console sessions were ended.")


@users.command("setup-link")
@click.argument("email")
@pass_ctx
def setup_link(ctx, email):
    """Print a one-time link (valid for a day) with which a user chooses a password."""
    click.echo(setup_link_for(ctx.config, ctx.services, email))
