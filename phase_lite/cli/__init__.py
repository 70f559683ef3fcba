"""The ``phase-lite`` admin command: one module per command group.

``command`` holds what every command shares (the root group, settings, output, errors);
``accounts``, ``apps``, ``maintenance``, ``audit`` and ``secrets`` add their groups to it;
``init`` and ``serve`` live here.
"""

import json

import click

from ..config import load_config
from .command import emit, json_option, main

DEFAULT_OWNER_EMAIL = "owner@localhost"


# -- init and serve --------------------------------------------------------------------------


@main.command()
@click.option("--owner-email", default=DEFAULT_OWNER_EMAIL, show_default=True,
              help="Email of the first Owner user.")
@json_option
def init(owner_email, as_json):
    """Create the data directory, master key, database and the first Owner token."""
    from ..app import init_data_dir

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
    """Serve the API with waitress on PHASE_LITE_LISTEN (SIGTERM or Ctrl-C stops it cleanly)."""
    from ..serve import main as serve_main

    serve_main()


# Importing the group modules registers their commands.
from . import accounts, apps, audit, maintenance, secrets  # noqa: E402,F401

__all__ = ["main"]
