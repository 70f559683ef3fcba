"""``phase-lite backup``, ``restore`` and ``keys``: the database and its keys."""

import contextlib
import json
import sys
from pathlib import Path

import click

from ..config import load_config
from .apps import find_app
from .command import emit, json_option, main, pass_ctx


@contextlib.contextmanager
def one_line_errors():
    """Report backup and rotation failures as one line and exit status 1."""
    from ..backup import BackupError
    from ..rotation import RotationError

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
    from ..backup import create_backup

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
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def restore_command(path, force, yes, as_json):
    """Replace the database with a backup, after checking it opens with the master key.

    The replaced database is kept beside it as <database>.replaced-<UTC time> (mode 0600)."""
    from ..app import open_keyring
    from ..backup import restore_backup

    config = load_config()
    if not yes:
        if not sys.stdin.isatty():
            raise click.ClickException(
                "restore replaces the database and there is no terminal to confirm on; "
                "add --yes")
        click.confirm(f"Replace {config.database_name} with {path}? The current database is kept "
                      "as a copy beside it.", abort=True)
    with one_line_errors():
        result = restore_backup(config, open_keyring(config), path, force=force)
    summary = result.summary
    line = (f"Restored {summary.apps} apps, {summary.environments} environments and "
            f"{summary.secrets} secrets from {path} into {config.database_name}.")
    if result.set_aside:
        line += f" The damaged database was moved to {result.set_aside}."
    if result.kept:
        line += f" The replaced database was kept as {result.kept} (mode 0600)."
    if result.retired_key_file:
        line += (f" It was made before a master key rotation: it opened with the retired key "
                 f"{result.retired_key_id} kept in {result.retired_key_file}, and its data keys "
                 "are now wrapped by the current key.")
    if result.was_in_use:
        line += " A server was running: restart it now so it drops its caches."
    emit(as_json, _summary_payload(summary) | {
        "retiredKeyId": result.retired_key_id,
        "retiredKeyFile": str(result.retired_key_file) if result.retired_key_file else None,
        "database": config.database_name, "serverWasRunning": result.was_in_use,
        "damagedDatabaseMovedTo": str(result.set_aside) if result.set_aside else None,
        "replacedDatabaseKeptAs": str(result.kept) if result.kept else None}, line)


@main.group("keys")
def keys_group():
    """Master key and app data key rotation."""


@keys_group.command("rotate-master")
@json_option
def keys_rotate_master(as_json):
    """Make a new master key and re-wrap every app's data key with it (server stopped)."""
    from ..app import open_services
    from ..backup import exclusive_lock
    from ..rotation import rotate_master_key

    config = load_config()
    if config.master_key_env:
        warning = ("Rotating the master key. PHASE_LITE_MASTER_KEY comes from the environment: "
                   "the new key is printed next, and the current key is kept nowhere by "
                   "phase-lite; keep it apart from your backups, since backups made before "
                   "now open only with it.")
    else:
        warning = (f"Rotating the master key in {config.master_key_file}. The current key is "
                   f"kept as {config.master_key_file.name}.retired-<UTC time> beside it (mode "
                   "0600): restore uses it for backups made before now. Keep copies of both "
                   "apart from your backups.")

    def publish(new_key):
        # Shown before the database changes: without it the database would be lost.
        click.echo(new_key, err=as_json)
        sys.stdout.flush()

    with one_line_errors(), exclusive_lock(config, action="key rotation"):
        services = open_services(config)
        if not as_json:  # scripts read retiredKeyFile in the JSON
            click.echo(warning, err=True)  # before anything changes: what to keep, and where
        try:
            result = rotate_master_key(config, services.db, services.vault, publish=publish)
        finally:
            services.close()
    payload = {"previousKeyIds": result.previous_key_ids, "keyId": result.new_key_id,
               "apps": result.apps,
               "retiredKeyFile": str(result.retired_file) if result.retired_file else None,
               "keyFile": str(result.key_file) if result.key_file else None}
    if result.key_file:
        emit(as_json, payload,
             f"Rotated the master key: {result.apps} app data keys are now wrapped by key "
             f"{result.new_key_id} (was {result.previous_key_ids[0]}). The new key is in "
             f"{result.key_file} (mode 0600); the previous key is kept in "
             f"{result.retired_file} (mode 0600).")
        return
    if as_json:
        click.echo(json.dumps(payload | {"newMasterKey": result.new_key}, indent=2))
        return
    click.echo(
        f"Rotated the master key: {result.apps} app data keys are now wrapped by key "
        f"{result.new_key_id} (was {result.previous_key_ids[0]}). PHASE_LITE_MASTER_KEY comes "
        "from the environment, so nothing was written: the new key is the line printed above. "
        "Set PHASE_LITE_MASTER_KEY to it wherever phase-lite runs before starting the server; "
        "the previous key no longer opens the database, but backups made before now need it.",
        err=True,
    )


@keys_group.command("rotate-app")
@click.argument("app")
@json_option
@pass_ctx
def keys_rotate_app(ctx, app, as_json):
    """Give one app a new data key and re-encrypt all of its fields (server stopped)."""
    from ..backup import exclusive_lock
    from ..rotation import rotate_app_key

    # A running server holds environment rows and ciphertexts read before the commit; they
    # would not open under the new key, so the rotation waits for the server to stop.
    with one_line_errors(), exclusive_lock(ctx.config, action="key rotation"):
        app_row = find_app(ctx, app)
        count = rotate_app_key(ctx.db, ctx.services.vault, app_row["id"])
    emit(as_json, {"id": app_row["id"], "name": app_row["name"], "encryptedFields": count},
         f"Rotated the data key of app {app_row['name']}: {count} encrypted fields "
         "re-encrypted.")
