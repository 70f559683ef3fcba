"""The ``phase-lite`` admin command: one module per command group.

``command`` holds what every command shares (the root group, settings, output, errors);
``accounts``, ``apps``, ``maintenance``, ``audit`` and ``secrets`` add their groups to it;
``init`` and ``serve`` live here.
"""

import json
import logging
import signal
import sys

import click

from .. import __version__
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
    """Serve the API with waitress on PHASE_LITE_LISTEN."""
    from ..app import create_app

    config = load_config()
    serve_app(create_app(config))


def serve_app(app):
    import waitress

    from ..audit import start_retention
    from ..backup import hold_serving_lock

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


# Importing the group modules registers their commands.
from . import accounts, apps, audit, maintenance, secrets  # noqa: E402,F401

__all__ = ["main", "serve_app"]
