"""``phase-lite secrets``: a secret's history and restoring a version, for operators without a
token at hand. The same domain functions as ``/v1/secrets/<id>/history/`` and ``.../restore/``,
acting as the local admin command (recorded as ``cli`` in the history and the audit log).

Values are shown masked unless ``--show`` is given; ``--json`` prints them (it is for scripts).
"""

import contextlib
import json

import click

from . import accounts, history
from .paths import ROOT


@click.group("secrets")
def secrets_group():
    """A secret's history; restoring one of its versions."""


def _secret_arguments(fn):
    fn = click.option("--path", default=ROOT, show_default=True, help="The secret's path.")(fn)
    fn = click.argument("key")(fn)
    fn = click.argument("env")(fn)
    return click.argument("app")(fn)


def _json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)


@contextlib.contextmanager
def _secret(app, env, key, path):
    """(services, environment row, secret id) of the secret named on the command line: the
    live one, else the one deleted last. Closing the services writes the read audit event."""
    from .app import open_services
    from .config import load_config

    services = open_services(load_config())
    try:
        _, (env_row,) = accounts.resolve_environments(
            services.db, accounts.organisation(services.db)["id"], app, [env])
        yield services, env_row, history.find_secret(services, None, env_row, key, path)
    finally:
        services.close()


@secrets_group.command("history")
@_secret_arguments
@click.option("--show", is_flag=True, help="Show values instead of masking them.")
@_json_option
def secrets_history(app, env, key, path, show, as_json):
    """List every version of a secret, newest first."""
    with _secret(app, env, key, path) as (services, env_row, secret_id):
        versions = history.secret_history(services, None, env_row, secret_id)
    payload = {"id": secret_id, "versions": [history.version_body(v) for v in versions]}
    click.echo(json.dumps(payload, indent=2) if as_json
               else "\n".join(_version_line(v, show) for v in payload["versions"]))


@secrets_group.command("restore")
@_secret_arguments
@click.option("--version", "version", type=click.IntRange(min=1), required=True,
              help="The version whose content to restore.")
@_json_option
def secrets_restore(app, env, key, path, version, as_json):
    """Restore a version of a secret as a new version (undeleting it if it was deleted)."""
    with _secret(app, env, key, path) as (services, env_row, secret_id):
        restored = history.restore_secret(services, None, env_row, secret_id, version)
    payload = {"id": restored.id, "version": restored.version, "restoredFrom": version,
               "path": restored.path}
    click.echo(json.dumps(payload, indent=2) if as_json else
               f"Restored version {version} of secret {restored.id} as version "
               f"{restored.version}.")


def _version_line(version, show):
    actor = version["actor"]
    who = "unknown" if actor is None else actor["name"] or actor["type"]
    restored = f" from v{version['restoredFrom']}" if version["restoredFrom"] else ""
    value = version["value"] if show else "*" * min(len(version["value"]), 8)
    return (f"v{version['version']}  {version['event']}{restored}  {version['createdAt']}"
            f"  by {who}  {version['path']}  {version['key']}={value}")
