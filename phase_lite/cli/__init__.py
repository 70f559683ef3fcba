"""The ``phase-lite`` admin command: one module per command group.

``command`` holds what every command shares (the root group, settings, output, errors);
``accounts``, ``apps``, ``maintenance``, ``audit`` and ``secrets`` add their groups to it;
``init`` and ``serve`` live here.
"""

import json
import os
from pathlib import Path

import click

from .. import __version__
from ..config import load_config
from .command import emit, json_option, main

DEFAULT_OWNER_EMAIL = "owner@localhost"


# -- init and serve --------------------------------------------------------------------------


@main.command()
@click.option("--owner-email", default=DEFAULT_OWNER_EMAIL, show_default=True,
              help="Email of the first Owner user.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the Owner token to this new file (mode 0600), not to standard output.")
@json_option
def init(owner_email, token_file, as_json):
    """Create the data directory, master key, database and the first Owner token."""
    from ..app import init_data_dir

    config = load_config()
    if token_file is not None and (token_file.exists() or not token_file.parent.is_dir()):
        raise click.ClickException(
            f"{token_file} already exists; give a new file name" if token_file.exists()
            else f"{token_file.parent} is not a directory")
    issued = init_data_dir(config, owner_email)
    if issued is None:
        emit(as_json, {"initialised": False, "dataDir": str(config.data_dir)},
             f"phase_lite is already initialised in {config.data_dir}; no new token was made.\n"
             "A one-time web console sign-in link: phase-lite users setup-link EMAIL")
        return
    link = _first_sign_in_link(config, owner_email)
    if token_file is not None:
        write_private_file(token_file, issued.token + "\n")
        emit(as_json, {"ownerEmail": owner_email, "tokenFile": str(token_file),
                       "tokenId": issued.id},
             f"Initialised phase_lite in {config.data_dir}. The Owner ({owner_email}) token is "
             f"in {token_file} (mode 0600). For the REST API: "
             f"Authorization: Bearer User $(cut -d: -f3 {token_file})")
        if not as_json:
            click.echo(_first_sign_in_text(link, owner_email))
        return
    if as_json:
        click.echo(json.dumps({"ownerEmail": owner_email, "token": issued.token,
                               "bearerToken": issued.bearer_token, "consoleSetupLink": link}))
        return
    click.echo(
        f"Initialised phase_lite in {config.data_dir}.\n\n"
        f"Owner {owner_email}, personal access token (shown once, keep it safe):\n\n"
        f"    {issued.token}\n\n"
        f"For the Phase CLI/SDKs:  export PHASE_HOST=http://{config.listen}\n"
        f"For the REST API:        Authorization: Bearer {issued.bearer_token}\n"
    )
    click.echo(_first_sign_in_text(link, owner_email))


def _first_sign_in_text(link, owner_email):
    return (f"\nWeb console: open this one-time link (valid for a day) to choose your password:"
            f"\n\n    {link}\n\nor run:  phase-lite users set-password {owner_email}\n")


def _first_sign_in_link(config, owner_email):
    from ..app import open_services
    from ..console.commands import setup_link_for

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
    from ..serve import main as serve_main

    serve_main()


# Importing the group modules registers their commands.
from . import accounts, apps, audit, lockbox, maintenance, mirror, secrets  # noqa: E402,F401
from ..console import commands as _console  # noqa: E402  (console sign-in commands)

accounts.users.add_command(_console.set_password)
accounts.users.add_command(_console.setup_link)

__all__ = ["main"]
