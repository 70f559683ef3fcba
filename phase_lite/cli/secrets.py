"""``phase-lite secrets``: a secret's history and restoring one of its versions, for operators
without a token at hand. The same domain functions as ``/v1/secrets/<id>/history/`` and
``.../restore/``, called as the local operator (named in the history and the audit log).

Values are masked unless ``--show`` is given; ``--json`` prints them (it is for scripts).
"""

import click

from .. import history
from ..paths import ROOT
from .apps import find_environment
from .command import emit, json_option, main, pass_ctx


@main.group("secrets")
def secrets_group():
    """A secret's history; restoring one of its versions."""


def secret_arguments(fn):
    fn = click.option("--path", default=ROOT, show_default=True, help="The secret's path.")(fn)
    fn = click.argument("key")(fn)
    fn = click.argument("env")(fn)
    return click.argument("app")(fn)


def find_secret(ctx, app, env, key, path):
    """(environment row, secret id) of the secret named on the command line: the live one,
    else the one deleted last."""
    env_row = find_environment(ctx, app, env)
    return env_row, history.find_secret(ctx.services, ctx.operator, env_row, key, path)


@secrets_group.command("history")
@secret_arguments
@click.option("--show", is_flag=True, help="Show values instead of masking them.")
@json_option
@pass_ctx
def secrets_history(ctx, app, env, key, path, show, as_json):
    """List every version of a secret, newest first."""
    env_row, secret_id = find_secret(ctx, app, env, key, path)
    versions = history.secret_history(ctx.services, ctx.operator, env_row, secret_id, ctx.meta)
    payload = {"id": secret_id, "versions": [history.version_body(v) for v in versions]}
    emit(as_json, payload, "\n".join(version_line(v, show) for v in payload["versions"]))


@secrets_group.command("restore")
@secret_arguments
@click.option("--version", "version", type=click.IntRange(min=1), required=True,
              help="The version whose content to restore.")
@json_option
@pass_ctx
def secrets_restore(ctx, app, env, key, path, version, as_json):
    """Restore a version of a secret as a new version (undeleting it if it was deleted)."""
    env_row, secret_id = find_secret(ctx, app, env, key, path)
    restored = history.restore_secret(ctx.services, ctx.operator, env_row, secret_id, version,
                                      ctx.meta)
    emit(as_json, {"id": restored.id, "version": restored.version, "restoredFrom": version,
                   "path": restored.path},
         f"Restored version {version} of secret {restored.id} as version {restored.version}.")


def version_line(version, show):
    actor = version["actor"]
    who = "unknown" if actor is None else actor["name"] or actor["type"]
    restored = f" from v{version['restoredFrom']}" if version["restoredFrom"] else ""
    if version["value"] is None:  # a sealed secret: no version's value is shown
        value = "(sealed)"
    else:
        value = version["value"] if show else "*" * min(len(version["value"]), 8)
    return (f"v{version['version']}  {version['event']}{restored}  {version['createdAt']}"
            f"  by {who}  {version['path']}  {version['key']}={value}")
