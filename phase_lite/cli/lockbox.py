"""``phase-lite lockbox``: every Lockbox share of the organisation, revoking one, purging the
expired ones now (the server does it every few minutes). The same domain functions as the
console and ``/v1/lockbox/``, as the local operator; no content or link is ever printed (the
server has neither)."""

import click

from .. import lockbox
from ..store import now
from .command import emit, json_option, main, pass_ctx


@main.group("lockbox")
def lockbox_group():
    """Lockbox shares: list, revoke, purge expired."""


def share_body(row, moment) -> dict:
    return {**lockbox.share_body(row, moment),
            "creator": f"{row['creator_type']}:{row['creator_id']}"}


@lockbox_group.command("list")
@json_option
@pass_ctx
def lockbox_list(ctx, as_json):
    """List every share, newest first: creator, times, views left and state."""
    moment = now()
    shares = [share_body(row, moment)
              for row in lockbox.all_shares(ctx.services, ctx.operator)]
    lines = [f"{s['id']}  {s['state']:<8} {s['viewsLeft']}/{s['views']} views left  created "
             f"{s['createdAt'][:19]}  expires {s['expiresAt'][:19]}  by {s['creator']}"
             for s in shares]
    emit(as_json, {"shares": shares}, "\n".join(lines) or "No shares.")


@lockbox_group.command("revoke")
@click.argument("share_id")
@json_option
@pass_ctx
def lockbox_revoke(ctx, share_id, as_json):
    """Revoke a share now (its link stops opening): SHARE_ID as `lockbox list` shows it."""
    lockbox.revoke_share(ctx.services, ctx.operator, share_id, ctx.meta)
    emit(as_json, {"id": share_id, "state": "revoked"}, f"Revoked share {share_id}.")


@lockbox_group.command("purge")
@json_option
@pass_ctx
def lockbox_purge(ctx, as_json):
    """Delete the ciphertext of every expired share now."""
    purged = lockbox.purge_expired(ctx.db)
    emit(as_json, {"purged": purged}, f"Purged {purged} expired share(s).")
