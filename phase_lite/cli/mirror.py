"""``phase-lite mirror``: keep a local copy of the apps a Phase token can read."""

from pathlib import Path

import click

from .. import mirror
from .command import emit, emit_rows, json_option, main, pass_ctx


@main.group("mirror")
def mirror_group():
    """Mirrors of Phase hosts (one-way: the source wins)."""


@mirror_group.command("add")
@click.option("--host", required=True, help="The Phase host, as PHASE_HOST is given "
              "(https://console.phase.dev, a self-hosted console, or an API host).")
@click.option("--token-file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A file holding a personal access token or service account token.")
@click.option("--app", "app_choices", multiple=True, help="App name or id (repeat). "
              "Default: every app the token can read.")
@click.option("--env", "env_choices", multiple=True,
              help="Environment name (repeat). Default: every one.")
@click.option("--name", help="This mirror's name. Default: the host's name.")
@click.option("--as", "local_name", help="The local name of the one --app (when a local "
              "app already has its name).")
@click.option("--user", "overrides_user", metavar="EMAIL", help="With a personal token: the "
              "local user (email or id) whose personal overrides the token's user's become. "
              "Default: the Owner, when there is one only.")
@json_option
@pass_ctx
def mirror_add(ctx, host, token_file, app_choices, env_choices, name, local_name,
               overrides_user, as_json):
    """Register a Phase host to mirror (checked now; 'mirror sync' copies it)."""
    try:
        token_text = token_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {token_file}: "
                                   f"{getattr(exc, 'strerror', None) or 'not text'}")
    source = mirror.add_source(ctx.services, ctx.operator, host=host, token_text=token_text,
                               app_choices=app_choices, env_choices=env_choices, name=name,
                               local_name=local_name, overrides_user=overrides_user,
                               meta=ctx.meta)
    emit(as_json, {"name": source["name"], "host": source["host"],
                   "apiBase": source["api_base"], "tokenKind": source["token_kind"]},
         f"Added mirror {source['name']} of {source['host']} (client API at "
         f"{source['api_base']}/secrets/). Copy it now: phase-lite mirror sync "
         f"{source['name']}")


@mirror_group.command("sync")
@click.argument("name", required=False)
@json_option
@pass_ctx
def mirror_sync(ctx, name, as_json):
    """Pull one mirror (or every one) now."""
    outcomes = mirror.sync_named(ctx.services, ctx.operator, name,
                                 interval=ctx.config.mirror_interval, meta=ctx.meta)
    payload = [{"name": source_name, "error": outcome.message} if isinstance(outcome, Exception)
               else {"name": source_name, **outcome.as_dict()}
               for source_name, outcome in outcomes]
    emit_rows(as_json, payload, lambda row: (
        f"{row['name']}: failed: {row['error']}" if "error" in row else
        f"{row['name']}: {row['created']} created, {row['updated']} updated, "
        f"{row['deleted']} deleted"
        + (f", {_count(row['overrides'], 'override')} set or removed" if row["overrides"]
           else "")
        + f" in {_count(row['apps'], 'app')}, {_count(row['environments'], 'environment')}"
        + (f"; removed at the source: {', '.join(row['removed'])}" if row.get("removed")
           else "")),
        "No mirrors.")
    if any("error" in row for row in payload):
        raise SystemExit(1)


@mirror_group.command("list")
@json_option
@pass_ctx
def mirror_list(ctx, as_json):
    """List mirrors: source, apps, environments, counts, last success, last error, next run."""
    def line(row):
        counts = row["counts"]
        apps = ", ".join(_listed_app(app) for app in row["apps"]) or "nothing copied yet"
        state = (f"last error: {row['lastError']}" if row["lastError"]
                 else f"last success {row['lastSuccessAt'] or 'never'}")
        overrides = (f", {counts['overrides']} overrides set or removed"
                     if counts.get("overrides") else "")
        mine = f" (personal overrides of {row['overridesFor']})" if row["overridesFor"] else ""
        return (f"{row['name']}  {row['host']}{mine}  {apps}; "
                f"{counts.get('created', 0)} created, {counts.get('updated', 0)} updated, "
                f"{counts.get('deleted', 0)} deleted{overrides}; {state}; "
                f"next run {row['nextRunAt'] or 'not scheduled'}")

    emit_rows(as_json, mirror.list_sources(ctx.services, ctx.operator), line, "No mirrors.")


@mirror_group.command("remove")
@click.argument("name")
@click.option("--keep-data", is_flag=True,
              help="Keep the copied apps as ordinary local apps (writable).")
@json_option
@pass_ctx
def mirror_remove(ctx, name, keep_data, as_json):
    """Forget a mirror and delete its copied apps (or keep them with --keep-data)."""
    count = mirror.remove_source(ctx.services, ctx.operator, name, keep_data=keep_data,
                                 meta=ctx.meta)
    emit(as_json, {"name": name, "apps": count, "keptData": keep_data},
         f"Removed mirror {name}; its {count} apps were "
         f"{'kept as local apps' if keep_data else 'deleted'}.")


def _listed_app(app):
    removed = set(app["environmentsRemovedAtSource"])
    envs = ", ".join(f"{env} (removed at the source)" if env in removed else env
                     for env in app["environments"])
    gone = "; removed at the source" if app["removedAtSource"] else ""
    return f"{app['name']} ({envs}{gone})"


def _count(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"
