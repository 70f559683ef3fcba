"""``phase-lite audit``: the audit log."""

import json
import re
from datetime import datetime, timedelta, timezone

import click

from .. import service_accounts
from ..audit import names_in_events, secret_ids
from ..errors import DoesNotExist
from ..store import NotFound
from ..store import accounts as account_store
from ..store import apps as app_store
from .apps import find_app, find_environment
from .command import emit, json_option, main, pass_ctx


RELATIVE_TIME = re.compile(r"^(\d+)([smhd])$")
RELATIVE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text):
    """``7d``, ``12h``, ``30m``, ``45s`` ago, or an ISO-8601 date or time (UTC unless given)."""
    from ..store import format_time

    match = RELATIVE_TIME.match(text.strip())
    if match:
        delta = timedelta(**{RELATIVE_UNITS[match.group(2)]: int(match.group(1))})
        return format_time(datetime.now(timezone.utc) - delta)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("expected an ISO-8601 date or time, or 7d, 12h, 30m, 45s")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return format_time(moment)


def _actor_id(ctx, actor):
    try:
        return account_store.get_user_by_email(ctx.db, ctx.operator.organisation_id, actor)["id"]
    except NotFound:
        pass
    try:  # an ambiguous service-account name is refused, never guessed
        sa = service_accounts.service_account_by_id_or_name(ctx.services, ctx.operator, actor)
        return sa["id"]
    except DoesNotExist:
        return actor  # an id of an account that may be gone since


def _event_payload(row):
    return {"id": row["id"], "createdAt": row["created_at"], "actorType": row["actor_type"],
            "actorId": row["actor_id"], "tokenId": row["token_id"], "action": row["action"],
            "resourceType": row["resource_type"], "resourceId": row["resource_id"],
            "appId": row["app_id"], "environmentId": row["environment_id"],
            "details": json.loads(row["details"]), "ipAddress": row["ip_address"],
            "userAgent": row["user_agent"], "channel": row["channel"]}


def _event_line(event):
    names = event["names"]

    def named(value):
        return f"{value} ({names[value]})" if value in names else value

    actor = event["actorType"] + (f":{named(event['actorId'])}" if event["actorId"] else "")
    where = "".join(f"  {name}={named(event[key])}" for name, key in
                    (("app", "appId"), ("env", "environmentId"), ("ip", "ipAddress"))
                    if event[key])
    keys = [names[i] for i in secret_ids(event["details"]) if i in names]
    what = f"  keys={','.join(keys)}" if keys else ""
    via = f"  via {event['channel']}" if event["channel"] else ""
    return (f"{event['createdAt']}  {event['action']} {event['resourceType']}"
            f"{' ' + named(event['resourceId']) if event['resourceId'] else ''}{what}"
            f"  by {actor}{where}{via}")


@main.group("audit")
def audit_group():
    """The audit log."""


@audit_group.command("list")
@click.option("--app", help="App id or name.")
@click.option("--env", help="Environment id, or name with --app.")
@click.option("--actor", help="User email, service account name, or account id.")
@click.option("--since", help="7d, 12h, 30m, 45s, or an ISO-8601 date or time.",
              callback=lambda ctx, param, value: parse_since(value) if value else None)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@json_option
@pass_ctx
def audit_list(ctx, app, env, actor, since, limit, as_json):
    """List audit events, newest first."""
    from ..store import audit as audit_store

    org_id = ctx.operator.organisation_id
    app_id = env_id = None
    if app:
        app_id = find_app(ctx, app)["id"]
        env_id = find_environment(ctx, app, env)["id"] if env else None
    elif env:
        try:
            env_id = app_store.get_environment(ctx.db, org_id, env)["id"]
        except NotFound:
            raise click.ClickException(f"No environment with id '{env}' (give --app to use a "
                                       "name).") from None
    rows = audit_store.list_events(
        ctx.db, app_id=app_id, environment_id=env_id,
        actor_id=_actor_id(ctx, actor) if actor else None,
        since=since, limit=limit,
    )
    payload = [_event_payload(row) for row in rows]
    for event, names in zip(payload, names_in_events(ctx.db, ctx.services.vault, payload)):
        event["names"] = names
    emit(as_json, payload, "\n".join(_event_line(e) for e in payload) or "No events.")


@audit_group.command("prune")
@click.option("--older-than-days", type=click.IntRange(min=1),
              help="Default: PHASE_LITE_AUDIT_RETENTION_DAYS.")
@json_option
@pass_ctx
def audit_prune(ctx, older_than_days, as_json):
    """Delete audit events older than the retention period."""
    from ..audit import prune

    days = older_than_days or ctx.config.audit_retention_days
    if not days:
        raise click.ClickException(
            "give --older-than-days N or set PHASE_LITE_AUDIT_RETENTION_DAYS")
    deleted = prune(ctx.db, days)
    emit(as_json, {"deleted": deleted, "olderThanDays": days},
         f"Deleted {deleted} audit events older than {days} days.")
