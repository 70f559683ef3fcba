"""``phase-lite apps`` and ``phase-lite envs``: apps and their environments."""

import click

from .. import apps
from .command import emit, emit_rows, json_option, main, pass_ctx


def env_payload(env):
    return {"id": env["id"], "name": env["name"], "envType": env["env_type"],
            "index": env["sort_index"]}


def find_app(ctx, id_or_name):
    return apps.app_by_id_or_name(ctx.services, ctx.operator, id_or_name)


def find_environment(ctx, app, name):
    (env,) = apps.environments_by_name(ctx.services, ctx.operator, find_app(ctx, app), [name])
    return env


@main.group("apps")
def apps_group():
    """Apps."""


@apps_group.command("create")
@click.argument("name")
@click.option("--env", "envs", multiple=True,
              help="Environment name (repeat). Default: Development, Staging, Production.")
@click.option("--description", default="")
@json_option
@pass_ctx
def apps_create(ctx, name, envs, description, as_json):
    """Create an app with its environments."""
    fields = {"name": name, "description": description, "environments": list(envs) or None}
    app, env_rows = apps.create_app(ctx.services, ctx.operator, fields, ctx.meta)
    environments = [env_payload(e) for e in env_rows]
    emit(as_json, {"id": app["id"], "name": app["name"], "environments": environments},
         f"Created app {app['name']} with id {app['id']} "
         f"({', '.join(e['name'] for e in environments)}).")


@apps_group.command("list")
@json_option
@pass_ctx
def apps_list(ctx, as_json):
    """List apps with their environments."""
    payload = [
        {"id": a["id"], "name": a["name"], "createdAt": a["created_at"],
         "environments": [env_payload(e) for e in
                          apps.visible_environments(ctx.services, ctx.operator, a)]}
        for a in apps.visible_apps(ctx.services, ctx.operator)
    ]
    emit_rows(as_json, payload, lambda a: (
        f"{a['id']}  {a['name']}  ({', '.join(e['name'] for e in a['environments'])})"),
        "No apps.")


@apps_group.command("delete")
@click.argument("app")
@json_option
@pass_ctx
def apps_delete(ctx, app, as_json):
    """Delete an app and everything it holds."""
    app_row = find_app(ctx, app)
    apps.delete_app(ctx.services, ctx.operator, app_row, ctx.meta)
    emit(as_json, {"id": app_row["id"], "deleted": True}, f"Deleted app {app_row['name']}.")


@main.group("envs")
def envs_group():
    """Environments of an app."""


@envs_group.command("list")
@click.argument("app")
@json_option
@pass_ctx
def envs_list(ctx, app, as_json):
    """List an app's environments in order."""
    envs = apps.visible_environments(ctx.services, ctx.operator, find_app(ctx, app))
    payload = [env_payload(e) for e in envs]
    emit_rows(as_json, payload, lambda e: f"{e['id']}  {e['name']}  {e['envType']}")


@envs_group.command("create")
@click.argument("app")
@click.argument("name")
@json_option
@pass_ctx
def envs_create(ctx, app, name, as_json):
    """Add a custom environment to an app."""
    env = apps.create_environment(ctx.services, ctx.operator, find_app(ctx, app),
                                  {"name": name}, ctx.meta)
    emit(as_json, {"id": env["id"], "name": name},
         f"Created environment {name} with id {env['id']}.")


@envs_group.command("rename")
@click.argument("app")
@click.argument("name")
@click.argument("new_name")
@json_option
@pass_ctx
def envs_rename(ctx, app, name, new_name, as_json):
    """Rename an environment."""
    env = apps.rename_environment(ctx.services, ctx.operator, find_environment(ctx, app, name),
                                  {"name": new_name}, ctx.meta)
    emit(as_json, {"id": env["id"], "name": new_name}, f"Renamed {name} to {new_name}.")


@envs_group.command("move")
@click.argument("app")
@click.argument("name")
@click.option("--before", help="Put it just before this environment.")
@click.option("--after", help="Put it just after this environment.")
@json_option
@pass_ctx
def envs_move(ctx, app, name, before, after, as_json):
    """Move an environment before or after another (the order clients see)."""
    if (before is None) == (after is None):
        raise click.UsageError("Give exactly one of --before or --after.")
    env = find_environment(ctx, app, name)
    other = find_environment(ctx, app, before or after)
    place = "before" if before else "after"
    envs = apps.move_environment(ctx.services, ctx.operator, env, {place: other["id"]},
                                 ctx.meta)
    payload = [env_payload(e) for e in envs]
    emit(as_json, payload, f"Moved {env['name']} {place} {other['name']}: "
         + ", ".join(e["name"] for e in payload) + ".")


@envs_group.command("delete")
@click.argument("app")
@click.argument("name")
@json_option
@pass_ctx
def envs_delete(ctx, app, name, as_json):
    """Delete an environment and its secrets."""
    env = find_environment(ctx, app, name)
    apps.delete_environment(ctx.services, ctx.operator, env, ctx.meta)
    emit(as_json, {"id": env["id"], "deleted": True}, f"Deleted environment {name}.")
