"""The ``phase-lite`` admin command: one module per command group.

``command`` holds what every command shares (the root group, settings, output, errors);
``accounts``, ``apps``, ``maintenance``, ``audit`` and ``secrets`` add their groups to it;
``init`` and ``serve`` live here.
"""

import json
import os
from pathlib import Path

import click

from .. import __version__, links
from ..config import load_config, moved_install_error, old_default_install
from .command import command_name, emit, json_option, main

DEFAULT_OWNER_EMAIL = "owner@localhost"


# -- init and serve --------------------------------------------------------------------------


@main.command()
@click.option("--owner-email", default=DEFAULT_OWNER_EMAIL, show_default=True,
              help="Email of the first Owner user.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the Owner token to this new file (mode 0600), not to standard output.")
@json_option
def init(owner_email, token_file, as_json):
    """Create the data directory, master key, database and the first Owner token.

    Run again on an initialised install it changes nothing and says where the install is."""
    from ..app import init_data_dir
    from ..serve import storage_lines

    config = load_config()
    if not _holds_install(config) and (old := old_default_install(config)):
        raise moved_install_error(config, old)
    if token_file is not None and not token_file.parent.is_dir():
        raise click.ClickException(f"{token_file.parent} is not a directory")
    if token_file is not None and token_file.exists() and not _holds_install(config):
        raise click.ClickException(
            f"{token_file} already exists (a token of an earlier install?); remove it or "
            "give a new file name")
    issued = init_data_dir(config, owner_email)
    where = "\n".join(storage_lines(config))
    if issued is None:
        _already_initialised(config, token_file, where, as_json)
        return
    link = _first_sign_in_link(config, owner_email)
    if token_file is not None:
        write_private_file(token_file, issued.token + "\n")
        emit(as_json, {"ownerEmail": owner_email, "tokenFile": str(token_file),
                       "tokenId": issued.id} | _storage_payload(config),
             f"Initialised phase_lite:\n{where}\n\nThe Owner ({owner_email}) token is in "
             f"{token_file} (mode 0600). For the REST API: "
             f"Authorization: Bearer User $(cut -d: -f3 {token_file})")
        if not as_json:
            click.echo(_first_sign_in_text(link, owner_email))
        return
    if as_json:
        click.echo(json.dumps({"ownerEmail": owner_email, "token": issued.token,
                               "bearerToken": issued.bearer_token, "consoleSetupLink": link}
                              | _storage_payload(config)))
        return
    click.echo(
        f"Initialised phase_lite:\n{where}\n\n"
        f"Owner {owner_email}, personal access token (shown once, keep it safe):\n\n"
        f"    {issued.token}\n\n"
        f"For the Phase CLI/SDKs:  export PHASE_HOST={links.base_url(config)}\n"
        f"For the REST API:        Authorization: Bearer {issued.bearer_token}\n"
    )
    click.echo(_first_sign_in_text(link, owner_email))


def _holds_install(config):
    """Whether the data directory already holds a master key or a database (SQLite)."""
    return config.master_key_file.exists() or (
        config.database_url is None and config.database.exists())


def _storage_payload(config):
    return {"dataDir": str(config.data_dir), "database": config.database_name,
            "masterKeyFile": None if config.master_key_env else str(config.master_key_file)}


def _already_initialised(config, token_file, where, as_json):
    """Say where the install is, whether ``token_file`` holds a live token of it, and how to
    mint a new Owner token (never made here: ``users tokens create`` does it, audited)."""
    from .. import accounts
    from ..app import open_services
    from ..store import accounts as account_store

    name = command_name()
    services = open_services(config)
    try:
        holder = _live_token_holder(services.db, token_file) if token_file else None
        org_id = accounts.operator(services).organisation_id
        owners = [u["email"] for u in account_store.list_users(services.db, org_id)
                  if u["role_name"] == "Owner"]
    finally:
        services.close()
    email = owners[0] if len(owners) == 1 else "EMAIL"
    lines = [f"phase_lite is already initialised; no new token was made.\n{where}"]
    if holder:
        lines.append(f"{token_file} holds a live token of {holder}.")
    else:
        lines.append(("" if token_file is None else f"Nothing was written to {token_file}. ")
                     + "A new token for the Owner (a lost one: revoke it with "
                     f"'{name} users tokens revoke ID', IDs from 'users tokens list'):\n"
                     f"    {name} users tokens create --email {email} "
                     f"--token-file {token_file or 'owner.token'}")
    lines.append(f"A one-time web console sign-in link: {name} users setup-link {email}")
    emit(as_json, {"initialised": False, "tokenFile": str(token_file) if token_file else None,
                   "tokenFileHoldsLiveToken": bool(holder), "owners": owners}
         | _storage_payload(config), "\n".join(lines))


def _live_token_holder(db, token_file):
    """The account whose live token ``token_file`` holds, or None (missing, unreadable, not a
    token, or not a live token of this install)."""
    from .. import phase_crypto
    from ..store import accounts as account_store
    from ..store import now

    try:
        parts = token_file.read_text().strip().split(":")
    except (OSError, UnicodeDecodeError):
        return None
    if len(parts) < 3:
        return None
    row = account_store.find_token_by_hash(db, phase_crypto.hash_bearer(parts[2]))
    if (row is None or row["revoked_at"] or row["account_deleted_at"]
            or (row["expires_at"] is not None and row["expires_at"] <= now())):
        return None
    return row["email"] or row["service_account_name"]


def _first_sign_in_text(link, owner_email):
    name = command_name()
    return (f"\nWeb console: open this one-time link (valid for a day) to choose your password:"
            f"\n\n    {link}\n\nor run:  {name} users set-password {owner_email}\n")


def _first_sign_in_link(config, owner_email):
    from ..app import open_services
    from .console import setup_link_for

    services = open_services(config)
    try:
        return setup_link_for(config, services, owner_email)
    finally:
        services.close()


def write_private_file(path, text):
    """Create ``path`` (never over an existing file) readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


@main.command()
@json_option
def version(as_json):
    """Print phase_lite's version."""
    emit(as_json, {"version": __version__}, f"phase-lite {__version__}")


@main.command()
def serve():
    """Serve the API with waitress on PHASE_LITE_LISTEN (SIGTERM or Ctrl-C stops it cleanly)."""
    from ..serve import start

    start().run()  # a start-up error is one line and exit status 1, as for every command


# Importing the group modules registers their commands.
from . import (accounts, apps, audit, console, lockbox, maintenance, mirror,  # noqa: E402,F401
               secrets)

__all__ = ["main"]
